"""``WS /v1/stream``: live frames in, tracked faces with smoothed emotions out.

Protocol (JSON text messages and binary frames):

* client, first message: either a hello (text, required when no
  ``X-API-Key`` header was sent, since browsers cannot set WebSocket
  headers) or directly the first frame; the server answers ``ready`` after it::

      {"api_key": "...", "subject_id": "s-123", "consent": true,
       "session_id": "optional-id"}

* server: ``{"type": "ready", "session_id": ..., "storing": bool,
  "queue_size": n}``;
* client: binary messages, each one encoded image (JPEG); optionally a text
  message ``{"timestamp_ms": n}`` just before a frame gives its capture time
  (else arrival time is used). Timestamps are kept strictly increasing;
* server, per analysed frame: ``{"type": "result", "frame": i,
  "timestamp_ms": t, "faces": [...], "warnings": [...], "received": n,
  "processed": n, "dropped": n, "latency_ms": x}``; per unreadable frame
  ``{"type": "error", "frame": i, "detail": "..."}``;
* client ``{"type": "end"}`` or closing the socket ends the session.

Each session owns one video-mode pipeline (its own landmarker timeline and
tracks), closed when the session ends. Frames wait in a bounded queue of
``server.stream_queue_size``; when a slow client's queue is full the oldest
waiting frame is dropped (newest wins) and counted.

History: with a ``subject_id`` and ``"consent": true`` the consent is recorded
and the largest face's emotion per frame is tallied in memory and merged into
the store every few seconds and at the end. Without consent nothing is stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from airctrl.api.app import ServiceState
from airctrl.api.auth import AuthError
from airctrl.api.errors import short_detail
from airctrl.api.routes import decode_counted
from airctrl.api.schemas import face_to_schema
from airctrl.errors import AirctrlError
from airctrl.metrics import record_frame, record_skip
from airctrl.pipeline import FrameResult, Pipeline
from airctrl.storage import (
    ConsentRequiredError,
    InvalidSubjectError,
    SessionTally,
    StorageError,
    validate_subject_id,
)
from airctrl.types import Frame

__all__ = ["StreamOptions", "parse_hello", "router"]

logger = logging.getLogger(__name__)

router = APIRouter()

#: Metrics label for stream frames.
METRICS_SOURCE = "stream"
#: Seconds a client has to send its hello when it sent no key header.
HELLO_TIMEOUT_SECONDS = 10.0
#: Seconds between merges of the in-memory tally into the history store.
FLUSH_SECONDS = 2.0
#: Close codes (4000-4999 are free for applications; 4401 mirrors HTTP 401).
CLOSE_UNAUTHORIZED = 4401
CLOSE_POLICY = 1008
CLOSE_TRY_LATER = 1013
#: Longest wait for the frame in progress when a session ends.
WORKER_STOP_SECONDS = 30.0


@dataclass(frozen=True)
class StreamOptions:
    """Session options from the hello message."""

    api_key: str | None = None
    subject_id: str | None = None
    consent: bool = False
    session_id: str | None = None


def parse_hello(text: str) -> StreamOptions:
    """Parse the first text message.

    Raises:
        ValueError: not a JSON object, or a field of the wrong type.
        InvalidSubjectError: a malformed subject or session id.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("hello: expected a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("hello: expected a JSON object")  # noqa: TRY004
    api_key = data.get("api_key")
    subject_id = data.get("subject_id")
    session_id = data.get("session_id")
    consent = data.get("consent", False)
    for name, value in (
        ("api_key", api_key),
        ("subject_id", subject_id),
        ("session_id", session_id),
    ):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"hello: {name} must be a string")
    if not isinstance(consent, bool):
        raise ValueError("hello: consent must be true or false")  # noqa: TRY004
    if subject_id:
        validate_subject_id(subject_id)
    if session_id:
        validate_subject_id(session_id, what="session id")
    return StreamOptions(
        api_key or None, subject_id or None, consent, session_id or None
    )


@dataclass
class _Item:
    index: int
    data: bytes
    timestamp_ms: int


class _Session:
    """State of one open stream."""

    def __init__(
        self, ws: WebSocket, state: ServiceState, options: StreamOptions
    ) -> None:
        self.ws = ws
        self.state = state
        self.options = options
        self.session_id = options.session_id or uuid.uuid4().hex[:16]
        self.queue: deque[_Item] = deque()
        self.queue_size = state.settings.server.stream_queue_size
        self.wakeup = asyncio.Event()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.closed = False
        self.busy = False
        self.pipeline: Pipeline | None = None
        self.storing = bool(options.subject_id and options.consent)
        self.tally = SessionTally()
        self.last_flush = time.monotonic()
        self.started = time.monotonic()
        self.last_timestamp_ms = -1
        self.next_timestamp_ms: int | None = None

    async def drain(self) -> None:
        """Wait until every queued frame has been answered (bounded wait)."""
        deadline = time.monotonic() + WORKER_STOP_SECONDS
        while (self.queue or self.busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def enqueue(self, data: bytes) -> None:
        """Queue one frame; when full, drop the oldest waiting one."""
        self.received += 1
        arrival_ms = int((time.monotonic() - self.started) * 1000)
        stamp = (
            self.next_timestamp_ms if self.next_timestamp_ms is not None else arrival_ms
        )
        self.next_timestamp_ms = None
        stamp = max(stamp, self.last_timestamp_ms + 1)
        self.last_timestamp_ms = stamp
        if len(self.queue) >= self.queue_size:
            self.queue.popleft()
            self.dropped += 1
            record_skip(METRICS_SOURCE)
            with self.state.counters.lock:
                self.state.counters.frames_dropped += 1
        self.queue.append(_Item(self.received - 1, data, stamp))
        with self.state.counters.lock:
            self.state.counters.frames_received += 1
        self.wakeup.set()

    def analyse(self, item: _Item) -> FrameResult:
        """Decode and analyse one frame (blocking; runs in a worker thread).

        Bytes that do not decode are counted as for ``/v1/detect``.
        """
        if self.pipeline is None:
            raise RuntimeError("session pipeline is closed")
        decoded = decode_counted(item.data, METRICS_SOURCE)
        frame = Frame(
            decoded.image,
            item.timestamp_ms,
            item.index,
            METRICS_SOURCE,
            tuple(decoded.warnings),
        )
        result = self.pipeline.process(frame)
        record_frame(METRICS_SOURCE, result)
        return result

    def tally_result(self, result: FrameResult) -> None:
        """Count the largest face's emotion for the subject's history.

        Limitation: the subject is assumed to be the largest face in view; when
        someone else comes closer to the camera their frames are counted for
        the subject. Face re-identification would fix it, at a privacy cost.
        """
        if not self.storing or not result.faces:
            return
        face = max(result.faces, key=lambda f: f.box.width * f.box.height)
        self.tally.add(face.emotion.label, face.emotion.confidence, time.time())

    def flush(self) -> str | None:
        """Merge the tally into the store (blocking); say so if storing stops."""
        self.last_flush = time.monotonic()
        subject = self.options.subject_id
        if not self.storing or subject is None or self.tally.is_empty:
            return None
        if subject in self.state.erased_subjects or self.state.store is None:
            self.storing = False
            self.tally.clear()
            return "history erased for this subject; storing stopped"
        try:
            self.state.store.merge(subject, self.session_id, self.tally)
        except ConsentRequiredError:
            self.storing = False
            self.tally.clear()
            return "no consent on record (erased?); storing stopped"
        except StorageError as exc:
            logger.warning("Stream history flush failed: %s", exc)
        return None


async def _send_json(ws: WebSocket, payload: dict[str, Any]) -> bool:
    if ws.client_state != WebSocketState.CONNECTED:
        return False
    try:
        await ws.send_text(json.dumps(payload))
    except (WebSocketDisconnect, RuntimeError, OSError):
        return False
    return True


async def _process_loop(session: _Session) -> None:
    """Take frames from the queue, analyse them in a thread, send results."""
    while not session.closed:
        if not session.queue:
            session.wakeup.clear()
            await session.wakeup.wait()
            continue
        item = session.queue.popleft()
        session.busy = True
        try:
            result = await run_in_threadpool(session.analyse, item)
        except AirctrlError as exc:
            session.busy = False
            await _send_json(
                session.ws,
                {
                    "type": "error",
                    "frame": item.index,
                    "detail": short_detail(str(exc)),
                },
            )
            continue
        except Exception:
            session.busy = False
            logger.exception("Stream frame %d failed", item.index)
            await _send_json(
                session.ws,
                {
                    "type": "error",
                    "frame": item.index,
                    "detail": "internal error",
                },
            )
            continue
        session.busy = False
        session.processed += 1
        with session.state.counters.lock:
            session.state.counters.frames_processed += 1
        session.tally_result(result)
        payload = {
            "type": "result",
            "frame": item.index,
            "timestamp_ms": item.timestamp_ms,
            "width": result.width,
            "height": result.height,
            "faces": [face_to_schema(f).model_dump() for f in result.faces],
            "warnings": list(dict.fromkeys(result.flags)),
            "received": session.received,
            "processed": session.processed,
            "dropped": session.dropped,
            "latency_ms": round(result.latency_ms, 2),
        }
        if not await _send_json(session.ws, payload):
            return
        if time.monotonic() - session.last_flush >= FLUSH_SECONDS:
            notice = await run_in_threadpool(session.flush)
            if notice:
                await _send_json(session.ws, {"type": "notice", "detail": notice})


async def _authenticate(
    ws: WebSocket, state: ServiceState
) -> tuple[StreamOptions, bytes | None] | None:
    """Read the first message; return the options and a first frame, if one came.

    Returns None after closing a socket that failed authentication or sent a
    malformed hello.
    """
    server = state.settings.server
    header_key = ws.headers.get("x-api-key")
    authorization = ws.headers.get("authorization", "")
    if not header_key and authorization.lower().startswith("bearer "):
        header_key = authorization[7:].strip()

    try:
        message = await asyncio.wait_for(ws.receive(), HELLO_TIMEOUT_SECONDS)
    except TimeoutError:
        await ws.close(CLOSE_POLICY, "expected a hello message or a frame")
        return None
    if message["type"] == "websocket.disconnect":
        return None
    options, first_frame = StreamOptions(), message.get("bytes")
    text = message.get("text")
    if text is not None:
        try:
            options = parse_hello(text)
        except (ValueError, InvalidSubjectError) as exc:
            await ws.close(CLOSE_POLICY, str(exc)[:120])
            return None
    if server.require_auth:
        try:
            await run_in_threadpool(state.keyring.check, header_key or options.api_key)
        except AuthError as exc:
            await ws.close(CLOSE_UNAUTHORIZED, str(exc)[:120])
            return None
    return options, first_frame


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    """Analyse live frames; see the module docstring for the protocol."""
    state: ServiceState = ws.app.state.service
    server = state.settings.server
    await ws.accept()
    opened = await _authenticate(ws, state)
    if opened is None:
        return
    options, first_frame = opened

    with state.counters.lock:
        if state.counters.sessions_active >= server.max_stream_sessions:
            busy = True
        else:
            busy = False
            state.counters.sessions_active += 1
            state.counters.sessions_started += 1
    if busy:
        await ws.close(CLOSE_TRY_LATER, "too many open streams; retry later")
        return

    session = _Session(ws, state, options)
    worker: asyncio.Task[None] | None = None
    try:
        if session.storing and state.store is not None and options.subject_id:
            try:
                await run_in_threadpool(state.store.record_consent, options.subject_id)
                state.erased_subjects.discard(options.subject_id)
                session.storing = await run_in_threadpool(
                    state.store.has_consent, options.subject_id
                )
            except StorageError as exc:
                logger.warning("Consent not recorded, stream will not store: %s", exc)
                session.storing = False
        session.pipeline = await run_in_threadpool(
            Pipeline,
            state.settings,
            mode="video",
            model_path=state.model_path,
            source_id=METRICS_SOURCE,
        )
        await _send_json(
            ws,
            {
                "type": "ready",
                "session_id": session.session_id,
                "storing": session.storing,
                "queue_size": session.queue_size,
            },
        )
        worker = asyncio.create_task(_process_loop(session))
        if first_frame is not None:
            session.enqueue(first_frame)
        await _receive_loop(session, server.max_upload_bytes)
    finally:
        # Shielded: a cancelled connection must still free its pipeline and slot.
        with anyio.CancelScope(shield=True):
            await _end_session(session, worker)


async def _end_session(session: _Session, worker: asyncio.Task[None] | None) -> None:
    """Stop the worker, close the pipeline, flush history and free the slot."""
    state, ws = session.state, session.ws
    session.closed = True
    session.wakeup.set()
    try:
        if worker is not None:
            # Let the frame in progress finish: the pipeline must not be closed
            # while a thread is still inside it.
            try:
                await asyncio.wait_for(worker, WORKER_STOP_SECONDS)
            except TimeoutError:
                logger.warning("Stream worker did not stop in time")
            except Exception:
                logger.exception("Stream worker failed")
        if session.pipeline is not None:
            await run_in_threadpool(session.pipeline.close)
            session.pipeline = None
        await run_in_threadpool(session.flush)
    finally:
        with state.counters.lock:
            state.counters.sessions_active -= 1
    logger.info(
        "Stream session ended: %d received, %d processed, %d dropped",
        session.received,
        session.processed,
        session.dropped,
    )
    if ws.client_state == WebSocketState.CONNECTED:
        try:
            await ws.close()
        except (RuntimeError, OSError):
            logger.debug("Stream socket already closed")


async def _receive_loop(session: _Session, max_bytes: int) -> None:
    ws = session.ws
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is not None:
            if len(data) > max_bytes:
                await _send_json(
                    ws,
                    {
                        "type": "error",
                        "frame": session.received,
                        "detail": f"frame too large: limit is {max_bytes} bytes",
                    },
                )
                session.received += 1
                continue
            session.enqueue(data)
            continue
        text = message.get("text") or ""
        try:
            control = json.loads(text)
        except json.JSONDecodeError:
            control = None
        if not isinstance(control, dict):
            await _send_json(
                ws,
                {
                    "type": "error",
                    "frame": None,
                    "detail": "text messages must be JSON objects",
                },
            )
            continue
        if control.get("type") == "end":
            await session.drain()
            return
        stamp = control.get("timestamp_ms")
        if (
            isinstance(stamp, (int, float))
            and not isinstance(stamp, bool)
            and stamp >= 0
        ):
            session.next_timestamp_ms = int(stamp)
