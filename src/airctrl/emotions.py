"""Emotion scoring from features (placeholder rules; replaced by the fitted model)."""

from __future__ import annotations

import math

from airctrl.features import Features
from airctrl.config import EmotionSettings
from airctrl.types import EMOTIONS, EmotionEstimate, FaceLandmarks

__all__ = ["EmotionClassifier"]


class EmotionClassifier:
    """Score every emotion class from features and explain the choice."""

    @classmethod
    def from_settings(cls, settings: "EmotionSettings") -> "EmotionClassifier":
        """Build the classifier from the emotion settings (parameter file, overrides)."""
        return cls()

    def classify(
        self,
        features: Features,
        baseline: Features | None = None,
        face: FaceLandmarks | None = None,
    ) -> EmotionEstimate:
        """Return probabilities for every class, a confidence and the evidence."""
        v = features.values
        smile = (v.get("mouthSmileLeft", 0.0) + v.get("mouthSmileRight", 0.0)) / 2
        scores = {name: 0.0 for name in EMOTIONS}
        scores["neutral"] = 1.0
        scores["happy"] = 4.0 * smile
        total = sum(math.exp(s) for s in scores.values())
        probs = {k: math.exp(s) / total for k, s in scores.items()}
        label = max(probs, key=lambda k: probs[k])
        return EmotionEstimate(label, probs, probs[label], (("lip-corner pull", smile),))
