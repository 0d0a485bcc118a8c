"""Per-track smoothing of emotion probabilities: EMA, then dwell and cooldown."""

from __future__ import annotations

from airctrl.types import EMOTIONS, EmotionEstimate

__all__ = ["EmotionSmoother"]


class EmotionSmoother:
    """Smooth one track's emotion over time.

    Probabilities follow an exponential moving average with weight ``alpha`` on the
    newest frame. The shown label changes only after the smoothed winner has led
    for ``dwell_frames`` frames in a row, and not sooner than ``cooldown_frames``
    frames after the previous change, so the HUD does not flicker.
    """

    def __init__(
        self, *, alpha: float = 0.35, dwell_frames: int = 3, cooldown_frames: int = 5
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha: expected 0 < alpha <= 1, got {alpha}")
        if dwell_frames < 1:
            raise ValueError(f"dwell_frames: expected >= 1, got {dwell_frames}")
        if cooldown_frames < 0:
            raise ValueError(f"cooldown_frames: expected >= 0, got {cooldown_frames}")
        self.alpha = alpha
        self.dwell_frames = dwell_frames
        self.cooldown_frames = cooldown_frames
        self._probabilities: dict[str, float] | None = None
        self._label: str | None = None
        self._candidate: str | None = None
        self._candidate_frames = 0
        self._frames_since_change = 0

    @property
    def label(self) -> str | None:
        """The label currently shown, or None before the first update."""
        return self._label

    def update(self, estimate: EmotionEstimate) -> EmotionEstimate:
        """Fold one frame's estimate in and return the smoothed estimate."""
        smoothed = self._probabilities
        if smoothed is None:
            smoothed = {k: float(estimate.probabilities.get(k, 0.0)) for k in EMOTIONS}
            self._probabilities = smoothed
        else:
            for name in EMOTIONS:
                new = float(estimate.probabilities.get(name, 0.0))
                smoothed[name] += self.alpha * (new - smoothed[name])

        winner = max(smoothed, key=lambda k: smoothed[k])
        self._frames_since_change += 1
        if self._label is None:
            self._label = winner
            self._frames_since_change = 0
        elif winner == self._label:
            self._candidate, self._candidate_frames = None, 0
        else:
            if winner == self._candidate:
                self._candidate_frames += 1
            else:
                self._candidate, self._candidate_frames = winner, 1
            if (
                self._candidate_frames >= self.dwell_frames
                and self._frames_since_change >= self.cooldown_frames
            ):
                self._label = winner
                self._candidate, self._candidate_frames = None, 0
                self._frames_since_change = 0

        probabilities = dict(smoothed)
        return EmotionEstimate(
            label=self._label,
            probabilities=probabilities,
            confidence=probabilities[self._label],
            evidence=estimate.evidence,
            flags=estimate.flags,
        )
