"""Tests for feature extraction: symmetric action units, geometry, pose."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from airctrl.config import Settings
from airctrl.features import (
    action_units,
    average_views,
    extract_features,
    geometry,
    plain_name,
    with_padded_view,
)
from airctrl.landmarks import LandmarkDetector
from airctrl.pipeline import landmarker_options
from airctrl.types import BoundingBox, FaceLandmarks, Frame, HeadPose


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
    # Brow heads 0.12 above the inner eye corners, tails 0.08 above the outer.
    55: (0.45, 0.28),
    285: (0.55, 0.28),
    133: (0.45, 0.40),
    362: (0.55, 0.40),
    46: (0.3, 0.32),
    276: (0.7, 0.32),
    # Upper lip top 0.06 below the nose base.
    2: (0.5, 0.56),
    0: (0.5, 0.62),
}


def test_geometry_ratios_match_hand_measurements() -> None:
    geo = geometry(_points_with(HAND_FACE))
    # Horizontal: over the 0.4 between the eye corners; vertical: over the nose
    # base's 0.16 below the eye line.
    assert geo["geo_mouth_width"] == pytest.approx(0.2 / 0.4)
    assert geo["geo_mouth_open"] == pytest.approx(0.1 / 0.16)
    assert geo["geo_corner_lift"] == pytest.approx(0.05 / 0.16)
    assert geo["geo_brow_height"] == pytest.approx(0.1 / 0.16)
    assert geo["geo_eye_open"] == pytest.approx(0.04 / 0.16)
    assert geo["geo_brow_tilt"] == pytest.approx((0.12 - 0.08) / 0.16)
    assert geo["geo_lip_nose"] == pytest.approx(0.06 / 0.16)


def test_geometry_ignores_a_horizontal_squeeze() -> None:
    # A head turned sideways (or an image resized to a narrower width) shortens
    # horizontal lengths only; each ratio compares lengths along one axis.
    points = _points_with(HAND_FACE)
    squeezed = points.copy()
    squeezed[:, 0] = 0.5 + (points[:, 0] - 0.5) * 0.6
    plain, narrow = geometry(points), geometry(squeezed)
    for name, value in plain.items():
        assert narrow[name] == pytest.approx(value, abs=1e-6), name


def test_geometry_ignores_head_roll() -> None:
    points = _points_with(HAND_FACE)
    angle = math.radians(30)
    rotation = np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    rolled = points.copy()
    rolled[:, :2] = (points[:, :2] - 0.5) @ rotation.T + 0.5
    assert geometry(rolled)["geo_mouth_open"] == pytest.approx(0.625, abs=1e-5)


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


# -- the second, padded view of a still ----------------------------------------


def _face_at(box: BoundingBox, smile: float) -> FaceLandmarks:
    points = np.zeros((478, 3), dtype=np.float32)
    return FaceLandmarks(
        points,
        {"mouthSmileLeft": smile, "jawOpen": 0.1},
        HeadPose(1.0, 2.0, 3.0),
        box,
    )


def test_average_views_averages_the_matching_face_and_keeps_its_geometry() -> None:
    original = _face_at(BoundingBox(10, 20, 100, 100), 0.6)
    # The same face in an image padded by (30, 40): its box moved by the border.
    padded = _face_at(BoundingBox(42, 60, 98, 100), 0.2)
    (result,) = average_views([original], [padded], 30, 40)
    assert result.blendshapes["mouthSmileLeft"] == pytest.approx(0.4)
    assert result.blendshapes["jawOpen"] == pytest.approx(0.1)
    assert result.box == original.box
    assert result.pose == original.pose


def test_average_views_leaves_a_face_without_a_match_unchanged() -> None:
    original = _face_at(BoundingBox(10, 20, 100, 100), 0.6)
    elsewhere = _face_at(BoundingBox(400, 300, 100, 100), 0.2)
    (result,) = average_views([original], [elsewhere], 30, 40)
    assert result is original


def test_padded_view_of_a_real_photo_averages_both_landmarker_runs(
    model_path: Path, happy_face_rgb: npt.NDArray[np.uint8], settings: Settings
) -> None:
    with LandmarkDetector(
        model_path, mode="image", options=landmarker_options(settings)
    ) as detector:
        frame = Frame(happy_face_rgb, 0, 0)
        (face,) = detector.detect(frame).faces
        # The padded view, built independently with OpenCV.
        h, w = happy_face_rgb.shape[:2]
        fill = [int(v) for v in happy_face_rgb.reshape(-1, 3).mean(axis=0)]
        bordered = cv2.copyMakeBorder(
            happy_face_rgb,
            h // 4,
            h // 4,
            w // 4,
            w // 4,
            cv2.BORDER_CONSTANT,
            value=fill,
        )
        (other,) = detector.detect(Frame(np.ascontiguousarray(bordered), 0, 1)).faces
        (result,) = with_padded_view(detector, frame, (face,))
    for name in ("mouthSmileLeft", "cheekSquintRight", "jawOpen"):
        expected = (face.blendshapes[name] + other.blendshapes[name]) / 2
        assert result.blendshapes[name] == pytest.approx(expected, abs=1e-6)
    assert result.box == face.box
