"""Stable per-face track ids across frames, by greedy box matching."""

from __future__ import annotations

from dataclasses import dataclass

from airctrl.types import BoundingBox

__all__ = ["FaceTracker", "TrackAssignment"]


@dataclass(frozen=True)
class TrackAssignment:
    """Which track each face of a frame belongs to, and which tracks ended."""

    track_ids: tuple[int, ...]
    ended: tuple[int, ...]


@dataclass
class _Track:
    track_id: int
    box: BoundingBox
    missed_frames: int = 0


def _center_distance(a: BoundingBox, b: BoundingBox) -> float:
    """Distance between box centres, in units of the larger box's width."""
    ax, ay = a.x + a.width / 2, a.y + a.height / 2
    bx, by = b.x + b.width / 2, b.y + b.height / 2
    scale = max(a.width, b.width, 1)
    return float(((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5 / scale)


class FaceTracker:
    """Give each face a track id that persists while it stays near its last box.

    Faces are matched greedily to the nearest live track whose centre moved less
    than ``max_distance`` box widths. A track unmatched for more than
    ``ttl_frames`` frames ends; its id is never reused.
    """

    def __init__(self, *, max_distance: float = 0.5, ttl_frames: int = 15) -> None:
        if max_distance <= 0:
            raise ValueError(f"max_distance: expected > 0, got {max_distance}")
        if ttl_frames < 1:
            raise ValueError(f"ttl_frames: expected >= 1, got {ttl_frames}")
        self.max_distance = max_distance
        self.ttl_frames = ttl_frames
        self._tracks: list[_Track] = []
        self._next_id = 1

    def update(
        self, boxes: list[BoundingBox] | tuple[BoundingBox, ...]
    ) -> TrackAssignment:
        """Assign a track id to each box of one frame, in the order given."""
        pairs = sorted(
            (
                (_center_distance(track.box, box), t_index, b_index)
                for t_index, track in enumerate(self._tracks)
                for b_index, box in enumerate(boxes)
            ),
            key=lambda item: item[0],
        )
        assigned: dict[int, int] = {}
        used_tracks: set[int] = set()
        for distance, t_index, b_index in pairs:
            if distance > self.max_distance:
                break
            if t_index in used_tracks or b_index in assigned:
                continue
            assigned[b_index] = t_index
            used_tracks.add(t_index)

        ids: list[int] = []
        for b_index, box in enumerate(boxes):
            if b_index in assigned:
                track = self._tracks[assigned[b_index]]
                track.box = box
                track.missed_frames = 0
            else:
                track = _Track(self._next_id, box)
                self._next_id += 1
                self._tracks.append(track)
                used_tracks.add(len(self._tracks) - 1)
            ids.append(track.track_id)

        ended: list[int] = []
        survivors: list[_Track] = []
        for t_index, track in enumerate(self._tracks):
            if t_index not in used_tracks:
                track.missed_frames += 1
            if track.missed_frames > self.ttl_frames:
                ended.append(track.track_id)
            else:
                survivors.append(track)
        self._tracks = survivors
        return TrackAssignment(tuple(ids), tuple(ended))

    def reset(self) -> None:
        """Forget every track (ids keep increasing)."""
        self._tracks = []
