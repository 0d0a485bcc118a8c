"""``airctrl serve``: run the HTTP API and live web page with uvicorn.

The validated settings travel to every worker process as JSON in an
environment variable, so each worker builds the very same app. With a TLS
certificate and key configured the server speaks TLS 1.3 only.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airctrl.config import Settings, with_overrides
from airctrl.errors import ConfigError

__all__ = ["register", "run", "tls13_context"]

logger = logging.getLogger(__name__)

#: Import string of the worker entry point (also used by gunicorn).
APP_FACTORY = "airctrl.api.app:create_app_from_env"


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP API, WebSocket stream and web page",
    )
    parser.add_argument(
        "--host", default=None, help="bind address (default: server.host)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: server.port)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes, one model each (default: server.workers)",
    )
    parser.add_argument(
        "--hash-key",
        action="store_true",
        help="print the salted hash of an API key read from stdin (or of a new "
        "random key when stdin is empty or a terminal) and exit",
    )
    parser.set_defaults(handler=_handle)


def _hash_key_command() -> int:
    from airctrl.api.auth import generate_key, hash_key

    key = (
        "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.readline().strip()
    )
    if not key:
        key = generate_key()
        print(f"key:  {key}")
    print(f"hash: {hash_key(key)}")
    return 0


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    if args.hash_key:
        return _hash_key_command()
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["server.host"] = args.host
    if args.port is not None:
        overrides["server.port"] = args.port
    if args.workers is not None:
        overrides["server.workers"] = args.workers
    if overrides:
        settings = with_overrides(settings, overrides)
    return run(settings)


def tls13_context(
    config: Any, default_factory: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """Return uvicorn's TLS context limited to TLS 1.3 (an ``ssl_context_factory``)."""
    context = default_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def _check_tls(settings: Settings) -> None:
    server = settings.server
    if (server.tls_cert_file is None) != (server.tls_key_file is None):
        raise ConfigError(
            "server.tls_cert_file and server.tls_key_file must be set together"
        )
    for name, path in (
        ("tls_cert_file", server.tls_cert_file),
        ("tls_key_file", server.tls_key_file),
    ):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"server.{name}: {path} does not exist")


def _prepare_multiprocess_metrics(settings: Settings) -> Path | None:
    """Point prometheus_client at an empty shared folder before workers start."""
    if settings.server.workers < 2:
        return None
    folder = settings.metrics.multiprocess_dir
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="airctrl-metrics-"))
    else:
        folder = Path(folder)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def run(settings: Settings) -> int:
    """Serve until interrupted; return the exit code.

    Raises:
        ConfigError: TLS files are missing or only one of them is set, or no API
            key is configured while ``server.require_auth`` is on.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from airctrl.api.app import SETTINGS_ENV, create_app

    _check_tls(settings)
    # Fail here, with one line, rather than in every worker.
    create_app(settings)
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    metrics_dir = _prepare_multiprocess_metrics(settings)

    server = settings.server
    tls = server.tls_cert_file is not None
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=server.host,
        port=server.port,
        workers=server.workers,
        ssl_certfile=str(server.tls_cert_file) if tls else None,
        ssl_keyfile=str(server.tls_key_file) if tls else None,
        ssl_context_factory=tls13_context if tls else None,
        log_config=None,
        # An access line holds the client's address and the raw path, which
        # carries subject ids (/v1/subjects/<id>/history): nothing to log.
        access_log=False,
        ws_max_size=server.max_upload_bytes + 1024,
        timeout_graceful_shutdown=10,
    )
    logger.info(
        "Serving on %s://%s:%d with %d worker(s)",
        "https" if tls else "http",
        server.host,
        server.port,
        server.workers,
    )
    userver = uvicorn.Server(config)
    try:
        if server.workers > 1:
            sock = config.bind_socket()
            Multiprocess(config, sockets=[sock]).run()
        else:
            userver.run()
    finally:
        if metrics_dir is not None and settings.metrics.multiprocess_dir is None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
