"""Tests for airctrl.smoothing: EMA, dwell and cooldown on one track."""

from __future__ import annotations

import pytest

from airctrl.smoothing import EmotionSmoother
from airctrl.types import EMOTIONS, EmotionEstimate


def estimate(label: str, p: float = 0.9) -> EmotionEstimate:
    rest = (1 - p) / (len(EMOTIONS) - 1)
    probs = {name: (p if name == label else rest) for name in EMOTIONS}
    return EmotionEstimate(label, probs, p)


def test_smoother_first_frame_passes_through() -> None:
    smoother = EmotionSmoother(alpha=0.5, dwell_frames=3, cooldown_frames=0)

    out = smoother.update(estimate("happy"))

    assert out.label == "happy"
    assert out.probabilities["happy"] == pytest.approx(0.9)


def test_smoother_ema_moves_alpha_of_the_way() -> None:
    smoother = EmotionSmoother(alpha=0.25, dwell_frames=1, cooldown_frames=0)
    smoother.update(estimate("happy", 0.9))

    out = smoother.update(estimate("sad", 0.9))

    # happy: 0.9 + 0.25 * (rest - 0.9), rest = 0.1 / 6
    rest = 0.1 / 6
    assert out.probabilities["happy"] == pytest.approx(0.9 + 0.25 * (rest - 0.9))
    assert out.probabilities["sad"] == pytest.approx(rest + 0.25 * (0.9 - rest))


def test_smoother_keeps_label_until_new_winner_dwells() -> None:
    smoother = EmotionSmoother(alpha=1.0, dwell_frames=3, cooldown_frames=0)
    smoother.update(estimate("neutral"))

    labels = [smoother.update(estimate("happy")).label for _ in range(3)]

    assert labels == ["neutral", "neutral", "happy"]


def test_smoother_ignores_single_frame_flicker() -> None:
    smoother = EmotionSmoother(alpha=1.0, dwell_frames=2, cooldown_frames=0)
    smoother.update(estimate("neutral"))

    labels = [
        smoother.update(estimate(x)).label
        for x in ("angry", "neutral", "angry", "neutral")
    ]

    assert labels == ["neutral"] * 4


def test_smoother_cooldown_delays_a_second_change() -> None:
    smoother = EmotionSmoother(alpha=1.0, dwell_frames=1, cooldown_frames=4)
    smoother.update(estimate("neutral"))
    labels = [smoother.update(estimate("happy")).label for _ in range(4)]

    assert labels == ["neutral", "neutral", "neutral", "happy"]


def test_smoother_confidence_is_smoothed_probability_of_shown_label() -> None:
    smoother = EmotionSmoother(alpha=0.5, dwell_frames=5, cooldown_frames=0)
    smoother.update(estimate("neutral", 0.8))

    out = smoother.update(estimate("happy", 0.8))

    assert out.label == "neutral"
    assert out.confidence == pytest.approx(out.probabilities["neutral"])


@pytest.mark.parametrize(
    "kwargs",
    [{"alpha": 0.0}, {"alpha": 1.5}, {"dwell_frames": 0}, {"cooldown_frames": -1}],
    ids=["alpha-zero", "alpha-above-one", "dwell-zero", "cooldown-negative"],
)
def test_smoother_rejects_bad_options(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EmotionSmoother(**kwargs)  # type: ignore[arg-type]
