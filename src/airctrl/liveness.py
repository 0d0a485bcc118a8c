"""Liveness per track: blinks from the eye blendshapes plus natural head motion."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from airctrl.types import FaceLandmarks

__all__ = ["LivenessState", "LivenessMonitor"]

Verdict = Literal["pending", "live", "unverified"]


@dataclass(frozen=True)
class LivenessState:
    """Liveness so far for one track."""

    verdict: Verdict
    blinks: int
    head_motion_deg: float


class LivenessMonitor:
    """Count blinks with hysteresis and watch head motion over a time window.

    A blink is both eyes' ``eyeBlink`` scores rising above ``close_threshold`` and
    falling back under ``open_threshold``. After ``window_seconds`` of observation
    the verdict is ``live`` when at least ``min_blinks`` blinks happened or the
    head moved at least ``min_head_motion_deg``, else ``unverified``.
    """

    def __init__(
        self,
        *,
        close_threshold: float = 0.5,
        open_threshold: float = 0.3,
        window_seconds: float = 10.0,
        min_blinks: int = 1,
        min_head_motion_deg: float = 1.0,
    ) -> None:
        if open_threshold >= close_threshold:
            raise ValueError("open_threshold: expected below close_threshold")
        self.close_threshold = close_threshold
        self.open_threshold = open_threshold
        self.window_ms = int(window_seconds * 1000)
        self.min_blinks = min_blinks
        self.min_head_motion_deg = min_head_motion_deg
        self._closed = False
        self._blinks = 0
        self._first_ms: int | None = None
        self._poses: deque[tuple[int, float, float]] = deque()

    def update(self, face: FaceLandmarks, timestamp_ms: int) -> LivenessState:
        """Fold in one frame of this track and return the verdict so far."""
        if self._first_ms is None:
            self._first_ms = timestamp_ms
        blink = min(face.blendshapes.get("eyeBlinkLeft", 0.0), face.blendshapes.get("eyeBlinkRight", 0.0))
        if not self._closed and blink >= self.close_threshold:
            self._closed = True
        elif self._closed and blink <= self.open_threshold:
            self._closed = False
            self._blinks += 1

        self._poses.append((timestamp_ms, face.pose.yaw_deg, face.pose.pitch_deg))
        while self._poses and self._poses[0][0] < timestamp_ms - self.window_ms:
            self._poses.popleft()
        yaws = [p[1] for p in self._poses]
        pitches = [p[2] for p in self._poses]
        motion = max(max(yaws) - min(yaws), max(pitches) - min(pitches))

        verdict: Verdict = "pending"
        if self._blinks >= self.min_blinks and self._blinks > 0:
            verdict = "live"
        elif timestamp_ms - self._first_ms >= self.window_ms:
            verdict = "live" if motion >= self.min_head_motion_deg and self._blinks >= self.min_blinks else "unverified"
        return LivenessState(verdict, self._blinks, motion)
