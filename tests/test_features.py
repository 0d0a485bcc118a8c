"""Tests for feature extraction: symmetric action units, geometry, pose."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from airctrl.features import action_units, extract_features, geometry, plain_name
from airctrl.types import BoundingBox, FaceLandmarks, HeadPose


def test_action_units_average_left_and_right() -> None:
    units = action_units(
        {"mouthSmileLeft": 0.6, "mouthSmileRight": 0.2, "jawOpen": 0.3}
    )
    assert units["lip_corner_pull"] == pytest.approx(0.4)
    assert units["jaw_drop"] == pytest.approx(0.3)
    assert units["brow_lower"] == 0.0


@pytest.mark.parametrize(
    ("name", "words"),
    [
        pytest.param("lip_corner_pull", "lip-corner pull", id="au12"),
        pytest.param("cheek_raise", "cheek raise", id="au6"),
        pytest.param("geo_mouth_open", "mouth opening", id="geometry"),
        pytest.param("something_else", "something_else", id="unknown"),
    ],
)
def test_plain_name_reads_as_words(name: str, words: str) -> None:
    assert plain_name(name) == words


def _points_with(landmarks: dict[int, tuple[float, float]]) -> npt.NDArray[np.float32]:
    points = np.full((478, 3), 0.5, dtype=np.float32)
    for index, (x, y) in landmarks.items():
        points[index, :2] = (x, y)
    return points


# Eye corners 0.4 apart; inner lips 0.1 apart; mouth corners 0.2 apart and 0.05
# above the lip centre; brows 0.1 above the upper lids; lids 0.04 apart.
HAND_FACE = {
    33: (0.3, 0.4),
    263: (0.7, 0.4),
    13: (0.5, 0.65),
    14: (0.5, 0.75),
    61: (0.4, 0.65),
    291: (0.6, 0.65),
    105: (0.35, 0.28),
    334: (0.65, 0.28),
    159: (0.35, 0.38),
    386: (0.65, 0.38),
    145: (0.35, 0.42),
    374: (0.65, 0.42),
}


def test_geometry_ratios_match_hand_measurements() -> None:
    geo = geometry(_points_with(HAND_FACE))
    assert geo["geo_mouth_open"] == pytest.approx(0.1 / 0.4)
    assert geo["geo_mouth_width"] == pytest.approx(0.2 / 0.4)
    assert geo["geo_corner_lift"] == pytest.approx(0.05 / 0.4)
    assert geo["geo_brow_height"] == pytest.approx(0.1 / 0.4)
    assert geo["geo_eye_open"] == pytest.approx(0.04 / 0.4)


def test_geometry_ignores_head_roll() -> None:
    points = _points_with(HAND_FACE)
    angle = math.radians(30)
    rotation = np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    rolled = points.copy()
    rolled[:, :2] = (points[:, :2] - 0.5) @ rotation.T + 0.5
    assert geometry(rolled)["geo_mouth_open"] == pytest.approx(0.25, abs=1e-5)


def test_degenerate_points_give_zero_geometry() -> None:
    geo = geometry(np.zeros((478, 3), dtype=np.float32))
    assert set(geo.values()) == {0.0}


def test_extract_features_holds_blendshapes_units_and_pose() -> None:
    face = FaceLandmarks(
        _points_with(HAND_FACE),
        {"browInnerUp": 0.3},
        HeadPose(10.0, -5.0, 2.0),
        BoundingBox(0, 0, 100, 100),
    )
    features = extract_features(face)
    assert features.get("browInnerUp") == pytest.approx(0.3)
    assert features.get("inner_brow_raise") == pytest.approx(0.3)
    assert features.get("head_yaw_deg") == 10.0
    assert features.get("head_pitch_deg") == -5.0
    assert features.get("absent_feature") == 0.0


def test_real_smiling_face_shows_strong_lip_corner_pull(
    happy_face_rgb: npt.NDArray[np.uint8], model_path: object
) -> None:
    from pathlib import Path

    from airctrl.landmarks import LandmarkDetector
    from airctrl.types import Frame

    with LandmarkDetector(Path(str(model_path)), mode="image") as detector:
        detection = detector.detect(Frame(happy_face_rgb, 0, 0))
    features = extract_features(detection.faces[0])
    assert features.get("lip_corner_pull") > 0.5
    assert features.get("geo_corner_lift") > 0
