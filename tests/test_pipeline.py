"""Tests for airctrl.pipeline: quality gate, image vs video mode, reset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from airctrl.capture import VideoFileSource
from airctrl.config import Settings
from airctrl.pipeline import Pipeline, gate_quality
from airctrl.types import EMOTIONS, EmotionEstimate, Frame


def estimate(flags: tuple[str, ...], top: float = 0.82) -> EmotionEstimate:
    rest = (1 - top) / 6
    probs = {name: (top if name == "surprised" else rest) for name in EMOTIONS}
    return EmotionEstimate("surprised", probs, top, (("jaw drop", 0.7),), flags)


def test_gate_leaves_clean_estimate_untouched() -> None:
    clean = estimate(())

    assert gate_quality(clean, low_confidence=0.5) is clean


def test_gate_pulls_extreme_pose_most_of_the_way_to_uniform() -> None:
    gated = gate_quality(estimate(("extreme_pose",)), low_confidence=0.5)

    # 0.4 * 0.82 + 0.6 * (1/7) = 0.413714 (worked by hand)
    assert gated.confidence == pytest.approx(0.413714, abs=1e-5)
    assert gated.label == "surprised"
    assert sum(gated.probabilities.values()) == pytest.approx(1.0)
    assert gated.flags == ("extreme_pose", "low_confidence")


def test_gate_compounds_several_problems() -> None:
    gated = gate_quality(
        estimate(("extreme_pose", "partial_face"), top=1.0), low_confidence=0.2
    )

    # keep = 0.4 * 0.7 = 0.28: 0.28 * 1 + 0.72 / 7 = 0.382857
    assert gated.confidence == pytest.approx(0.382857, abs=1e-5)
    assert "low_confidence" not in gated.flags


def test_gate_keeps_even_a_certain_estimate_at_extreme_pose_under_half() -> None:
    gated = gate_quality(estimate(("extreme_pose",), top=1.0), low_confidence=0.5)

    # 0.4 * 1 + 0.6 / 7 = 0.485714
    assert gated.confidence == pytest.approx(0.485714, abs=1e-5)
    assert "low_confidence" in gated.flags


def test_video_pipeline_reset_starts_ids_and_state_afresh(
    model_path: Path, sample_path: Callable[[str], Path]
) -> None:
    settings = Settings()

    def first_ids(pipeline: Pipeline) -> list[int]:
        with VideoFileSource(sample_path("single_face.mp4")) as source:
            return [
                face.face_id
                for frame in list(source)[:5]
                for face in pipeline.process(frame).faces
            ]

    with Pipeline(settings, mode="video", model_path=model_path) as pipeline:
        first = first_ids(pipeline)
        pipeline.reset()
        second = first_ids(pipeline)

    assert first == second == [1] * 5


def test_image_mode_numbers_faces_by_position_in_frame(
    model_path: Path, happy_face_rgb: np.ndarray
) -> None:
    with Pipeline(Settings(), mode="image", model_path=model_path) as pipeline:
        results = [pipeline.process(Frame(happy_face_rgb, 0, i)) for i in range(2)]

    assert [[f.face_id for f in r.faces] for r in results] == [[0], [0]]
    assert results[0].faces[0].emotion == results[1].faces[0].emotion


@pytest.mark.parametrize("search", ["thorough", "fast"])
def test_still_search_switches_the_second_view(
    model_path: Path, happy_face_rgb: np.ndarray, search: str
) -> None:
    from airctrl.landmarks import LandmarkDetector
    from airctrl.pipeline import landmarker_options

    settings = Settings.model_validate({"detection": {"still_search": search}})
    with Pipeline(settings, mode="image", model_path=model_path) as pipeline:
        face = pipeline.process(Frame(happy_face_rgb, 0, 0)).faces[0]
    # The same face search on its own: no second view.
    options = landmarker_options(settings)
    with LandmarkDetector(model_path, mode="image", options=options) as detector:
        one_view = detector.detect(Frame(happy_face_rgb, 0, 0)).faces[0]
    one_view_smile = one_view.blendshapes["mouthSmileLeft"]

    evidence = dict(face.emotion.evidence)
    assert face.emotion.label == "happy"
    assert ("lip-corner pull" in evidence) is True
    same = evidence["lip-corner pull"] == pytest.approx(
        (one_view_smile + one_view.blendshapes["mouthSmileRight"]) / 2, abs=1e-3
    )
    assert same is (search == "fast")


def _passes_and_emotions(
    settings: Settings,
    model_path: Path,
    image: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[tuple[int, ...]], list[str]]:
    """Return the input shape of every landmarker pass of a still, and its emotions."""
    from airctrl.landmarks import LandmarkDetector

    calls = []
    real_run = LandmarkDetector._run

    def counting_run(
        self: LandmarkDetector, image: np.ndarray, timestamp_ms: int
    ) -> object:
        calls.append(image.shape)
        return real_run(self, image, timestamp_ms)

    monkeypatch.setattr(LandmarkDetector, "_run", counting_run)
    with Pipeline(settings, mode="image", model_path=model_path) as pipeline:
        result = pipeline.process(Frame(image, 0, 0))
    return calls, [face.emotion.label for face in result.faces]


@pytest.mark.parametrize(
    ("search", "expected_passes"),
    [
        # Whole image, confirming crop, then both again on the padded view.
        pytest.param("thorough", 4, id="thorough"),
        pytest.param("fast", 1, id="fast"),
        # The default: the API's latency target needs one pass for a portrait.
        pytest.param(None, 1, id="default"),
    ],
)
def test_still_search_meshes_a_portrait_in_one_or_four_passes(
    model_path: Path,
    happy_face_rgb: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    search: str | None,
    expected_passes: int,
) -> None:
    detection = {} if search is None else {"still_search": search}
    settings = Settings.model_validate({"detection": detection})

    passes, labels = _passes_and_emotions(
        settings, model_path, happy_face_rgb, monkeypatch
    )

    assert len(passes) == expected_passes
    assert labels == ["happy"]


def test_fast_search_still_confirms_small_faces_in_a_group(
    model_path: Path,
    sample_path: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import Image

    from airctrl.landmarks import VERIFY_SIDE

    group = np.asarray(Image.open(sample_path("multi_face.jpg")).convert("RGB"))
    # No tiles, so every crop run below confirms a face of the first pass.
    settings = Settings.model_validate(
        {"detection": {"still_search": "fast", "tile_retry": False}}
    )

    passes, labels = _passes_and_emotions(settings, model_path, group, monkeypatch)

    # Each small face still gets its confirming run on a 256 px crop around it.
    crops = [shape for shape in passes if shape[:2] == (VERIFY_SIDE, VERIFY_SIDE)]
    assert len(labels) == 3  # the three largest faces are found without tiles
    assert len(crops) >= len(labels)
