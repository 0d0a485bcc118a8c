"""Outputs of a run: per-face JSONL/CSV events and the annotated video.

Every sink flushes as it goes, so an interrupted run keeps what it wrote.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import IO, Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from airctrl.errors import SourceError
from airctrl.pipeline import FrameResult
from airctrl.types import EMOTIONS

__all__ = [
    "CsvEventSink",
    "EventSink",
    "JsonlEventSink",
    "VideoSink",
    "events_from_frame",
    "frame_events",
    "status_event",
]

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    """Something that records events; ``close`` flushes and releases it."""

    def write(self, events: list[dict[str, Any]]) -> None:
        """Record events (JSON-ready dicts)."""

    def close(self) -> None:
        """Flush and release."""


def events_from_frame(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn one frame dict (:meth:`FrameResult.to_dict`) into events.

    One ``face`` event per face, or one ``no_face`` event for an empty frame.
    Every event carries the frame's own flags as ``frame_flags`` (capped face
    count, first frame of an animation, low light...); ``flags`` on a face event
    are that face's.
    """
    base = {
        "source": frame["source"],
        "frame": frame["frame"],
        "timestamp_ms": frame["timestamp_ms"],
    }
    frame_flags = list(frame.get("flags", []))
    if not frame["faces"]:
        return [{"event": "no_face", **base, "frame_flags": frame_flags}]
    return [
        {"event": "face", **base, **face, "frame_flags": frame_flags}
        for face in frame["faces"]
    ]


def frame_events(result: FrameResult) -> list[dict[str, Any]]:
    """Return the events of one analysed frame (see :func:`events_from_frame`)."""
    return events_from_frame(result.to_dict())


def status_event(
    source_id: str, state: str, wall_time_ms: int, detail: str = ""
) -> dict[str, Any]:
    """Return a source status event (``connected``, ``reconnecting``, ``lost``...).

    ``wall_time_ms`` is Unix time in ms: outages happen in wall-clock time,
    while face events carry the stream's own ``timestamp_ms``.
    """
    return {
        "event": "status",
        "source": source_id,
        "wall_time_ms": wall_time_ms,
        "state": state,
        "detail": detail,
    }


class JsonlEventSink:
    """Write events as JSON lines, one flush per write.

    ``opener(path)`` may supply the text file object (e.g. an encrypting writer).
    """

    def __init__(self, path: Path, *, opener: Any = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: IO[str] = (
            opener(path) if opener else path.open("w", encoding="utf-8")
        )

    def write(self, events: list[dict[str, Any]]) -> None:
        """Append events as JSON lines."""
        for event in events:
            self._handle.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


_CSV_COLUMNS = [
    "event",
    "source",
    "frame",
    "timestamp_ms",
    "face_id",
    "x",
    "y",
    "width",
    "height",
    "emotion",
    "confidence",
    *[f"p_{name}" for name in EMOTIONS],
    "evidence",
    "liveness",
    "blinks",
    "flags",
    "frame_flags",
    "state",
]


def event_to_row(event: dict[str, Any]) -> dict[str, Any]:
    """Flatten one event into the CSV columns."""
    row: dict[str, Any] = {key: event.get(key, "") for key in _CSV_COLUMNS}
    box = event.get("box")
    if box:
        row["x"], row["y"], row["width"], row["height"] = box
    for name, value in (event.get("probabilities") or {}).items():
        row[f"p_{name}"] = value
    row["evidence"] = "; ".join(
        f"{e['feature']} {e['value']}" for e in event.get("evidence") or []
    )
    row["flags"] = ";".join(event.get("flags") or [])
    row["frame_flags"] = ";".join(event.get("frame_flags") or [])
    return row


class CsvEventSink:
    """Write events as CSV rows with a fixed header."""

    def __init__(self, path: Path, *, opener: Any = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: IO[str] = (
            opener(path) if opener else path.open("w", encoding="utf-8", newline="")
        )
        self._writer = csv.DictWriter(self._handle, fieldnames=_CSV_COLUMNS)
        self._writer.writeheader()

    def write(self, events: list[dict[str, Any]]) -> None:
        """Append one row per event."""
        for event in events:
            self._writer.writerow(event_to_row(event))
        self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


class VideoSink:
    """Write annotated BGR frames to a video; the first frame sets the size."""

    def __init__(self, path: Path, *, fps: float, codec: str = "mp4v") -> None:
        if fps <= 0:
            raise ValueError(f"fps: expected > 0, got {fps}")
        if len(codec) != 4:
            raise ValueError(f"codec: expected a four-character code, got {codec!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fps = fps
        self.codec = codec
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image_bgr: npt.NDArray[np.uint8]) -> None:
        """Append one frame; frames of another size are resized to the first one's."""
        height, width = image_bgr.shape[:2]
        if self._writer is None:
            fourcc = cv2.VideoWriter.fourcc(*self.codec)
            self._writer = cv2.VideoWriter(
                str(self.path), fourcc, self.fps, (width, height)
            )
            if not self._writer.isOpened():
                raise SourceError(
                    f"cannot write video {self.path} with codec {self.codec}"
                )
            self._size = (width, height)
        if self._size != (width, height):
            image_bgr = np.asarray(cv2.resize(image_bgr, self._size), dtype=np.uint8)
        self._writer.write(image_bgr)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file so players can read it."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
