"""Benchmark the HTTP API against the raw stages it wraps (not a test).

Measures, on this machine:

* raw landmarker time per image (one plain MediaPipe IMAGE-mode call) and the
  in-process pipeline's time (what the API runs, without HTTP);
* decode time per upload (``decode_image``);
* ``POST /v1/detect`` median and p95 latency over loopback, one client;
* throughput (requests/s) with 1 and 2 workers under concurrent load;
* resident memory of the server after 200 and after 2,000 requests cycling
  good and bad inputs, and every 10 of 50 open/close stream sessions.

Targets: median API latency <= 1.3 x (raw + decode); memory growth between
the two readings < 5 %. Run from the repository root::

    python benchmarks/bench_api.py [--requests 200] [--load-seconds 10]
        [--search fast|thorough] [--latency-only]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import get_args

import cv2
import httpx
import numpy as np
import yaml
from PIL import Image

from airctrl.api.auth import hash_key
from airctrl.assets import resolve_model, resolve_sample
from airctrl.config import Settings, StillSearch
from airctrl.decode import decode_image
from airctrl.pipeline import Pipeline
from airctrl.types import Frame

KEY = "bench-key-0123456789abcdef"
LATENCY_TARGET = 1.3
MEMORY_GROWTH_TARGET = 0.05


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` plus its children (uvicorn workers)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


@contextmanager
def server(
    workdir: Path, workers: int, detection: dict[str, object]
) -> Iterator[tuple[str, int]]:
    port = free_port()
    config = workdir / f"bench-{port}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {
                    "api_keys": [hash_key(KEY)],
                    "port": port,
                    "workers": workers,
                },
                "storage": {"backend": "none"},
                "detection": detection,
                "logging": {"level": "WARNING"},
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "airctrl.cli", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        raise RuntimeError("server did not start")
    try:
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    return float(np.percentile(samples, 95)) * 1000


def inputs() -> dict[str, bytes]:
    """Uploads cycled in the memory run: good photos and the bad kinds."""
    face_bytes = resolve_sample("single_face.jpg").read_bytes()
    face = np.asarray(Image.open(io.BytesIO(face_bytes)).convert("RGB"))
    tile = cv2.resize(face, (230, 230), interpolation=cv2.INTER_AREA)
    grid = np.vstack([np.hstack([tile] * 4)] * 3)
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, "JPEG", quality=90)
    png = io.BytesIO()
    Image.fromarray(face).convert("RGBA").save(png, "PNG")
    return {
        "one_face": face_bytes,
        "no_face": resolve_sample("free-mountain-vector-01.jpg").read_bytes(),
        "grid12": buffer.getvalue(),
        "rgba_png": png.getvalue(),
        "truncated": face_bytes[: len(face_bytes) // 2],
        "empty": b"",
        "html": b"<!doctype html><html><body>not an image</body></html>",
    }


def bench_latency(
    url: str, data: bytes, repeats: int, settings: Settings
) -> dict[str, list[float]]:
    """Time decode, one raw MediaPipe call, the in-process pipeline and the API.

    The four are interleaved so all see the same background load and their
    ratios hold on a busy machine. "raw" is one plain IMAGE-mode
    ``FaceLandmarker.detect`` call, what a minimal integration does; the
    pipeline adds its still-image search (``detection.still_search``: retries,
    and in the thorough search a confirming re-run per face and a second padded
    view), all of which the API runs too. Returns seconds per sample under
    "decode", "raw", "pipeline" and "api".
    """
    import mediapipe as mp
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    options = vision.FaceLandmarkerOptions(
        base_options=mp_tasks.BaseOptions(model_asset_path=str(resolve_model())),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=settings.detection.max_faces,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    times: dict[str, list[float]] = {"decode": [], "raw": [], "pipeline": [], "api": []}
    with (
        vision.FaceLandmarker.create_from_options(options) as landmarker,
        Pipeline(settings, mode="image", model_path=resolve_model()) as pipeline,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        for index in range(repeats + 10):
            started = time.perf_counter()
            decoded = decode_image(data)
            decoded_at = time.perf_counter()
            landmarker.detect(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=decoded.image)
            )
            raw_at = time.perf_counter()
            pipeline.process(Frame(decoded.image, 0, index))
            pipeline_at = time.perf_counter()
            status = post(client, data)
            answered_at = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")
            if index >= 10:  # warm-up
                times["decode"].append(decoded_at - started)
                times["raw"].append(raw_at - decoded_at)
                times["pipeline"].append(pipeline_at - raw_at)
                times["api"].append(answered_at - pipeline_at)
    return times


def post(client: httpx.Client, data: bytes) -> int:
    response = client.post(
        "/v1/detect",
        content=data,
        headers={"X-API-Key": KEY, "Content-Type": "image/jpeg"},
    )
    return response.status_code


def bench_throughput(url: str, data: bytes, clients: int, seconds: float) -> float:
    done = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        nonlocal done
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < stop_at:
                if post(client, data) == 200:
                    with lock:
                        done += 1

    started = time.monotonic()
    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done / (time.monotonic() - started)


def bench_memory(url: str, pid: int, uploads: dict[str, bytes]) -> tuple[int, int]:
    cycle = list(uploads.values())
    readings = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for index in range(2000):
            status = post(client, cycle[index % len(cycle)])
            if status >= 500:
                raise RuntimeError(f"server error {status}")
            if index + 1 in (200, 2000):
                readings[index + 1] = rss_bytes(pid)
    return readings[200], readings[2000]


def bench_stream_sessions(url: str, pid: int, frame: bytes, sessions: int) -> list[int]:
    """Open and close ``sessions`` WebSocket sessions (5 frames each); RSS every 10."""
    from websockets.sync.client import connect

    readings = []
    ws_url = url.replace("http://", "ws://") + "/v1/stream"
    for index in range(sessions):
        with connect(ws_url, additional_headers={"X-API-Key": KEY}) as ws:
            ws.send(json.dumps({}))
            ws.recv()
            for _ in range(5):
                ws.send(frame)
                ws.recv()
            ws.send(json.dumps({"type": "end"}))
        if (index + 1) % 10 == 0:
            time.sleep(0.2)  # let the server finish closing the last session
            readings.append(rss_bytes(pid))
    return readings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="latency samples")
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument(
        "--clients", type=int, default=8, help="concurrent clients for throughput"
    )
    parser.add_argument(
        "--search",
        choices=get_args(StillSearch),
        default="fast",
        help="detection.still_search the server and the in-process pipeline use",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="stop after the latency figures (skip throughput and memory)",
    )
    args = parser.parse_args()
    detection: dict[str, object] = {
        "max_faces": 12,
        "still_search": args.search,
    }
    settings = Settings.model_validate({"detection": detection})

    photo = resolve_sample("single_face.jpg").read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        with server(workdir, 1, detection) as (url, pid):
            times = bench_latency(url, photo, args.requests, settings)
            raw_ms, decode_ms = median_ms(times["raw"]), median_ms(times["decode"])
            pipeline_ms, api_ms = median_ms(times["pipeline"]), median_ms(times["api"])
            ratio = api_ms / (raw_ms + decode_ms)
            print(f"detection.still_search: {settings.detection.still_search}")
            print(f"decode, single_face.jpg:             median {decode_ms:7.2f} ms")
            print(f"raw MediaPipe IMAGE call:            median {raw_ms:7.2f} ms")
            print(f"AIRCTRL pipeline in process:         median {pipeline_ms:7.2f} ms")
            print(
                f"POST /v1/detect, 1 client:           median {api_ms:7.2f} ms, "
                f"p95 {p95_ms(times['api']):7.2f} ms"
            )
            print(
                f"latency ratio api / (raw + decode):  {ratio:.2f} "
                f"(target <= {LATENCY_TARGET}) "
                f"{'OK' if ratio <= LATENCY_TARGET else 'MISSED'}"
            )
            print(
                "latency ratio api / (pipeline + decode): "
                f"{api_ms / (pipeline_ms + decode_ms):.2f} (HTTP and service overhead)"
            )
            if args.latency_only:
                return 0
            one = bench_throughput(url, photo, args.clients, args.load_seconds)
            print(f"throughput, 1 worker, {args.clients} clients:  {one:6.1f} req/s")
            before, after = bench_memory(url, pid, inputs())
            growth = (after - before) / before
            print(f"server RSS after 200 requests:     {before / 2**20:7.1f} MiB")
            print(f"server RSS after 2000 requests:    {after / 2**20:7.1f} MiB")
            print(
                f"memory growth 200 -> 2000:         {growth * 100:+.2f} % "
                f"(target < {MEMORY_GROWTH_TARGET * 100:.0f} %) "
                f"{'OK' if growth < MEMORY_GROWTH_TARGET else 'MISSED'}"
            )
            sessions = bench_stream_sessions(url, pid, photo, 50)
            print(
                "server RSS every 10 of 50 stream sessions: "
                + ", ".join(f"{r / 2**20:.1f}" for r in sessions)
                + f" MiB ({(sessions[-1] - sessions[0]) / sessions[0] * 100:+.2f} % "
                "from the 10th to the 50th)"
            )
        with server(workdir, 2, detection) as (url, _pid):
            two = bench_throughput(url, photo, args.clients, args.load_seconds)
            print(
                f"throughput, 2 workers, {args.clients} clients: {two:6.1f} req/s "
                f"({two / one:.2f} x one worker; {os.cpu_count()} cores)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
