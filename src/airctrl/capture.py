"""Frame sources: cameras, streams, video files, images, folders -> upright RGB Frames.

Every source yields :class:`airctrl.types.Frame` values whose ``timestamp_ms``
is strictly increasing, whatever the container or device reports. Nothing
after this module knows which kind of source produced a frame.

Live sources (:class:`CameraSource`, :class:`StreamSource`) never let a read
block the caller for longer than ``read_timeout_seconds``: each capture object
is driven from a worker thread and abandoned when it stops answering. When
reads fail, time out, or the same frame repeats ``stale_frame_limit`` times,
the source reports ``"lost"``, yields nothing stale, and reconnects with
exponential backoff plus jitter until frames come back, a stop event is set, or
``max_reconnect_attempts`` is used up. A device that cannot be opened at start
is treated the same way: a warning, then retries.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
import numpy.typing as npt

from airctrl.config import SourceSettings
from airctrl.decode import describe_content, read_image, sniff_kind
from airctrl.errors import (
    AirctrlError,
    EmptyInputError,
    SourceError,
    SourceLostError,
    UnsupportedMediaError,
)
from airctrl.types import Frame

__all__ = [
    "STREAM_SCHEMES",
    "CameraSource",
    "CaptureFactory",
    "CaptureLike",
    "DecodeFailureCallback",
    "FolderSource",
    "FrameSource",
    "ImageSource",
    "SourceStatus",
    "StatusCallback",
    "StreamSource",
    "VideoFileSource",
    "open_source",
    "redact_url",
]

logger = logging.getLogger(__name__)

#: What a source reports about itself. ``lost`` is entered the moment an outage
#: is detected, ``reconnecting`` while retrying, ``ended`` when a file or folder
#: is exhausted, ``stopped`` after the stop event or :meth:`FrameSource.close`.
SourceStatus = Literal[
    "connecting", "connected", "lost", "reconnecting", "ended", "stopped", "failed"
]
#: Called with (source_id, new status) on every status change.
StatusCallback = Callable[[str, str], None]
#: Called with (source_id, reason) for each frame or file that arrived but could
#: not be decoded and was skipped (the run goes on without it).
DecodeFailureCallback = Callable[[str, str], None]

#: URL schemes handled by :class:`StreamSource`.
STREAM_SCHEMES = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"}
)
#: Consecutive failed reads that make a live source declare an outage. One
#: failed read can be a hiccup (a USB camera drops single frames under load);
#: three in a row at 30 fps is 100 ms of nothing, which is not a hiccup.
FAILED_READS_FOR_OUTAGE = 3
#: How often a blocked wait checks the stop event, in seconds.
STOP_POLL_SECONDS = 0.05
#: File names in a folder source that are never images (editor/OS leftovers).
_IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
#: OpenCV orientation metadata (degrees clockwise) -> rotation that makes the
#: frame upright, used only when the backend does not rotate by itself.
_ROTATIONS = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the live sources use."""

    def read(self) -> tuple[bool, Any]:
        """Return (ok, BGR HxWx3 uint8 frame or None)."""
        ...

    def release(self) -> None:
        """Free the device or connection."""
        ...


#: Opens a capture for a camera index or URL; raising or returning a capture
#: whose ``isOpened()`` is false counts as a failed attempt.
CaptureFactory = Callable[[Any], CaptureLike]


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and ids)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _bgr_to_rgb(frame: Any) -> npt.NDArray[np.uint8] | None:
    """Return an RGB copy of a BGR/gray/BGRA frame from OpenCV, or None if unusable."""
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        return None
    if frame.dtype != np.uint8:
        if frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        else:
            return None
    if frame.ndim == 2:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB), dtype=np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return None


def _describe_unusable(frame: Any) -> str:
    """Say why a frame a capture handed over cannot be used."""
    if not isinstance(frame, np.ndarray):
        return f"capture returned {type(frame).__name__}, not an image array"
    return f"unusable frame: shape {frame.shape}, dtype {frame.dtype}"


class _Timestamps:
    """Keep timestamps strictly increasing: a repeat or step back becomes last + 1."""

    def __init__(self) -> None:
        self.last_ms = -1
        self.adjusted = 0

    def next(self, proposed_ms: float) -> int:
        value = round(proposed_ms) if math.isfinite(proposed_ms) else self.last_ms + 1
        if value <= self.last_ms:
            self.adjusted += 1
            value = self.last_ms + 1
        self.last_ms = value
        return value


class FrameSource(ABC):
    """Something that yields upright RGB frames with strictly increasing timestamps.

    Iterate it (``for frame in source``) once; use it as a context manager or
    call :meth:`close` to free the device. ``status`` says how the source is
    doing (:data:`SourceStatus`), ``outages`` counts how often a live source
    lost its feed, and ``warnings`` collects notes such as skipped files.
    ``on_decode_failure`` hears of every skipped undecodable file (folders) or
    frame (cameras, streams); a video file's unreadable frame ends the file
    instead, and a single image that does not decode raises.
    """

    kind: str = "source"

    def __init__(
        self,
        source_id: str,
        *,
        on_status: StatusCallback | None = None,
        on_decode_failure: DecodeFailureCallback | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.source_id = source_id
        self.on_status = on_status
        self.on_decode_failure = on_decode_failure
        self.stop_event = stop_event or threading.Event()
        self.status: str = "connecting"
        self.outages = 0
        self.warnings: list[str] = []

    def _set_status(self, status: SourceStatus) -> None:
        if status == self.status:
            return
        previous, self.status = self.status, status
        # The outage itself is logged with its reason where it is detected.
        level = logging.WARNING if status == "failed" else logging.INFO
        logger.log(level, "Source %s: %s -> %s", self.source_id, previous, status)
        if self.on_status is not None:
            try:
                self.on_status(self.source_id, status)
            except Exception:  # a broken callback must not kill capture
                logger.exception("Status callback for %s failed", self.source_id)

    def _decode_failed(self, reason: str) -> None:
        """Tell ``on_decode_failure`` that an input was skipped as undecodable."""
        if self.on_decode_failure is not None:
            try:
                self.on_decode_failure(self.source_id, reason)
            except Exception:  # a broken callback must not kill capture
                logger.exception(
                    "Decode-failure callback for %s failed", self.source_id
                )

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends, is stopped, or fails for good."""

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def close(self) -> None:
        """Stop the source and free what it holds; safe to call twice."""
        self.stop_event.set()
        if self.status not in ("ended", "failed"):
            self._set_status("stopped")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# -- files ----------------------------------------------------------------------


class VideoFileSource(FrameSource):
    """Frames of a video file, decoded with OpenCV's FFmpeg backend.

    Frames come out upright: OpenCV applies the container's rotation metadata
    (``CAP_PROP_ORIENTATION_AUTO``); if a backend reports rotation without
    applying it, the frame is rotated here. The container's frame count is
    never trusted: frames are read until the decoder has no more. Timestamps
    are the container's presentation times in ms, made strictly increasing
    (a repeated or backwards time becomes the previous one plus 1 ms).
    """

    kind = "video"

    def __init__(
        self,
        path: str | Path,
        *,
        source_id: str | None = None,
        loop: bool = False,
        on_status: StatusCallback | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.path = Path(path)
        super().__init__(
            source_id or self.path.name, on_status=on_status, stop_event=stop_event
        )
        self.loop = loop
        self.frames_read = 0
        self._capture: Any = None
        self.rotation_deg = 0
        self.fps = 0.0
        self._open()

    def _open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such video file")
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        # OpenCV applies rotation metadata by default; say so explicitly (the
        # property is not accepted as an open() parameter by this backend).
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        if not capture.isOpened():
            capture.release()
            raise SourceError(
                f"{self.path}: cannot open the video (damaged, truncated, or a codec "
                "FFmpeg cannot read)"
            )
        meta = round(float(capture.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
        auto = capture.get(cv2.CAP_PROP_ORIENTATION_AUTO)
        self._manual_rotation = _ROTATIONS.get(meta) if meta and auto != 1 else None
        self.rotation_deg = meta
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._capture = capture
        logger.info(
            "Opened video %s (%.1f fps, rotation %d deg)",
            self.path.name,
            self.fps,
            meta,
        )

    def _frame_time_ms(self, index: int) -> float:
        position = float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        if (
            math.isfinite(position)
            and position >= 0
            and not (index > 0 and position == 0)
        ):
            return float(position)
        # No usable container time: fall back to the nominal frame rate.
        fps = self.fps if self.fps > 0 else 30.0
        return index * 1000.0 / fps

    def frames(self) -> Iterator[Frame]:
        """Yield every decodable frame, in order, until the end of the file."""
        stamps = _Timestamps()
        offset_ms = 0
        try:
            while not self.stop_event.is_set():
                if self._capture is None:
                    return
                ok, bgr = self._capture.read()
                rgb = _bgr_to_rgb(bgr) if ok else None
                if rgb is None:
                    if self.loop and self.frames_read > 0:
                        offset_ms = stamps.last_ms + 1
                        self._capture.release()
                        self._open()
                        continue
                    self._set_status("ended")
                    return
                if self._manual_rotation is not None:
                    rgb = np.asarray(
                        cv2.rotate(rgb, self._manual_rotation), dtype=np.uint8
                    )
                self._set_status("connected")
                stamp = stamps.next(offset_ms + self._frame_time_ms(self.frames_read))
                frame = Frame(
                    np.ascontiguousarray(rgb), stamp, self.frames_read, self.source_id
                )
                self.frames_read += 1
                yield frame
            self._set_status("stopped")
        finally:
            if stamps.adjusted:
                logger.info(
                    "%s: %d repeated or backwards timestamps moved forward",
                    self.path.name,
                    stamps.adjusted,
                )
            self.close()

    def close(self) -> None:
        """Release the decoder."""
        super().close()
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class ImageSource(FrameSource):
    """One still image file as a single frame (decoded by :func:`read_image`)."""

    kind = "image"

    def __init__(
        self,
        path: str | Path,
        *,
        source_id: str | None = None,
        on_status: StatusCallback | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.path = Path(path)
        super().__init__(
            source_id or self.path.name, on_status=on_status, stop_event=stop_event
        )

    def frames(self) -> Iterator[Frame]:
        """Yield the one frame; decode errors propagate (one image, one answer)."""
        decoded = read_image(self.path)
        self.warnings.extend(decoded.warnings)
        self._set_status("connected")
        yield Frame(decoded.image, 0, 0, self.source_id, decoded.warnings)
        self._set_status("ended")


class FolderSource(FrameSource):
    """The images of one folder, in file-name order, one frame each.

    Frames are one second apart (``timestamp_ms`` = 1000 x position). Files that
    are not images or fail to decode are skipped with a warning in
    ``warnings`` (and the log), never a crash, and reported to
    ``on_decode_failure``; videos are skipped too but are no decode failure.
    Sub-folders and hidden files are ignored. ``skipped`` lists (file name,
    reason) pairs.

    Limitation: video files inside the folder are skipped, not analysed; pass
    them as their own ``--source`` (``airctrl analyze`` on a folder reads both).
    """

    kind = "folder"

    def __init__(
        self,
        path: str | Path,
        *,
        source_id: str | None = None,
        on_status: StatusCallback | None = None,
        on_decode_failure: DecodeFailureCallback | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: not a folder")
        super().__init__(
            source_id or self.path.name,
            on_status=on_status,
            on_decode_failure=on_decode_failure,
            stop_event=stop_event,
        )
        self.skipped: list[tuple[str, str]] = []

    def files(self) -> list[Path]:
        """Return the candidate files, sorted by name."""
        return sorted(
            entry
            for entry in self.path.iterdir()
            if entry.is_file()
            and not entry.name.startswith(".")
            and entry.name not in _IGNORED_NAMES
        )

    def _skip(self, entry: Path, reason: str) -> None:
        self.skipped.append((entry.name, reason))
        self.warnings.append(f"{entry.name}: skipped ({reason})")
        logger.warning("Skipping %s: %s", entry.name, reason)

    def frames(self) -> Iterator[Frame]:
        """Yield one frame per readable image."""
        position = 0
        self._set_status("connected")
        for entry in self.files():
            if self.stop_event.is_set():
                self._set_status("stopped")
                return
            if sniff_kind(entry) == "video":
                self._skip(entry, "a video; give it as its own --source")
                continue
            try:
                decoded = read_image(entry)
            except (AirctrlError, OSError) as exc:
                self._skip(entry, str(exc))
                self._decode_failed(str(exc))
                continue
            yield Frame(
                decoded.image, position * 1000, position, entry.name, decoded.warnings
            )
            position += 1
        self._set_status("ended")


# -- live sources ---------------------------------------------------------------


class _CaptureWorker:
    """Drive one capture object from a daemon thread so the caller can time out.

    The capture is opened and read only in the worker thread. When the caller
    gives up on a call (timeout or stop), the worker is abandoned: it finishes
    the call it is stuck in, if ever, then releases the capture itself.

    Limitation: Python cannot interrupt a native call, so a read that never
    returns keeps its (daemon) thread and device handle until it does. Streams
    pass FFmpeg its own read timeout so such threads end; a camera driver that
    hangs forever leaks one thread per outage.
    """

    def __init__(self, factory: CaptureFactory, target: Any, name: str) -> None:
        self._factory = factory
        self._target = target
        self._requests: queue.Queue[str] = queue.Queue()
        self._results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        capture: Any = None
        try:
            try:
                capture = self._factory(self._target)
                opened = capture is not None and bool(
                    getattr(capture, "isOpened", lambda: True)()
                )
                self._results.put(("open", opened))
            except Exception as exc:  # noqa: BLE001
                # The factory's failure is reported to the caller, not raised.
                self._results.put(("open", exc))
                return
            while not self._abandoned.is_set():
                request = self._requests.get()
                if request == "stop" or self._abandoned.is_set():
                    break
                try:
                    result: Any = capture.read()
                except Exception as exc:  # noqa: BLE001
                    # A read failure is an outage, not a crash.
                    result = exc
                if self._abandoned.is_set():
                    break
                self._results.put(("read", result))
        finally:
            if capture is not None:
                try:
                    capture.release()
                except Exception:  # releasing a dead device may fail; nothing to do
                    logger.debug("Releasing a capture failed", exc_info=True)

    def _wait(
        self, timeout_s: float, stop_event: threading.Event
    ) -> tuple[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop_event.is_set():
                return None
            try:
                return self._results.get(timeout=min(STOP_POLL_SECONDS, remaining))
            except queue.Empty:
                continue

    def wait_open(
        self, timeout_s: float, stop_event: threading.Event
    ) -> bool | Exception | None:
        """Return whether it opened, the factory's exception, or None on timeout."""
        answer = self._wait(timeout_s, stop_event)
        if answer is None:
            return None
        value = answer[1]
        return value if isinstance(value, Exception) else bool(value)

    def read(self, timeout_s: float, stop_event: threading.Event) -> Any:
        """Return capture.read()'s result, an exception, or None on timeout/stop."""
        self._requests.put("read")
        answer = self._wait(timeout_s, stop_event)
        return None if answer is None else answer[1]

    def abandon(self) -> None:
        """Let the worker release the capture and exit as soon as it can."""
        self._abandoned.set()
        self._requests.put("stop")


class _LiveSource(FrameSource):
    """Shared loop of cameras and streams: timed reads, stale check, backoff."""

    kind = "live"

    def __init__(
        self,
        target: Any,
        settings: SourceSettings,
        *,
        source_id: str,
        capture_factory: CaptureFactory | None = None,
        on_status: StatusCallback | None = None,
        on_decode_failure: DecodeFailureCallback | None = None,
        stop_event: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            source_id,
            on_status=on_status,
            on_decode_failure=on_decode_failure,
            stop_event=stop_event,
        )
        self.target = target
        self.settings = settings
        self._factory = capture_factory or self._default_factory
        self._rng = rng or random.Random()
        self._worker: _CaptureWorker | None = None
        #: Every backoff wait taken, in seconds (for metrics and tests).
        self.backoff_history: list[float] = []
        self.reconnects = 0
        self.frames_read = 0
        self._start = time.monotonic()

    def _default_factory(self, target: Any) -> CaptureLike:
        raise NotImplementedError

    def backoff_seconds(self, attempt: int) -> float:
        """Return the wait before reconnect ``attempt`` (0-based), in seconds.

        ``reconnect_initial_seconds * 2**attempt``, capped at
        ``reconnect_max_seconds``, then multiplied by a random factor in
        ``1 ± reconnect_jitter`` so many clients do not retry in lockstep.
        """
        base = min(
            self.settings.reconnect_max_seconds,
            self.settings.reconnect_initial_seconds * (2 ** min(attempt, 30)),
        )
        factor = 1.0 + self.settings.reconnect_jitter * self._rng.uniform(-1.0, 1.0)
        return float(max(0.0, base * factor))

    def _connect(self) -> bool:
        self._drop_worker()
        worker = _CaptureWorker(self._factory, self.target, f"capture-{self.source_id}")
        outcome = worker.wait_open(self.settings.open_timeout_seconds, self.stop_event)
        if outcome is True:
            self._worker = worker
            return True
        worker.abandon()
        if outcome is None and not self.stop_event.is_set():
            logger.warning(
                "Source %s did not open within %.1f s",
                self.source_id,
                self.settings.open_timeout_seconds,
            )
        elif isinstance(outcome, Exception):
            logger.warning("Source %s failed to open: %s", self.source_id, outcome)
        return False

    def _drop_worker(self) -> None:
        if self._worker is not None:
            self._worker.abandon()
            self._worker = None

    def _outage(self, reason: str) -> None:
        self._drop_worker()
        if self.status not in ("lost", "reconnecting"):
            self.outages += 1
            logger.warning("Source %s lost: %s", self.source_id, reason)
        self._set_status("lost")

    def _reconnect(self) -> bool:
        """Retry with backoff; True once connected, False if stopped or out of tries."""
        attempt = 0
        limit = self.settings.max_reconnect_attempts
        while not self.stop_event.is_set():
            if limit is not None and attempt >= limit:
                return False
            wait = self.backoff_seconds(attempt)
            self.backoff_history.append(wait)
            self._set_status("reconnecting")
            logger.info(
                "Source %s: reconnect attempt %d in %.2f s",
                self.source_id,
                attempt + 1,
                wait,
            )
            if self.stop_event.wait(wait):
                return False
            attempt += 1
            if self._connect():
                self.reconnects += 1
                return True
        return False

    def frames(self) -> Iterator[Frame]:
        """Yield fresh frames; survive outages by reconnecting (see the module doc).

        A first open that fails is an outage like any other: it is logged as a
        warning and retried with backoff, so a camera plugged in late is found.

        Raises:
            SourceLostError: ``max_reconnect_attempts`` reconnects in a row
                failed (including those after a failed first open).
        """
        stamps = _Timestamps()
        previous: npt.NDArray[np.uint8] | None = None
        repeats = 0
        failures = 0
        try:
            self._set_status("connecting")
            if not self._connect() and not self.stop_event.is_set():
                # The loop below reconnects: a camera plugged in late, or a
                # stream server still starting, is picked up when it appears.
                self._outage(
                    "could not be opened (not found or busy); retrying until stopped"
                )
            while not self.stop_event.is_set():
                worker = self._worker
                if worker is None:
                    if not self._reconnect():
                        break
                    continue
                answer = worker.read(
                    self.settings.read_timeout_seconds, self.stop_event
                )
                if self.stop_event.is_set():
                    break

                rgb = None
                problem = ""
                if answer is None:
                    problem = (
                        f"no frame within {self.settings.read_timeout_seconds:.1f} s"
                    )
                    failures = FAILED_READS_FOR_OUTAGE  # a hung read is an outage now
                elif isinstance(answer, Exception):
                    problem = f"read raised {type(answer).__name__}: {answer}"
                    failures += 1
                else:
                    ok, raw = answer
                    rgb = _bgr_to_rgb(raw) if ok else None
                    if rgb is None:
                        problem = (
                            _describe_unusable(raw) if ok else "read returned no frame"
                        )
                        failures += 1
                        if ok:
                            logger.warning(
                                "Skipping a frame from %s: %s", self.source_id, problem
                            )
                            self._decode_failed(problem)

                if rgb is None:
                    if failures >= FAILED_READS_FOR_OUTAGE:
                        self._outage(problem)
                        failures = 0
                        previous, repeats = None, 0
                        if not self._reconnect():
                            break
                    continue
                failures = 0

                if previous is not None and np.array_equal(rgb, previous):
                    # An identical frame carries nothing new; a run of them means a
                    # frozen device or stream. Never passed on as if it were live.
                    repeats += 1
                    if repeats + 1 >= self.settings.stale_frame_limit:
                        self._outage(f"the same frame repeated {repeats + 1} times")
                        previous, repeats = None, 0
                        if not self._reconnect():
                            break
                    continue
                previous, repeats = rgb, 0

                self._set_status("connected")
                stamp = stamps.next((time.monotonic() - self._start) * 1000.0)
                frame = Frame(rgb, stamp, self.frames_read, self.source_id)
                self.frames_read += 1
                yield frame

            if self.stop_event.is_set():
                self._set_status("stopped")
            else:
                raise self._gave_up()
        finally:
            self._drop_worker()

    def _gave_up(self) -> SourceLostError:
        self._set_status("failed")
        tries = self.settings.max_reconnect_attempts
        return SourceLostError(
            f"{self.kind} {self.source_id} stopped delivering frames and did not come "
            f"back after {tries} reconnect attempts"
        )

    def close(self) -> None:
        """Stop reading and release the device (from the worker thread)."""
        super().close()
        self._drop_worker()


class CameraSource(_LiveSource):
    """A local camera by index (``/dev/videoN``), with outage detection and reconnect.

    ``capture_factory(index)`` opens the device; the default uses
    ``cv2.VideoCapture`` and applies ``settings.width``/``height``. Tests pass a
    scripted object with ``read()``/``release()`` instead.
    """

    kind = "camera"

    def __init__(
        self,
        index: int,
        settings: SourceSettings | None = None,
        *,
        capture_factory: CaptureFactory | None = None,
        on_status: StatusCallback | None = None,
        on_decode_failure: DecodeFailureCallback | None = None,
        stop_event: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if index < 0:
            raise ValueError(f"index: expected a camera index >= 0, got {index}")
        settings = settings or SourceSettings(source=str(index))
        super().__init__(
            index,
            settings,
            source_id=settings.name or f"camera{index}",
            capture_factory=capture_factory,
            on_status=on_status,
            on_decode_failure=on_decode_failure,
            stop_event=stop_event,
            rng=rng,
        )

    def _default_factory(self, target: Any) -> CaptureLike:
        capture = cv2.VideoCapture(int(target))
        if self.settings.width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.settings.width)
        if self.settings.height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.settings.height)
        return capture


class StreamSource(_LiveSource):
    """An RTSP/RTMP/HTTP(S)/UDP stream read with FFmpeg, with timeouts and reconnect.

    FFmpeg gets ``CAP_PROP_OPEN_TIMEOUT_MSEC`` and ``CAP_PROP_READ_TIMEOUT_MSEC``
    from the settings; independently, the worker-thread watchdog abandons a read
    that exceeds ``read_timeout_seconds`` even if FFmpeg ignores its own timeout.
    The source id hides any password in the URL.
    """

    kind = "stream"

    def __init__(
        self,
        url: str,
        settings: SourceSettings | None = None,
        *,
        capture_factory: CaptureFactory | None = None,
        on_status: StatusCallback | None = None,
        on_decode_failure: DecodeFailureCallback | None = None,
        stop_event: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in STREAM_SCHEMES:
            raise ValueError(
                f"url: expected one of {', '.join(sorted(STREAM_SCHEMES))} URLs, "
                f"got {scheme!r}"
            )
        settings = settings or SourceSettings(source=url)
        super().__init__(
            url,
            settings,
            source_id=settings.name or redact_url(url),
            capture_factory=capture_factory,
            on_status=on_status,
            on_decode_failure=on_decode_failure,
            stop_event=stop_event,
            rng=rng,
        )

    def _default_factory(self, target: Any) -> CaptureLike:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.settings.open_timeout_seconds * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.settings.read_timeout_seconds * 1000),
        ]
        return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)


def open_source(
    spec: str,
    settings: SourceSettings | None = None,
    stop_event: threading.Event | None = None,
    *,
    on_status: StatusCallback | None = None,
    on_decode_failure: DecodeFailureCallback | None = None,
    capture_factory: CaptureFactory | None = None,
) -> FrameSource:
    """Pick and open the right source for ``spec``.

    Digits are a camera index; ``rtsp://``, ``http(s)://`` and the other
    :data:`STREAM_SCHEMES` are streams; a folder is a :class:`FolderSource`;
    a file is an image or a video by its content (never its extension).
    ``on_decode_failure`` goes to the kinds that skip undecodable input: folders,
    cameras and streams (see :class:`FrameSource`).

    Raises:
        ValueError: ``spec`` is empty.
        SourceError: ``spec`` names nothing that exists.
        EmptyInputError: the file is empty.
        UnsupportedMediaError: the file is neither an image nor a video (the
            message says what it looks like).
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("source: expected a camera index, URL, file or folder, got ''")
    settings = settings or SourceSettings(source=spec)
    common: dict[str, Any] = {"on_status": on_status, "stop_event": stop_event}

    # Only these kinds skip an undecodable input and go on (see FrameSource).
    skipping: dict[str, Any] = {**common, "on_decode_failure": on_decode_failure}

    if spec.isdigit():
        return CameraSource(
            int(spec), settings, capture_factory=capture_factory, **skipping
        )
    if urlsplit(spec).scheme.lower() in STREAM_SCHEMES:
        return StreamSource(spec, settings, capture_factory=capture_factory, **skipping)

    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path, source_id=settings.name, **skipping)
    if not path.exists():
        raise SourceError(f"{spec}: no such file, folder, camera index or stream URL")
    kind = sniff_kind(path)
    if kind == "image":
        return ImageSource(path, source_id=settings.name, **common)
    if kind == "video":
        return VideoFileSource(
            path, source_id=settings.name, loop=settings.loop, **common
        )
    if path.stat().st_size == 0:
        raise EmptyInputError(f"{path.name}: empty file")
    with path.open("rb") as handle:
        head = handle.read(256)
    raise UnsupportedMediaError(
        f"{path.name}: not an image or video; it looks like {describe_content(head)}"
    )
