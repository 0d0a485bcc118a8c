"""Liveness per track: blinks from the eye blendshapes plus natural head motion."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Literal

from airctrl.types import FaceLandmarks

__all__ = ["LivenessMonitor", "LivenessState"]

logger = logging.getLogger(__name__)

Verdict = Literal["pending", "live", "unverified"]

#: How long the open-eye level is remembered. Two seconds hold several frames
#: of open eyes between blinks (people blink every 2-10 s) without following a
#: blink itself upwards.
OPEN_LEVEL_WINDOW_MS = 2000
#: The open-eye level is this percentile of the recent blink scores: blinks are
#: short upward spikes, so a low percentile ignores them.
OPEN_LEVEL_PERCENTILE = 20.0
#: A closure longer than this is eyes held shut (crying, sleeping), not a blink.
#: Spontaneous blinks last about 100-400 ms; 800 ms leaves room for slow ones.
MAX_BLINK_MS = 800


@dataclass(frozen=True)
class LivenessState:
    """Liveness so far for one track: verdict, blinks counted, head motion range."""

    verdict: Verdict
    blinks: int
    head_motion_deg: float


class LivenessMonitor:
    """Count blinks with hysteresis and watch head motion over a time window.

    The blink score is the smaller of ``eyeBlinkLeft``/``eyeBlinkRight`` (both
    eyes must close). MediaPipe's score at rest differs between people and
    head poses (0.02 for one face, 0.4 for a turned one), so thresholds apply
    to the rise above the track's recent open-eye level: an eye counts as
    closed once the score is ``close_threshold`` above that level and open
    again when it falls back under ``open_threshold`` above it. A closure
    shorter than :data:`MAX_BLINK_MS` is a blink.

    The verdict is ``live`` once at least ``min_blinks`` blinks happened and
    the head moved (yaw or pitch range over the window) by at least
    ``min_head_motion_deg``; it stays live for the track. Before
    ``window_seconds`` have passed without that it is ``pending``, then
    ``unverified``. A still photo held up to the camera or repeated as a video
    never blinks, so it stays unverified.

    Limitation: a video of a real person replayed on a screen blinks and moves
    too and is called live; telling a screen from a face needs depth or
    texture cues this monitor does not use.
    """

    def __init__(
        self,
        *,
        close_threshold: float = 0.2,
        open_threshold: float = 0.1,
        window_seconds: float = 10.0,
        min_blinks: int = 1,
        min_head_motion_deg: float = 1.0,
        max_blink_ms: int = MAX_BLINK_MS,
    ) -> None:
        if not 0 <= open_threshold < close_threshold:
            raise ValueError(
                f"open_threshold: expected 0 <= open < close ({close_threshold}), "
                f"got {open_threshold}"
            )
        if window_seconds <= 0:
            raise ValueError(f"window_seconds: expected > 0, got {window_seconds}")
        self.close_threshold = close_threshold
        self.open_threshold = open_threshold
        self.window_ms = int(window_seconds * 1000)
        self.min_blinks = min_blinks
        self.min_head_motion_deg = min_head_motion_deg
        self.max_blink_ms = max_blink_ms
        self._closed_since_ms: int | None = None
        self._blinks = 0
        self._first_ms: int | None = None
        self._live = False
        self._scores: deque[tuple[int, float]] = deque()
        self._poses: deque[tuple[int, float, float]] = deque()

    @staticmethod
    def blink_score(face: FaceLandmarks) -> float:
        """Return the face's both-eyes-closed score (0 open .. 1 closed)."""
        left = float(face.blendshapes.get("eyeBlinkLeft", 0.0))
        right = float(face.blendshapes.get("eyeBlinkRight", 0.0))
        return min(left, right)

    def _open_level(self) -> float:
        # The same linear-interpolation percentile as numpy's default, on a sorted
        # list: a few hundred floats per frame, where numpy's array set-up would
        # cost more than the sort.
        ordered = sorted(score for _, score in self._scores)
        position = (len(ordered) - 1) * OPEN_LEVEL_PERCENTILE / 100.0
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def update(self, face: FaceLandmarks, timestamp_ms: int) -> LivenessState:
        """Fold in one frame of this track and return the verdict so far."""
        if self._first_ms is None:
            self._first_ms = timestamp_ms
        score = self.blink_score(face)

        level = self._open_level() if self._scores else score
        rise = score - level
        if self._closed_since_ms is None and rise >= self.close_threshold:
            self._closed_since_ms = timestamp_ms
        elif self._closed_since_ms is not None and rise <= self.open_threshold:
            duration = timestamp_ms - self._closed_since_ms
            self._closed_since_ms = None
            if duration <= self.max_blink_ms:
                self._blinks += 1
                logger.debug("Blink %d (%d ms)", self._blinks, duration)
        self._scores.append((timestamp_ms, score))
        while self._scores and self._scores[0][0] < timestamp_ms - OPEN_LEVEL_WINDOW_MS:
            self._scores.popleft()

        self._poses.append((timestamp_ms, face.pose.yaw_deg, face.pose.pitch_deg))
        while self._poses and self._poses[0][0] < timestamp_ms - self.window_ms:
            self._poses.popleft()
        yaws = [p[1] for p in self._poses]
        pitches = [p[2] for p in self._poses]
        motion = max(max(yaws) - min(yaws), max(pitches) - min(pitches))

        if self._blinks >= self.min_blinks and motion >= self.min_head_motion_deg:
            self._live = True
        verdict: Verdict = "live" if self._live else "pending"
        if not self._live and timestamp_ms - self._first_ms >= self.window_ms:
            verdict = "unverified"
        return LivenessState(verdict, self._blinks, float(motion))
