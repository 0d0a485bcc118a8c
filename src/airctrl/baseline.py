"""Per-person neutral baseline: a track's resting features over its first seconds."""

from __future__ import annotations

from airctrl.features import Features

__all__ = ["NeutralBaseline"]


class NeutralBaseline:
    """Average a track's features over its first ``duration_ms`` milliseconds.

    While collecting, :attr:`is_calibrating` is true and :meth:`reference` is None.
    A duration of 0 disables the baseline.
    """

    def __init__(self, *, duration_ms: int = 3000, min_samples: int = 5) -> None:
        self.duration_ms = duration_ms
        self.min_samples = min_samples
        self._sums: dict[str, float] = {}
        self._count = 0
        self._start_ms: int | None = None
        self._reference: Features | None = None

    @property
    def is_calibrating(self) -> bool:
        """True while the baseline is still being collected."""
        return self.duration_ms > 0 and self._reference is None

    def reference(self) -> Features | None:
        """Return the learnt resting features, or None while calibrating."""
        return self._reference

    def update(self, features: Features, timestamp_ms: int) -> None:
        """Add one frame's features while the collection window is open."""
        if not self.is_calibrating:
            return
        if self._start_ms is None:
            self._start_ms = timestamp_ms
        for name, value in features.values.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._count += 1
        if timestamp_ms - self._start_ms >= self.duration_ms and self._count >= self.min_samples:
            self._reference = Features({k: v / self._count for k, v in self._sums.items()})
