"""Tests for airctrl.overlay: what the HUD draws, and the light-mode switch."""

from __future__ import annotations

import numpy as np
import pytest

from airctrl.overlay import EMOTION_COLORS_BGR, HudRenderer, HudStatus, LightModeSwitch
from airctrl.pipeline import FaceResult, FrameResult
from airctrl.types import EMOTIONS, BoundingBox, EmotionEstimate, HeadPose


def frame_with_face(label: str = "happy", confidence: float = 0.8) -> FrameResult:
    probs = {
        name: (confidence if name == label else (1 - confidence) / 6)
        for name in EMOTIONS
    }
    estimate = EmotionEstimate(
        label, probs, confidence, (("lip-corner pull", 0.81), ("cheek raise", 0.62))
    )
    face = FaceResult(
        1,
        BoundingBox(100, 80, 120, 140),
        estimate,
        estimate,
        HeadPose(0, 0, 0),
        False,
        "live",
        2,
        False,
    )
    return FrameResult(0, 0, 480, 360, (face,))


def count_colour(image: np.ndarray, bgr: tuple[int, int, int]) -> int:
    return int(np.all(image == bgr, axis=2).sum())


def test_hud_draws_box_in_emotion_colour_along_the_face_box() -> None:
    image = np.zeros((360, 480, 3), dtype=np.uint8)

    HudRenderer().draw(image, frame_with_face("happy"), HudStatus(fps=30.0))

    colour = EMOTION_COLORS_BGR["happy"]
    # Box edges: top row from x=100 to 220 at y=80, 2 px thick.
    assert np.all(image[80, 100:221] == colour)
    assert np.all(image[80:221, 100] == colour)


def test_hud_confidence_bar_fills_in_proportion() -> None:
    low = np.zeros((360, 480, 3), dtype=np.uint8)
    high = np.zeros((360, 480, 3), dtype=np.uint8)

    HudRenderer().draw(low, frame_with_face("sad", 0.25), HudStatus(fps=30.0))
    HudRenderer().draw(high, frame_with_face("sad", 0.75), HudStatus(fps=30.0))

    colour = EMOTION_COLORS_BGR["sad"]
    assert count_colour(high, colour) > count_colour(low, colour) + 100


def test_light_mode_draws_less_than_full_mode() -> None:
    full = np.zeros((360, 480, 3), dtype=np.uint8)
    light = np.zeros((360, 480, 3), dtype=np.uint8)

    HudRenderer().draw(full, frame_with_face(), HudStatus(fps=30.0))
    HudRenderer().draw(light, frame_with_face(), HudStatus(fps=30.0, light_mode=True))

    assert int((light > 0).sum()) < int((full > 0).sum())


def test_hud_without_result_still_draws_status_panel() -> None:
    image = np.zeros((120, 200, 3), dtype=np.uint8)

    HudRenderer().draw(image, None, HudStatus(fps=12.5))

    assert count_colour(image, (30, 30, 30)) > 100


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([30, 11], [False, True]),
        ([30, 11, 15], [False, True, True]),
        ([30, 11, 15, 18], [False, True, True, False]),
        ([12, 12], [False, False]),
    ],
    ids=[
        "drops-below",
        "stays-on-between",
        "recovers-at-threshold",
        "at-threshold-stays-off",
    ],
)
def test_light_mode_switch_has_hysteresis(
    readings: list[float], expected: list[bool]
) -> None:
    switch = LightModeSwitch(below_fps=12, recover_fps=18)

    assert [switch.update(fps) for fps in readings] == expected


def test_light_mode_switch_rejects_recover_below_threshold() -> None:
    with pytest.raises(ValueError, match="recover_fps"):
        LightModeSwitch(below_fps=12, recover_fps=10)


def test_panel_stays_in_frame_when_face_touches_bottom_edge() -> None:
    image = np.zeros((360, 480, 3), dtype=np.uint8)
    result = frame_with_face("happy", 0.9)
    face = result.faces[0]
    at_bottom = FaceResult(
        1, BoundingBox(100, 250, 120, 110), face.emotion, face.raw_emotion,
        face.pose, False, None, 0, True,
    )  # fmt: skip

    HudRenderer().draw(
        image, FrameResult(0, 0, 480, 360, (at_bottom,)), HudStatus(fps=30)
    )

    right_of_box = image[:, 230:]
    colour = EMOTION_COLORS_BGR["happy"]
    assert count_colour(right_of_box, colour) > 50  # the confidence bar
    assert count_colour(right_of_box, (255, 255, 255)) > 50  # evidence text
