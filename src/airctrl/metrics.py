"""Prometheus metrics for the frame loop (`airctrl run`) and the HTTP API.

Every metric lives in one private registry, :data:`REGISTRY`, under the prefix
``airctrl_``, in base units (seconds, ratios), with counters ending in
``_total`` and only a few label values per label (never a frame id, face id or
person). Callers do not touch the metric objects; they call the small typed
functions below:

* the frame loop calls :func:`record_frame` once per processed frame,
  :func:`record_decode_failure` for a frame that could not be decoded,
  :func:`record_skip` when it drops frames to keep up, :func:`set_light_hud`
  when the HUD switches profile and :func:`set_camera_state` whenever the
  source connects, loses its stream, reconnects or ends; it serves the
  metrics with :func:`start_metrics_server`;
* the API calls :func:`record_http_request` per request and returns
  :func:`metrics_payload` from its ``/metrics`` route.

Several API workers (gunicorn with uvicorn workers) share their numbers through
prometheus_client's multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty writable folder in the environment *before* the processes start (the
library reads it once, at import), and call :func:`mark_worker_dead` from
gunicorn's ``child_exit`` hook (see ``deploy/gunicorn.conf.py``).
:func:`metrics_payload` then merges every worker's numbers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from airctrl.types import EMOTIONS

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from airctrl.pipeline import FrameResult

logger = logging.getLogger(__name__)

__all__ = [
    "CAMERA_STATES",
    "FACE_EXPECTED_WINDOW_SECONDS",
    "FPS_SAMPLE_SECONDS",
    "FPS_WINDOW_SECONDS",
    "PREFIX",
    "REGISTRY",
    "CameraState",
    "exported_sample_names",
    "mark_worker_dead",
    "metrics_payload",
    "record_decode_failure",
    "record_frame",
    "record_http_request",
    "record_skip",
    "set_camera_state",
    "set_light_hud",
    "source_label",
    "start_metrics_server",
]

#: Prefix shared by every metric name.
PREFIX: Final = "airctrl_"

#: States a frame source can be in, as values of ``airctrl_camera_state{state}``;
#: the same words ``airctrl.capture`` reports. ``lost`` is the moment an outage
#: is seen, ``reconnecting`` while retrying, ``failed`` when retries gave up;
#: ``ended`` (a file finished) and ``stopped`` (asked to stop) are not outages.
CameraState = Literal[
    "connecting", "connected", "lost", "reconnecting", "ended", "stopped", "failed"
]
CAMERA_STATES: Final[tuple[CameraState, ...]] = (
    "connecting",
    "connected",
    "lost",
    "reconnecting",
    "ended",
    "stopped",
    "failed",
)
_OUTAGE_STATES: Final = frozenset({"lost", "reconnecting", "failed"})

#: A frame without a face counts as a detection failure only if the same source
#: had a face less than this long before (stream time). Two seconds is about
#: the longest blink-and-turn gap a person in view produces; a person who has
#: left for longer is an empty scene, not a failure.
FACE_EXPECTED_WINDOW_SECONDS: Final = 2.0

#: Trailing window over which ``airctrl_fps`` is measured (wall clock).
FPS_WINDOW_SECONDS: Final = 5.0

#: How often (wall clock, per source) the trailing-window rate is added to the
#: ``airctrl_frames_per_second`` histogram. A fixed cadence makes each
#: observation stand for the same stretch of time, so its quantiles read as
#: "the share of time the source ran below N fps"; one observation per frame
#: would give fast stretches more weight than the slow ones an operator cares
#: about.
FPS_SAMPLE_SECONDS: Final = 1.0

#: Faces over which ``airctrl_confidence_mean`` is averaged.
_CONFIDENCE_WINDOW_FACES: Final = 100

#: Longest label value kept; longer ones are cut (labels are names, not data).
_MAX_LABEL_CHARS: Final = 64

#: All airctrl metrics; the process collector and platform info are left out
#: so the exported names are exactly ours.
REGISTRY: Final = CollectorRegistry(auto_describe=True)

# Frame loop -----------------------------------------------------------------

FRAMES_PROCESSED = Counter(
    "airctrl_frames_processed_total",
    "Frames that went through the pipeline (decoded, detected, classified).",
    ["source"],
    registry=REGISTRY,
)
EMOTIONS_DETECTED = Counter(
    "airctrl_emotions_detected_total",
    "Faces reported, by their (smoothed) emotion label.",
    ["source", "emotion"],
    registry=REGISTRY,
)
FACES_PER_FRAME = Histogram(
    "airctrl_faces_per_frame",
    "Number of faces found per processed frame.",
    ["source"],
    buckets=(0, 1, 2, 3, 4, 6, 8, 16, 32, 64),
    registry=REGISTRY,
)
FRAME_PROCESSING_SECONDS = Histogram(
    "airctrl_frame_processing_seconds",
    "Time from frame in to result out (detection, emotion, tracking).",
    ["source"],
    # 30 fps leaves 33 ms per frame; buckets are dense around that budget.
    buckets=(0.005, 0.01, 0.02, 0.033, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5),
    registry=REGISTRY,
)
FPS = Gauge(
    "airctrl_fps",
    "Processed frames per second over the last few seconds (wall clock).",
    ["source"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
FPS_HISTOGRAM = Histogram(
    "airctrl_frames_per_second",
    f"Processed frames per second over the last {FPS_WINDOW_SECONDS:g} s, "
    f"sampled every {FPS_SAMPLE_SECONDS:g} s (wall clock) while frames arrive.",
    ["source"],
    # 10 is the low-FPS alert threshold; 15, 25 and 30 are common camera rates.
    buckets=(1, 2, 5, 8, 10, 12, 15, 20, 25, 30, 45, 60, 120),
    registry=REGISTRY,
)
FACE_DETECTION_FAILURES = Counter(
    "airctrl_face_detection_failures_total",
    "Frames where detection failed: reason=no_face (a face was expected, "
    "the source had one in the last seconds) or reason=decode (unreadable frame).",
    ["source", "reason"],
    registry=REGISTRY,
)
EMOTION_CONFIDENCE = Histogram(
    "airctrl_emotion_confidence",
    "Confidence (0..1) of each reported face's emotion.",
    ["source"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    registry=REGISTRY,
)
CONFIDENCE_MEAN = Gauge(
    "airctrl_confidence_mean",
    "Mean emotion confidence (0..1) over the last 100 reported faces.",
    ["source"],
    multiprocess_mode="livemostrecent",
    registry=REGISTRY,
)
CAMERA_STATE = Gauge(
    "airctrl_camera_state",
    "1 for the state the frame source is in now, 0 for the others.",
    ["source", "state"],
    multiprocess_mode="livemostrecent",
    registry=REGISTRY,
)
CAMERA_CONNECTED = Gauge(
    "airctrl_camera_connected",
    "1 while the frame source delivers frames, else 0.",
    ["source"],
    multiprocess_mode="livemostrecent",
    registry=REGISTRY,
)
SOURCE_OUTAGES = Counter(
    "airctrl_source_outages_total",
    "Times a connected source lost its stream.",
    ["source"],
    registry=REGISTRY,
)
SOURCE_RECONNECTS = Counter(
    "airctrl_source_reconnects_total",
    "Times a source came back after an outage.",
    ["source"],
    registry=REGISTRY,
)
LIGHT_HUD = Gauge(
    "airctrl_light_hud",
    "1 while the HUD runs its light profile because the loop is behind.",
    ["source"],
    multiprocess_mode="livemostrecent",
    registry=REGISTRY,
)
FRAMES_SKIPPED = Counter(
    "airctrl_frames_skipped_total",
    "Frames dropped unprocessed to keep up with the source.",
    ["source"],
    registry=REGISTRY,
)

# HTTP API -------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "airctrl_http_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_REQUEST_SECONDS = Histogram(
    "airctrl_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)

_HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
)


# Per-source bookkeeping -----------------------------------------------------


@dataclass
class _SourceState:
    """What the functions remember per source between calls."""

    last_face_ms: int | None = None
    last_timestamp_ms: int | None = None
    frame_times: deque[float] = field(default_factory=deque)
    confidences: deque[float] = field(
        default_factory=lambda: deque(maxlen=_CONFIDENCE_WINDOW_FACES)
    )
    camera_state: CameraState | None = None
    fps_sampled_at: float | None = None


_lock = threading.Lock()
_sources: dict[str, _SourceState] = {}


def _state(source: str) -> _SourceState:
    state = _sources.get(source)
    if state is None:
        state = _sources[source] = _SourceState()
    return state


@lru_cache(maxsize=256)
def source_label(source: str, name: str | None = None) -> str:
    """Return the label value used for a source: its name, never its secrets.

    ``name`` (the configured source name) wins when given. Otherwise URLs lose
    their user name, password, query and fragment (``rtsp://u:p@cam/x?token=1``
    becomes ``rtsp://cam/x``); the result is cut to 64 characters. Every
    ``record_*``/``set_*`` function applies this itself, so callers may pass
    the raw source string.
    """
    text = (name or "").strip() or source.strip() or "unknown"
    if "://" in text:
        parts = urlsplit(text)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        text = f"{parts.scheme}://{host}{parts.path}"
    return text[:_MAX_LABEL_CHARS]


# Frame loop API ---------------------------------------------------------------


def record_frame(
    source: str,
    result: FrameResult,
    *,
    processing_seconds: float | None = None,
    now: float | None = None,
) -> None:
    """Count one processed frame and what was found in it.

    Updates frames processed, faces per frame, processing time, emotions per
    label, confidence (histogram and rolling mean), the FPS gauge, the FPS
    histogram (at most once per :data:`FPS_SAMPLE_SECONDS`, once the window
    holds two frames), and the ``no_face`` failure counter when the frame has
    no face although the source had one less than
    :data:`FACE_EXPECTED_WINDOW_SECONDS` earlier (stream time, from
    ``result.timestamp_ms``; a timestamp that does not move forward, as when a
    file loops or for independent stills, forgets the earlier face).

    Args:
        source: source string or configured name (see :func:`source_label`).
        result: the pipeline's result for the frame; only counts, labels,
            confidences, timestamp and latency are read.
        processing_seconds: time spent on the frame; defaults to
            ``result.latency_ms / 1000``.
        now: wall-clock reading (``time.monotonic()``) for the FPS window;
            for tests.
    """
    label = source_label(source)
    seconds = (
        result.latency_ms / 1000.0 if processing_seconds is None else processing_seconds
    )
    face_count = len(result.faces)
    clock = time.monotonic() if now is None else now

    FRAMES_PROCESSED.labels(label).inc()
    FACES_PER_FRAME.labels(label).observe(face_count)
    FRAME_PROCESSING_SECONDS.labels(label).observe(max(seconds, 0.0))
    for face in result.faces:
        emotion = face.emotion.label if face.emotion.label in EMOTIONS else "other"
        EMOTIONS_DETECTED.labels(label, emotion).inc()
        EMOTION_CONFIDENCE.labels(label).observe(face.emotion.confidence)

    with _lock:
        state = _state(label)
        expected = _face_expected(state, result.timestamp_ms)
        if face_count:
            state.last_face_ms = result.timestamp_ms
        state.last_timestamp_ms = result.timestamp_ms
        state.confidences.extend(face.emotion.confidence for face in result.faces)
        mean = (
            sum(state.confidences) / len(state.confidences)
            if state.confidences
            else None
        )
        fps = _update_fps(state, clock)
        sample_fps = _fps_sample_due(state, clock)

    if face_count == 0 and expected:
        FACE_DETECTION_FAILURES.labels(label, "no_face").inc()
    if mean is not None:
        CONFIDENCE_MEAN.labels(label).set(mean)
    FPS.labels(label).set(fps)
    if sample_fps:
        FPS_HISTOGRAM.labels(label).observe(fps)


def _face_expected(state: _SourceState, timestamp_ms: int) -> bool:
    """Tell whether the source had a face recently enough to expect one now."""
    if state.last_timestamp_ms is not None and timestamp_ms <= state.last_timestamp_ms:
        # Not a stream moving forward: a restarted or looped stream, or
        # independent stills (API uploads all at 0 ms). Expect nothing.
        state.last_face_ms = None
    if state.last_face_ms is None:
        return False
    return timestamp_ms - state.last_face_ms <= FACE_EXPECTED_WINDOW_SECONDS * 1000.0


def _update_fps(state: _SourceState, clock: float) -> float:
    """Add a frame time and return frames per second over the trailing window."""
    times = state.frame_times
    times.append(clock)
    while times and clock - times[0] > FPS_WINDOW_SECONDS:
        times.popleft()
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


def _fps_sample_due(state: _SourceState, clock: float) -> bool:
    """Tell whether the FPS histogram takes a sample now; remember when it did.

    Limitation: samples are taken when frames arrive, so a loop that stalls
    adds no samples while stalled; the rate of ``airctrl_frames_processed_total``,
    which the low-FPS alert uses, does show a stall.
    """
    if len(state.frame_times) < 2:
        return False
    if (
        state.fps_sampled_at is not None
        and clock - state.fps_sampled_at < FPS_SAMPLE_SECONDS
    ):
        return False
    state.fps_sampled_at = clock
    return True


def record_decode_failure(source: str) -> None:
    """Count a frame that could not be decoded (it was not processed)."""
    FACE_DETECTION_FAILURES.labels(source_label(source), "decode").inc()


def record_skip(source: str, count: int = 1) -> None:
    """Count frames dropped unprocessed to keep up; ``count`` < 1 is ignored."""
    if count >= 1:
        FRAMES_SKIPPED.labels(source_label(source)).inc(count)


def set_light_hud(source: str, on: bool) -> None:
    """Record whether the HUD runs its light profile for ``source``."""
    LIGHT_HUD.labels(source_label(source)).set(1.0 if on else 0.0)


def set_camera_state(source: str, state: CameraState) -> None:
    """Record the source's connection state and count outages and recoveries.

    Call it on every status change the source reports (see
    :data:`CAMERA_STATES`). A move from ``connected`` to ``lost``,
    ``reconnecting`` or ``failed`` adds one outage (``lost`` then
    ``reconnecting`` is still one); a move from those back to ``connected``
    adds one reconnect. Repeating the current state changes nothing. Leaving
    ``connected`` also sets the FPS gauge to 0, since no frames flow.

    Raises:
        ValueError: ``state`` is not one of :data:`CAMERA_STATES`.
    """
    if state not in CAMERA_STATES:
        raise ValueError(
            f"state: expected one of {', '.join(CAMERA_STATES)}, got {state!r}"
        )
    label = source_label(source)
    with _lock:
        entry = _state(label)
        previous, entry.camera_state = entry.camera_state, state
        if state != "connected":
            entry.frame_times.clear()
    if previous == state:
        return

    for name in CAMERA_STATES:
        CAMERA_STATE.labels(label, name).set(1.0 if name == state else 0.0)
    CAMERA_CONNECTED.labels(label).set(1.0 if state == "connected" else 0.0)
    if state != "connected":
        FPS.labels(label).set(0.0)
    if previous == "connected" and state in _OUTAGE_STATES:
        SOURCE_OUTAGES.labels(label).inc()
        logger.info("metrics: source %s outage recorded (%s)", label, state)
    elif previous in _OUTAGE_STATES and state == "connected":
        SOURCE_RECONNECTS.labels(label).inc()


def start_metrics_server(port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve ``/metrics`` for this process on ``host:port`` from a daemon thread.

    Used by ``airctrl run``. In multiprocess mode the served numbers are the
    merged ones, like :func:`metrics_payload`. Bind ``0.0.0.0`` only inside a
    container or behind a firewall. Call ``.shutdown()`` on the result to stop.

    Raises:
        OSError: the port is taken or the address is not local.
    """
    registry = _collecting_registry()
    server, _thread = start_http_server(port, addr=host, registry=registry)
    logger.info("metrics: serving on http://%s:%s/metrics", host, port)
    return server


# HTTP API ---------------------------------------------------------------------


def record_http_request(
    method: str, route: str, status: int, duration_seconds: float
) -> None:
    """Count one answered HTTP request.

    Args:
        method: HTTP method; anything unusual is recorded as ``OTHER``.
        route: the route *template* (``/v1/history/{subject}``), never the raw
            path, so label values stay few; use ``"unmatched"`` for 404s that hit
            no route.
        status: the response status code.
        duration_seconds: time to answer.
    """
    verb = method.upper() if method.upper() in _HTTP_METHODS else "OTHER"
    HTTP_REQUESTS.labels(verb, route[:_MAX_LABEL_CHARS], str(status)).inc()
    HTTP_REQUEST_SECONDS.labels(verb, route[:_MAX_LABEL_CHARS]).observe(
        max(duration_seconds, 0.0)
    )


def _multiprocess_dir() -> str | None:
    """Return ``PROMETHEUS_MULTIPROC_DIR`` if multiprocess mode is on, else ``None``."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(
        "prometheus_multiproc_dir"
    )


def _collecting_registry() -> CollectorRegistry:
    """Return the registry to expose: merged workers in multiprocess mode."""
    if _multiprocess_dir() is None:
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def metrics_payload() -> tuple[bytes, str]:
    """Return the exposition text and its content type, for the API's ``/metrics``.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set) the numbers of every
    worker are merged from the shared folder; else this process's are returned.
    """
    return generate_latest(_collecting_registry()), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges; call from gunicorn's ``child_exit`` hook."""
    if _multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exported_sample_names() -> frozenset[str]:
    """Return every sample name this module can export (``_bucket``, ``_total``...).

    Read from :data:`REGISTRY`, so dashboards and alert rules can be checked
    against what the code really exports.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return frozenset(names)
