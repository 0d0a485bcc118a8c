"""Per-person neutral baseline: a track's resting features over its first seconds."""

from __future__ import annotations

import logging
import statistics

from airctrl.features import Features

__all__ = ["NeutralBaseline"]

logger = logging.getLogger(__name__)


class NeutralBaseline:
    """Learn a track's resting features from its first ``duration_ms`` milliseconds.

    While collecting, :attr:`is_calibrating` is true and :meth:`reference` is
    None; the pipeline shows "calibrating" meanwhile. The reference is the
    per-feature median over the window (a blink or a brief grin in it does not
    shift the median), available once the window has passed and at least
    ``min_samples`` frames were seen. A duration of 0 disables the baseline.

    The emotion model then subtracts the person's excess resting activation
    (clipped at 0 and capped, see :func:`airctrl.emotions.term_values`).

    Limitation: the first seconds are assumed to be a resting face; someone
    who laughs throughout them gets part of the laugh taken as their rest.
    """

    def __init__(self, *, duration_ms: int = 3000, min_samples: int = 5) -> None:
        if duration_ms < 0:
            raise ValueError(f"duration_ms: expected >= 0, got {duration_ms}")
        if min_samples < 1:
            raise ValueError(f"min_samples: expected >= 1, got {min_samples}")
        self.duration_ms = duration_ms
        self.min_samples = min_samples
        self._samples: dict[str, list[float]] = {}
        self._count = 0
        self._start_ms: int | None = None
        self._reference: Features | None = None

    @property
    def is_calibrating(self) -> bool:
        """True while the baseline is still being collected."""
        return self.duration_ms > 0 and self._reference is None

    def reference(self) -> Features | None:
        """Return the learnt resting features, or None while calibrating or disabled."""
        return self._reference

    def update(self, features: Features, timestamp_ms: int) -> None:
        """Add one frame's features while the collection window is open."""
        if not self.is_calibrating:
            return
        if self._start_ms is None:
            self._start_ms = timestamp_ms
        for name, value in features.values.items():
            self._samples.setdefault(name, []).append(float(value))
        self._count += 1
        elapsed = timestamp_ms - self._start_ms
        if elapsed >= self.duration_ms and self._count >= self.min_samples:
            self._reference = Features(
                {
                    name: statistics.median(values)
                    for name, values in self._samples.items()
                }
            )
            self._samples.clear()
            logger.debug("Neutral baseline learnt from %d frames", self._count)
