"""Start real servers for the API tests: redis-server and `airctrl serve` subprocesses.

Everything binds to 127.0.0.1 on a free port and is killed when the context
exits. The API key used by these servers is :data:`API_KEY`; its hash is
computed once per session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import yaml

from airctrl.api.auth import hash_key

#: The plain key test clients send; servers only ever see its hash.
API_KEY = "test-key-0123456789abcdef"
#: The header that authenticates a test request.
KEY = {"X-API-Key": API_KEY}
REDIS_SERVER = "/usr/bin/redis-server"


@lru_cache(maxsize=1)
def api_key_hash() -> str:
    """Return the scrypt hash of :data:`API_KEY` (computed once)."""
    return hash_key(API_KEY)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early with code {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """Run a throw-away redis-server (no persistence); yield its URL."""
    if not Path(REDIS_SERVER).exists():
        raise RuntimeError("redis-server is not installed; run scripts/setup.sh")
    port = free_port()
    process = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, process, 10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    """Write a YAML config file for a served app."""
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def base_settings(workdir: Path, **server: Any) -> dict[str, Any]:
    """Return a settings dict for a test server: one key, SQLite in ``workdir``."""
    return {
        "server": {"api_keys": [api_key_hash()], "host": "127.0.0.1", **server},
        "storage": {
            "backend": "sqlite",
            "sqlite_path": str(workdir / "history.sqlite3"),
        },
        "detection": {"max_faces": 12},
        "logging": {"level": "WARNING"},
    }


@contextlib.contextmanager
def airctrl_server(
    workdir: Path, settings: dict[str, Any], *, tls: bool = False, timeout: float = 90
) -> Iterator[str]:
    """Run ``airctrl serve`` in a subprocess until ready; yield its base URL."""
    port = free_port()
    settings = {**settings, "server": {**settings.get("server", {}), "port": port}}
    config = write_config(workdir / f"config-{port}.yaml", settings)
    log = (workdir / f"server-{port}.log").open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "airctrl.cli", "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
        start_new_session=True,
    )
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        _wait_for_port(port, process, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                context: Any = False
                if tls:
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                if (
                    httpx.get(url + "/readyz", verify=context, timeout=2).status_code
                    == 200
                ):
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("server never became ready")
        yield url
    finally:
        _stop(process)
        log.close()


def server_log(workdir: Path) -> str:
    """Return every server log written in ``workdir`` (for failure messages)."""
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(workdir.glob("server-*.log"))
    )


@contextlib.contextmanager
def app_client(
    folder: Path, model_path: Path, *, raise_server_exceptions: bool = True
) -> Iterator[Any]:
    """Yield an in-process TestClient of the app built from ``base_settings``."""
    from fastapi.testclient import TestClient

    from airctrl.api import create_app
    from airctrl.config import Settings

    settings = Settings.model_validate(base_settings(folder))
    app = create_app(settings, model_path=model_path)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client
