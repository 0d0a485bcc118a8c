"""Tests for airctrl.tracking: ids stay with faces that move a little."""

from __future__ import annotations

import pytest

from airctrl.tracking import FaceTracker
from airctrl.types import BoundingBox


def box(x: int, y: int, size: int = 100) -> BoundingBox:
    return BoundingBox(x, y, size, size)


def test_tracker_keeps_id_when_face_moves_less_than_limit() -> None:
    tracker = FaceTracker(max_distance=0.5, ttl_frames=3)
    first = tracker.update([box(0, 0)])
    second = tracker.update([box(30, 20)])  # centre moved 36 px = 0.36 widths

    assert first.track_ids == second.track_ids == (1,)


def test_tracker_gives_new_id_when_face_jumps_far() -> None:
    tracker = FaceTracker(max_distance=0.5, ttl_frames=3)
    tracker.update([box(0, 0)])
    jumped = tracker.update([box(300, 0)])

    assert jumped.track_ids == (2,)


def test_tracker_matches_two_faces_that_swap_list_order() -> None:
    tracker = FaceTracker()
    tracker.update([box(0, 0), box(400, 0)])
    swapped = tracker.update([box(405, 5), box(5, 5)])

    assert swapped.track_ids == (2, 1)


def test_tracker_ends_track_after_ttl_and_never_reuses_id() -> None:
    tracker = FaceTracker(ttl_frames=2)
    tracker.update([box(0, 0)])
    ended = [tracker.update([]).ended for _ in range(3)]
    back = tracker.update([box(0, 0)])

    assert ended == [(), (), (1,)]
    assert back.track_ids == (2,)


def test_tracker_survives_short_gap_within_ttl() -> None:
    tracker = FaceTracker(ttl_frames=3)
    tracker.update([box(0, 0)])
    tracker.update([])
    again = tracker.update([box(10, 0)])

    assert again.track_ids == (1,)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"max_distance": 0}, "max_distance"), ({"ttl_frames": 0}, "ttl_frames")],
    ids=["zero-distance", "zero-ttl"],
)
def test_tracker_rejects_bad_options_naming_them(
    kwargs: dict[str, float], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        FaceTracker(**kwargs)  # type: ignore[arg-type]
