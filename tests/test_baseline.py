"""Tests for the per-person neutral baseline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from airctrl.baseline import NeutralBaseline
from airctrl.features import Features


def test_calibrating_until_window_and_samples_are_reached() -> None:
    baseline = NeutralBaseline(duration_ms=1000, min_samples=3)
    baseline.update(Features({"brow_lower": 0.2}), 0)
    baseline.update(Features({"brow_lower": 0.4}), 1000)
    assert baseline.is_calibrating
    assert baseline.reference() is None
    baseline.update(Features({"brow_lower": 0.9}), 1100)
    assert not baseline.is_calibrating


def test_reference_is_the_median_so_one_blink_does_not_shift_it() -> None:
    baseline = NeutralBaseline(duration_ms=200, min_samples=1)
    for t, value in [(0, 0.1), (100, 0.9), (200, 0.2)]:
        baseline.update(Features({"eye_close": value}), t)
    reference = baseline.reference()
    assert reference is not None
    assert reference.get("eye_close") == pytest.approx(0.2)


def test_frames_after_calibration_do_not_change_reference() -> None:
    baseline = NeutralBaseline(duration_ms=0 + 100, min_samples=1)
    baseline.update(Features({"x": 0.1}), 0)
    baseline.update(Features({"x": 0.1}), 100)
    baseline.update(Features({"x": 0.9}), 200)
    assert baseline.reference() == Features({"x": 0.1})


def test_zero_duration_disables_baseline() -> None:
    baseline = NeutralBaseline(duration_ms=0)
    baseline.update(Features({"x": 0.5}), 0)
    assert not baseline.is_calibrating
    assert baseline.reference() is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        pytest.param({"duration_ms": -1}, "duration_ms", id="negative-duration"),
        pytest.param({"min_samples": 0}, "min_samples", id="no-samples"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        NeutralBaseline(**kwargs)


@pytest.mark.slow
def test_pipeline_reports_calibrating_only_during_the_first_second(
    sample_path: Callable[[str], Path],
) -> None:
    import cv2

    from airctrl.config import Settings
    from airctrl.pipeline import Pipeline
    from airctrl.types import Frame

    settings = Settings(emotion={"baseline_seconds": 1.0})
    capture = cv2.VideoCapture(str(sample_path("single_face.mp4")))
    flags: list[tuple[int, bool]] = []
    with Pipeline(settings, mode="video") as pipeline:
        index = 0
        while index < 40:
            ok, image = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            result = pipeline.process(Frame(rgb, index * 40, index))
            flags += [(index, f.calibrating) for f in result.faces]
            index += 1
    capture.release()
    assert flags[0] == (0, True)
    # 25 frames at 40 ms span 1 s; from then on the baseline is learnt.
    assert all(not calibrating for i, calibrating in flags if i >= 26)
    assert any(calibrating for i, calibrating in flags if i == 20)
