"""Tests for liveness: blink hysteresis, head motion, and real videos."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from airctrl.config import Settings
from airctrl.liveness import LivenessMonitor, LivenessState
from airctrl.pipeline import Pipeline
from airctrl.types import BoundingBox, FaceLandmarks, Frame, HeadPose


def face(blink: float, yaw: float = 0.0) -> FaceLandmarks:
    return FaceLandmarks(
        np.zeros((478, 3), np.float32),
        {"eyeBlinkLeft": blink, "eyeBlinkRight": blink},
        HeadPose(yaw, 0.0, 0.0),
        BoundingBox(0, 0, 10, 10),
    )


def feed(
    monitor: LivenessMonitor,
    blinks: list[float],
    yaws: list[float] | None = None,
    step_ms: int = 40,
) -> LivenessState:
    state = None
    for i, score in enumerate(blinks):
        state = monitor.update(
            face(score, (yaws or [0.0] * len(blinks))[i]), i * step_ms
        )
    assert state is not None
    return state


def test_short_closure_over_resting_level_counts_one_blink() -> None:
    # Resting score 0.3 (a turned head); rises 0.35 for 3 frames (120 ms).
    scores = [0.3] * 20 + [0.65] * 3 + [0.3] * 20
    assert feed(LivenessMonitor(), scores).blinks == 1


def test_rise_below_close_threshold_is_no_blink() -> None:
    scores = [0.3] * 20 + [0.45] * 3 + [0.3] * 20
    assert feed(LivenessMonitor(), scores).blinks == 0


def test_eyes_held_shut_for_two_seconds_are_no_blink() -> None:
    scores = [0.05] * 20 + [0.8] * 50 + [0.05] * 20
    assert feed(LivenessMonitor(), scores).blinks == 0


def test_blink_without_head_motion_is_not_live_after_window() -> None:
    scores = [0.05] * 20 + [0.7] * 3 + [0.05] * 60
    state = feed(LivenessMonitor(window_seconds=2.0), scores)
    assert state.blinks == 1
    assert state.verdict == "unverified"


def test_blink_with_head_motion_is_live() -> None:
    scores = [0.05] * 20 + [0.7] * 3 + [0.05] * 20
    yaws = [i * 0.1 for i in range(len(scores))]
    assert feed(LivenessMonitor(), scores, yaws).verdict == "live"


def test_pending_before_window_then_unverified_for_a_still_face() -> None:
    monitor = LivenessMonitor(window_seconds=1.0)
    assert feed(monitor, [0.05] * 10).verdict == "pending"
    assert feed(monitor, [0.05] * 40).verdict == "unverified"


def test_open_threshold_must_be_below_close_threshold() -> None:
    with pytest.raises(ValueError, match="open_threshold"):
        LivenessMonitor(close_threshold=0.2, open_threshold=0.3)


def _video_frames(path: Path) -> Iterator[npt.NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _last_verdict(
    settings: Settings, frames: Iterator[npt.NDArray[np.uint8]], fps: float
) -> tuple[str | None, int]:
    verdict, blinks = None, 0
    with Pipeline(settings, mode="video") as pipeline:
        for index, image in enumerate(frames):
            result = pipeline.process(Frame(image, int(index * 1000 / fps), index))
            if result.faces:
                verdict, blinks = result.faces[0].liveness, result.faces[0].blinks
    return verdict, blinks


@pytest.mark.slow
def test_still_photo_repeated_as_video_is_unverified(
    settings: Settings, happy_face_rgb: npt.NDArray[np.uint8]
) -> None:
    # 11 s at 10 fps: longer than the 10 s window.
    verdict, blinks = _last_verdict(settings, iter([happy_face_rgb] * 110), 10.0)
    assert (verdict, blinks) == ("unverified", 0)


@pytest.mark.slow
def test_sample_video_of_a_blinking_person_is_live(
    settings: Settings, sample_path: Callable[[str], Path]
) -> None:
    # The woman keeps her eyes shut for the first ~6 s, then blinks near frames
    # 248, 288, 386 and 427 (seen frame by frame); she moves her head throughout.
    path = sample_path("WolfgangLanger_Pexels.mp4")
    verdict, blinks = _last_verdict(settings, _video_frames(path), 23.976)
    assert verdict == "live"
    assert blinks >= 2
