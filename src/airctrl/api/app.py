"""The FastAPI application factory and its middleware.

:func:`create_app` builds one app from validated settings. The image-mode
pipelines and the history store are opened when the app starts (lifespan), once
per worker process, and closed when it stops. :func:`create_app_from_env` is
the entry point uvicorn and gunicorn workers call
(``airctrl.api.app:create_app_from_env``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airctrl.api.auth import ApiKeyRing
from airctrl.api.errors import (
    PayloadTooLargeError,
    UploadTimeoutError,
    error_response,
    install_error_handlers,
    route_template,
)
from airctrl.api.pool import PipelinePool
from airctrl.config import Settings, load_settings
from airctrl.errors import ConfigError
from airctrl.storage import HistoryStore, open_store

__all__ = [
    "CONFIG_ENV",
    "SETTINGS_ENV",
    "ServiceState",
    "StreamCounters",
    "create_app",
    "create_app_from_env",
]

logger = logging.getLogger(__name__)

#: Environment variable carrying the validated settings (JSON) from
#: ``airctrl serve`` to its worker processes.
SETTINGS_ENV = "AIRCTRL_SERVE_SETTINGS_JSON"
#: Environment variable naming a config file, for workers started by gunicorn.
CONFIG_ENV = "AIRCTRL_CONFIG"
#: Body limit for routes that take small JSON bodies or none.
SMALL_BODY_BYTES = 64 * 1024
#: Room for multipart boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass
class StreamCounters:
    """Per-process totals of the WebSocket stream (read by tests and /readyz)."""

    sessions_started: int = 0
    sessions_active: int = 0
    frames_received: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ServiceState:
    """What every route of one worker shares; lives on ``app.state.service``."""

    settings: Settings
    keyring: ApiKeyRing
    kiosk_key: str | None
    model_path: Path | None
    pool: PipelinePool | None = None
    store: HistoryStore | None = None
    counters: StreamCounters = field(default_factory=StreamCounters)
    #: Subject ids erased through this worker; its open sessions for them stop
    #: storing at once. Limitation: other workers learn of an erasure only
    #: when their next merge is refused (within FLUSH_SECONDS).
    erased_subjects: set[str] = field(default_factory=set)


def _read_kiosk_key(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError:
        raise ConfigError(f"server.kiosk_key_file {path} cannot be read") from None
    if len(key) < 16:
        raise ConfigError(
            "server.kiosk_key_file: expected a key of at least 16 characters"
        )
    return key


class BodyLimitMiddleware:
    """Refuse request bodies over a per-route limit without reading them whole.

    A declared ``Content-Length`` over the limit is answered 413 at once; a
    chunked body is counted as it arrives and the request fails with 413 as soon
    as it passes the limit. A body still arriving ``timeout_seconds`` after the
    route first asked for it fails with 408.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str], tuple[int, int]],
        timeout_seconds: float = 30.0,
    ) -> None:
        self.app = app
        #: path -> (bytes accepted on the wire, limit stated to the client); the
        #: first allows for multipart framing around the file the second limits.
        self.limit_for = limit_for
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, stated = self.limit_for(scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await error_response(400, "invalid Content-Length")(
                        scope, receive, send
                    )
                    return
                if declared > limit:
                    too_large = error_response(413, _too_large_text(stated))
                    await too_large(scope, receive, send)
                    return

        received = 0
        deadline: float | None = None

        async def limited_receive() -> Message:
            nonlocal received, deadline
            if deadline is None:
                deadline = time.monotonic() + self.timeout_seconds
            try:
                message = await asyncio.wait_for(
                    receive(), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                raise UploadTimeoutError(
                    f"upload not finished within {self.timeout_seconds:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(_too_large_text(stated))
            return message

        await self.app(scope, limited_receive, send)


def _too_large_text(limit: int) -> str:
    return f"upload too large: limit is {limit} bytes"


class HttpMetricsMiddleware:
    """Count every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from airctrl.metrics import record_http_request

        started = time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            record_http_request(
                scope.get("method", "GET"),
                route_template(scope),
                status,
                time.perf_counter() - started,
            )


def create_app(
    settings: Settings,
    *,
    model_path: Path | None = None,
    store: HistoryStore | None = None,
) -> FastAPI:
    """Build the API app for one worker process.

    Args:
        settings: validated settings (``server`` and ``storage`` sections are used
            here; the rest reaches the pipelines).
        model_path: Face Landmarker file; ``None`` resolves it from the cache.
        store: history store to use instead of opening ``settings.storage``.

    Raises:
        ConfigError: authentication is required but no key is configured, or a
            key entry or keys file is malformed.
    """
    server = settings.server
    kiosk_key = _read_kiosk_key(server.kiosk_key_file)
    keyring = ApiKeyRing(
        server.api_keys,
        keys_file=server.api_keys_file,
        extra_plain_keys=(kiosk_key,) if kiosk_key else (),
    )
    if server.require_auth and keyring.is_empty:
        raise ConfigError(
            "server.require_auth is on but no API key is configured: add a hash to "
            "server.api_keys (make one with 'airctrl serve --hash-key') or set "
            "server.require_auth: false"
        )
    state = ServiceState(settings, keyring, kiosk_key, model_path, store=store)
    own_store = store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        state.pool = await run_in_threadpool(
            PipelinePool, settings, size=server.detect_pipelines, model_path=model_path
        )
        if state.store is None:
            state.store = open_store(settings.storage)
        logger.info("AIRCTRL API worker %d ready", os.getpid())
        try:
            yield
        finally:
            state.pool.close()
            if own_store and state.store is not None:
                state.store.close()
                state.store = None
            logger.info("AIRCTRL API worker %d stopped", os.getpid())

    app = FastAPI(
        title="AIRCTRL",
        version="1.0",
        summary="Faces, emotions and their evidence, from photos and live video.",
        lifespan=lifespan,
        docs_url=None,  # served by airctrl.api.web from local assets
        redoc_url=None,
    )
    app.state.service = state
    install_error_handlers(app)

    from airctrl.api.routes import router
    from airctrl.api.stream import router as stream_router
    from airctrl.api.web import mount_web

    app.include_router(router)
    app.include_router(stream_router)
    mount_web(app)

    detect_limit = server.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    batch_limit = (
        server.max_upload_bytes * server.max_batch_items + MULTIPART_OVERHEAD_BYTES
    )

    def limit_for(path: str) -> tuple[int, int]:
        if path == "/v1/detect":
            return detect_limit, server.max_upload_bytes
        if path == "/v1/detect/batch":
            return batch_limit, server.max_upload_bytes * server.max_batch_items
        return SMALL_BODY_BYTES, SMALL_BODY_BYTES

    app.add_middleware(
        BodyLimitMiddleware,
        limit_for=limit_for,
        timeout_seconds=server.upload_timeout_seconds,
    )
    app.add_middleware(HttpMetricsMiddleware)
    return app


#: glibc ``mallopt`` parameter number of M_ARENA_MAX.
_M_ARENA_MAX = -8
#: Malloc arenas per worker. glibc gives each thread its own arena; the
#: threads that create, run and close a video pipeline per WebSocket session
#: then leave fragmented arenas behind, and resident memory crept up ~100 MB
#: over 150 sessions in benchmarks/bench_api.py. Two arenas kept it flat.
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc malloc arenas for this process; return False where not glibc.

    Respects a ``MALLOC_ARENA_MAX`` already set in the environment.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        logger.debug("mallopt unavailable; malloc arenas left as they are")
        return False


def create_app_from_env() -> FastAPI:
    """Build the app from ``AIRCTRL_SERVE_SETTINGS_JSON`` or ``AIRCTRL_CONFIG``.

    ``airctrl serve`` passes its validated settings to the workers in the first
    variable. Under gunicorn, point the second at the config file (unset: the
    usual ``./config.yaml`` lookup and ``AIRCTRL_*`` overrides apply).
    """
    raw = os.environ.get(SETTINGS_ENV)
    if raw:
        settings = Settings.model_validate(json.loads(raw))
    else:
        config = os.environ.get(CONFIG_ENV)
        settings = load_settings(Path(config) if config else None)
    from airctrl.logsetup import configure_logging

    configure_logging(settings.logging)
    limit_malloc_arenas()
    return create_app(settings)
