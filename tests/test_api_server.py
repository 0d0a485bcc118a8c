"""`airctrl serve` in real uvicorn subprocesses: TLS, workers, Redis, limits, logs."""

from __future__ import annotations

import datetime
import itertools
import json
import re
import shutil
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import media
import numpy as np
import pytest
from apiserver import (
    API_KEY,
    KEY,
    airctrl_server,
    base_settings,
    redis_server,
    server_log,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

#: Load test length; long enough for both workers to serve many mixed requests.
LOAD_SECONDS = 20
CLIENTS = 16


def self_signed_pair(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate and key for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def client_context(*, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if max_version is not None:
        context.maximum_version = max_version
    return context


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_pair(folder)
    settings = base_settings(folder, tls_cert_file=str(cert), tls_key_file=str(key))
    with airctrl_server(folder, settings, tls=True) as url:
        yield url


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_tls_server_negotiates_tls_1_3(tls_server: str) -> None:
    with (
        socket.create_connection(("127.0.0.1", _port(tls_server)), timeout=5) as raw,
        client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        version = tls.version()

    assert version == "TLSv1.3"


def test_tls_server_refuses_tls_1_2(tls_server: str) -> None:
    context = client_context(max_version=ssl.TLSVersion.TLSv1_2)
    with (
        socket.create_connection(("127.0.0.1", _port(tls_server)), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_tls_server_answers_https_requests(tls_server: str) -> None:
    response = httpx.get(tls_server + "/healthz", verify=client_context(), timeout=5)

    assert response.json() == {"status": "ok"}


# -- two workers under load ----------------------------------------------------------


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("workers")
    settings = base_settings(
        folder, workers=2, max_upload_bytes=1_000_000, upload_timeout_seconds=2
    )
    with airctrl_server(folder, settings) as url:
        yield url


@pytest.fixture(scope="module")
def load_images(sample_path: Callable[[str], Path]) -> dict[int, bytes]:
    """Images keyed by how many faces they hold: 1, 0 and a 4x3 grid of 12."""
    with Image.open(sample_path("single_face.jpg")) as image:
        face = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    return {
        1: sample_path("single_face.jpg").read_bytes(),
        0: sample_path("free-mountain-vector-01.jpg").read_bytes(),
        12: media.jpeg(media.grid(face, 3, 4)),
    }


def test_metrics_merge_every_worker(workers_server: str) -> None:
    with httpx.Client(base_url=workers_server, timeout=10) as client:
        for _ in range(30):
            # New connections so the kernel spreads them over both workers.
            client.get("/healthz", headers={"Connection": "close"})
        text = client.get("/metrics").text

    counts = re.findall(
        r"^airctrl_http_requests_total"
        r'\{method="GET",route="/healthz",status="200"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert counts and float(counts[0]) >= 30


def test_sixteen_clients_each_get_their_own_image_answered(
    workers_server: str, load_images: dict[int, bytes]
) -> None:
    outcomes: Counter[str] = Counter()
    mismatches: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_SECONDS

    def client_loop(number: int) -> None:
        kinds = [1, 0, 12]
        with httpx.Client(base_url=workers_server, timeout=60, headers=KEY) as client:
            # Every client sends each kind at least once, however slow the machine.
            for step in itertools.count():
                if step >= len(kinds) and time.monotonic() >= stop_at:
                    break
                expected = kinds[(number + step) % 3]
                response = client.post(
                    "/v1/detect", files={"file": ("img", load_images[expected])}
                )
                with lock:
                    outcomes[str(response.status_code)] += 1
                    if response.status_code != 200:
                        mismatches.append(f"{expected}: {response.status_code}")
                    elif response.json()["face_count"] != expected:
                        mismatches.append(
                            f"{expected}: got {response.json()['face_count']}"
                        )

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=LOAD_SECONDS + 120)

    assert not any(thread.is_alive() for thread in threads)
    assert sum(outcomes.values()) >= CLIENTS * 3
    assert mismatches == []
    assert set(outcomes) == {"200"}


# -- two workers sharing one Redis ----------------------------------------------------

#: Uploads recorded for one subject, split over 4 clients on fresh connections.
SHARED_UPLOADS = 24


@pytest.fixture()
def redis_workers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, Path]]:
    """Two workers on one redis-server; yield server URL, Redis URL, metrics folder."""
    folder = tmp_path_factory.mktemp("redis-workers")
    metrics_dir = folder / "metrics"
    with redis_server(folder) as redis_url:
        settings = base_settings(folder, workers=2)
        settings["storage"] = {"backend": "redis", "redis_url": redis_url}
        settings["metrics"] = {"multiprocess_dir": str(metrics_dir)}
        with airctrl_server(folder, settings) as url:
            yield url, redis_url, metrics_dir


def detects_per_worker(metrics_dir: Path, scratch: Path) -> list[float]:
    """Return each worker's count of answered uploads, read from its own metrics file.

    prometheus_client keeps one ``counter_<pid>.db`` per process; each is read
    alone by pointing a collector at a folder holding only that file.
    """
    labels = {"method": "POST", "route": "/v1/detect", "status": "200"}
    counts = []
    for file in sorted(metrics_dir.glob("counter_*.db")):
        alone = scratch / file.stem
        alone.mkdir()
        shutil.copy(file, alone / file.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts.append(
            registry.get_sample_value("airctrl_http_requests_total", labels) or 0.0
        )
    return counts


def test_workers_share_redis_history_and_erasure_leaves_no_key(
    redis_workers: tuple[str, str, Path],
    load_images: dict[int, bytes],
    tmp_path: Path,
) -> None:
    import redis

    url, redis_url, metrics_dir = redis_workers
    subject = "shared-7c1e"
    failures: list[int] = []

    def upload_for_subject(count: int) -> None:
        # Connection: close, so the kernel hands each request to either worker.
        headers = {**KEY, "Connection": "close"}
        with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
            for _ in range(count):
                response = client.post(
                    "/v1/detect",
                    params={"subject_id": subject},
                    files={"file": ("one.jpg", load_images[1])},
                )
                if response.status_code != 200 or response.json()["face_count"] != 1:
                    failures.append(response.status_code)

    with httpx.Client(base_url=url, timeout=60, headers=KEY) as client:
        client.put(f"/v1/subjects/{subject}/consent").raise_for_status()
        client.put("/v1/subjects/keeper/consent").raise_for_status()
        client.post(
            "/v1/detect",
            params={"subject_id": "keeper"},
            files={"file": ("one.jpg", load_images[1])},
        ).raise_for_status()
    threads = [
        threading.Thread(target=upload_for_subject, args=(SHARED_UPLOADS // 4,))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    with httpx.Client(base_url=url, timeout=60, headers=KEY) as client:
        history = client.get(f"/v1/subjects/{subject}/history").json()
        deleted = client.delete(f"/v1/subjects/{subject}").json()
        after = client.get(f"/v1/subjects/{subject}/history").status_code

    served = detects_per_worker(metrics_dir, tmp_path)
    assert failures == []
    assert len(served) == 2 and min(served) >= 1, served
    assert history["frames"] == SHARED_UPLOADS
    assert sum(history["counts"].values()) == SHARED_UPLOADS
    assert sum(s["frames"] for s in history["sessions"]) == SHARED_UPLOADS
    assert deleted == {"subject_id": subject, "deleted": True}
    assert after == 404
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = list(raw.scan_iter(match="*", count=1000))
    assert any("keeper" in key for key in keys)  # the scan does see stored keys
    assert [key for key in keys if subject in key] == []
    assert all(subject.encode() not in (raw.dump(key) or b"") for key in keys)


def test_chunked_upload_over_limit_is_cut_off_early(workers_server: str) -> None:
    host, port = "127.0.0.1", _port(workers_server)
    chunk = b"0" * 65536
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # A small send buffer keeps the kernel from absorbing megabytes on loopback.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.settimeout(10)
        sock.connect((host, port))
        sock.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nX-API-Key: "
            + API_KEY.encode()
            + b"\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.setblocking(False)
        answer = b""
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        pending = b""
        # Offer up to 20 MB; a server that reads everything would never answer early.
        while sent < 20_000_000 and b"\r\n\r\n" not in answer:
            if not pending:
                pending = framed
            try:
                written = sock.send(pending)
                pending = pending[written:]
                sent += written
            except BlockingIOError:
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer += sock.recv(4096)
            except BlockingIOError:
                pass
        sock.setblocking(True)
        sock.settimeout(5)
        try:
            answer += sock.recv(4096)
        except (TimeoutError, ConnectionResetError):
            pass

    assert answer.startswith(b"HTTP/1.1 413")
    # Limit is 1 MB (+64 KB multipart room); allow for socket buffers on both sides.
    assert sent < 6_000_000


def test_declared_oversize_upload_is_refused_before_the_body(
    workers_server: str,
) -> None:
    with socket.create_connection(
        ("127.0.0.1", _port(workers_server)), timeout=10
    ) as sock:
        sock.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nX-API-Key: "
            + API_KEY.encode()
            + b"\r\nContent-Type: image/jpeg\r\nContent-Length: 50000000\r\n\r\n"
        )
        # Head and body may arrive in separate packets: read until the body shows.
        answer = b""
        while b'"detail"' not in answer and (chunk := sock.recv(4096)):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"detail"' in answer


def test_gunicorn_with_uvicorn_workers_serves_the_app(
    tmp_path: Path, load_images: dict[int, bytes]
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from apiserver import free_port, write_config

    port = free_port()
    config = write_config(tmp_path / "config.yaml", base_settings(tmp_path))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        "AIRCTRL_CONFIG": str(config),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    env.pop("AIRCTRL_SERVE_SETTINGS_JSON", None)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [
            str(gunicorn),
            "-k",
            "uvicorn.workers.UvicornWorker",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "airctrl.api.app:create_app_from_env()",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        answers = [
            httpx.post(
                url + "/v1/detect",
                files={"file": ("f", load_images[n])},
                headers=KEY,
                timeout=60,
            ).json()["face_count"]
            for n in (1, 0, 12)
        ]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    assert answers == [1, 0, 12]


def test_stalled_upload_is_answered_408(workers_server: str) -> None:
    with socket.create_connection(
        ("127.0.0.1", _port(workers_server)), timeout=15
    ) as sock:
        sock.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nX-API-Key: "
            + API_KEY.encode()
            + b"\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
            + b"\xff\xd8"
            + b"0" * 100
        )
        started = time.monotonic()
        answer = sock.recv(4096)
        waited = time.monotonic() - started

    assert answer.startswith(b"HTTP/1.1 408")
    assert 1.5 <= waited < 10


# -- privacy of the server log -------------------------------------------------------

#: Peer address of the privacy test's connections. Linux routes all of 127.0.0.0/8
#: to loopback, so the server sees this address, which it does not bind itself.
CLIENT_HOST = "127.0.0.2"
#: A subject id that appears nowhere else, so any trace of it in the log is a leak.
SUBJECT = "subject-q7x4kz"


def _stream_one_frame(url: str, frame: bytes) -> dict[str, Any]:
    """Open ``/v1/stream`` from :data:`CLIENT_HOST` with a subject; return a result."""
    from websockets.sync.client import connect

    sock = socket.create_connection(
        ("127.0.0.1", _port(url)), timeout=30, source_address=(CLIENT_HOST, 0)
    )
    ws_url = url.replace("http://", "ws://") + "/v1/stream"
    with connect(ws_url, sock=sock, open_timeout=30) as ws:
        hello = {"api_key": API_KEY, "subject_id": SUBJECT, "consent": True}
        ws.send(json.dumps(hello))
        ready = json.loads(ws.recv(timeout=30))
        ws.send(frame)
        result: dict[str, Any] = json.loads(ws.recv(timeout=60))
        ws.send(json.dumps({"type": "end"}))
    assert ready["type"] == "ready" and ready["storing"] is True
    return result


def test_server_log_holds_no_subject_id_or_client_address(
    tmp_path: Path, load_images: dict[int, bytes]
) -> None:
    settings = {**base_settings(tmp_path), "logging": {"level": "INFO"}}
    transport = httpx.HTTPTransport(local_address=CLIENT_HOST)

    with (
        airctrl_server(tmp_path, settings) as url,
        httpx.Client(
            base_url=url, headers=KEY, transport=transport, timeout=60
        ) as client,
    ):
        statuses = [
            client.put(f"/v1/subjects/{SUBJECT}/consent").status_code,
            client.post(
                "/v1/detect",
                params={"subject_id": SUBJECT},
                files={"file": ("f", load_images[1])},
            ).status_code,
            client.get(f"/v1/subjects/{SUBJECT}/history").status_code,
        ]
        streamed = _stream_one_frame(url, load_images[1])
        statuses.append(client.delete(f"/v1/subjects/{SUBJECT}").status_code)
        statuses.append(client.get(f"/v1/subjects/{SUBJECT}/history").status_code)
    log = server_log(tmp_path)

    assert statuses == [200, 200, 200, 200, 404]
    assert streamed["type"] == "result"
    # INFO lines do reach the log (so an access line would have been written).
    assert "Serving on" in log and "Erased a subject's history" in log
    assert SUBJECT not in log
    assert CLIENT_HOST not in log
