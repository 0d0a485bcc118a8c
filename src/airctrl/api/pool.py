"""A small fixed pool of image-mode pipelines shared by the requests of one worker.

MediaPipe graphs are not safe to call from two threads at once, so each
pipeline is lent to one request at a time. The pool is built once at start-up;
no request ever loads the model.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path

from airctrl.config import Settings
from airctrl.pipeline import FrameResult, Pipeline
from airctrl.types import Frame

__all__ = ["PipelinePool"]

logger = logging.getLogger(__name__)


class PipelinePool:
    """``size`` image-mode pipelines; :meth:`process` borrows one per call.

    :meth:`process` blocks its thread until a pipeline is free, so call it from
    a worker thread (``run_in_threadpool``), never on the event loop.
    """

    def __init__(
        self, settings: Settings, *, size: int = 1, model_path: Path | None = None
    ) -> None:
        if size < 1:
            raise ValueError(f"size: expected at least 1, got {size}")
        self._idle: queue.SimpleQueue[Pipeline] = queue.SimpleQueue()
        self._all: list[Pipeline] = []
        for _ in range(size):
            pipeline = Pipeline(settings, mode="image", model_path=model_path)
            self._all.append(pipeline)
            self._idle.put(pipeline)
        self._closed = False
        logger.info("Loaded %d image-mode pipeline(s)", size)

    @property
    def size(self) -> int:
        """Number of pipelines in the pool."""
        return len(self._all)

    @property
    def is_loaded(self) -> bool:
        """True until :meth:`close` has been called."""
        return not self._closed

    def process(self, frame: Frame) -> FrameResult:
        """Analyse ``frame`` on a free pipeline (blocks until one is free)."""
        if self._closed:
            raise RuntimeError("PipelinePool is closed")
        pipeline = self._idle.get()
        try:
            return pipeline.process(frame)
        finally:
            self._idle.put(pipeline)

    def close(self) -> None:
        """Release every pipeline."""
        self._closed = True
        for pipeline in self._all:
            pipeline.close()
