"""Soak test: run `airctrl run` on a looped sample video and watch its memory.

Starts ``airctrl run --loop --headless --no-video --metrics-port P`` on the
sample video, WolfgangLanger_Pexels.mp4 (or ``--clip``), in a child process for
``--minutes`` (default 10), and every ``--interval-seconds`` (default 60)
prints the child's resident memory (VmRSS from /proc), the frames processed so
far (from its /metrics) and the frame rate over the interval. At the end it
prints the growth after the warm-up (default: the first 3 minutes, while caches
and the tracker settle), per hour, and the end/warm-up ratio. Outputs go to a
temporary folder that is removed afterwards unless ``--keep``.

    python benchmarks/soak.py                 # 10 minutes
    python benchmarks/soak.py --minutes 60    # longer, e.g. overnight

Numbers are for reading, not asserting: a steady process settles after the
warm-up and then stays within a few MB; steady growth per hour means a leak.
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

#: The sample video the soak loops by default (472 frames, about 20 s at
#: 640x360), fetched and verified by ``airctrl.assets.resolve_sample``.
SAMPLE_VIDEO = "WolfgangLanger_Pexels.mp4"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (VmRSS), or NaN when it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return float("nan")
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def frames_processed(port: int) -> float:
    """Sum of airctrl_frames_processed_total on the child's /metrics (NaN if down)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5
        ) as reply:
            body = reply.read().decode()
    except OSError:
        return float("nan")
    values = re.findall(
        r"^airctrl_frames_processed_total\{[^}]*\} (\S+)$", body, re.MULTILINE
    )
    return sum(float(v) for v in values)


def _slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour."""
    if len(samples) < 2:
        return float("nan")
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var * 3600 if var else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="run length (default 10)"
    )
    parser.add_argument(
        "--interval-seconds", type=float, default=60.0, help="report every (60)"
    )
    parser.add_argument(
        "--warmup-minutes", type=float, default=3.0, help="warm-up (default 3)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the outputs and log")
    parser.add_argument(
        "--clip",
        type=Path,
        default=None,
        help=f"video (default the sample video, {SAMPLE_VIDEO})",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="settings file for the run"
    )
    args = parser.parse_args()

    if args.clip is None:
        from airctrl.assets import resolve_sample

        args.clip = resolve_sample(SAMPLE_VIDEO)
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="airctrl-soak-"))
    command = [sys.executable, "-m", "airctrl.cli"]
    if args.config is not None:
        command += ["--config", str(args.config)]
    command += [
        "run", "--source", str(args.clip), "--loop", "--headless", "--no-video",
        "--output-dir", str(workdir / "out"), "--metrics-port", str(port),
    ]  # fmt: skip
    log = (workdir / "run.log").open("wb")
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=log, cwd=workdir
    )
    print(f"soak: {args.clip.name} looped for {args.minutes:g} min, pid {child.pid}, "
          f"metrics :{port}, outputs in {workdir}")  # fmt: skip
    print(f"{'minute':>6} {'rss_MiB':>8} {'frames':>9} {'fps':>6}")

    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    last_frames, last_time = 0.0, started
    try:
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            if child.poll() is not None:
                print(f"soak: airctrl run exited early with code {child.returncode}; "
                      f"see {workdir / 'run.log'}")  # fmt: skip
                return 1
            time.sleep(min(args.interval_seconds, args.minutes * 60 - elapsed))
            now = time.monotonic()
            memory, frames = rss_mb(child.pid), frames_processed(port)
            fps = (frames - last_frames) / (now - last_time) if now > last_time else 0.0
            last_frames, last_time = frames, now
            samples.append((now - started, memory))
            print(f"{(now - started) / 60:6.1f} {memory:8.1f} {frames:9.0f} {fps:6.1f}",
                  flush=True)  # fmt: skip
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()

    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    warm = [(t, m) for t, m in samples if t >= args.warmup_minutes * 60 - 1]
    if len(warm) < 2:
        print("soak: too short to measure growth after warm-up")
        return 0
    first, last = warm[0][1], warm[-1][1]
    print(f"rss after warm-up {first:.1f} MiB, at end {last:.1f} MiB: "
          f"growth {last - first:+.1f} MiB ({last / first:.3f}x), "
          f"trend {_slope_per_hour(warm):+.1f} MiB/hour")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
