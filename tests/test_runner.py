"""Tests for `airctrl run`: headless outputs, clean stops, camera loss, HUD window."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import media
import numpy as np
import numpy.typing as npt
import pytest

from airctrl.capture import CameraSource
from airctrl.cli import main
from airctrl.config import HudSettings, OutputSettings, Settings, SourceSettings
from airctrl.runner import LoadGovernor, RunOptions, run
from airctrl.types import Frame


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_command(video: Path, output_dir: Path, *flags: str) -> list[str]:
    """Command line for `airctrl run` looping ``video`` in a child process."""
    return [
        sys.executable, "-m", "airctrl.cli", "run", "--source", str(video), "--loop",
        "--output-dir", str(output_dir), *flags,
    ]  # fmt: skip


def stop_run(process: subprocess.Popen[str], stop_signal: int) -> tuple[str, str]:
    """Send ``stop_signal`` and return (stdout, stderr) once the run has exited.

    A run that ignores the signal is killed after 30 s (and the timeout raised),
    so a failing test never leaves a looping run behind.
    """
    process.send_signal(stop_signal)
    try:
        return process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for_events(events: Path, min_bytes: int = 20_000, seconds: float = 60) -> None:
    """Wait until a run has written ``min_bytes`` of events (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (
        not events.exists() or events.stat().st_size < min_bytes
    ):
        time.sleep(0.2)


def count_video_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_run_headless_on_video_writes_annotated_video_and_events(
    tmp_path: Path,
    sample_path: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "run",
            "--source",
            str(sample_path("single_face.mp4")),
            "--headless",
            "--output-dir",
            str(tmp_path),
        ]
    )

    out = capsys.readouterr().out
    events = read_events(tmp_path / "events.jsonl")
    face_frames = {e["frame"] for e in events if e["event"] == "face"}
    assert code == 0
    assert count_video_frames(tmp_path / "annotated.mp4") == 72
    assert len(face_frames) >= 70
    assert "72 frames analysed" in out
    assert "emotions:" in out


#: `airctrl run` prints lines like "main: 181 frames, 181 faces, 48.8 FPS | ..."
#: while it works (see airctrl.commands.run).
PROGRESS_LINE = re.compile(r"^main: \d+ frames, \d+ faces, \d+\.\d FPS", re.MULTILINE)


@pytest.mark.slow
def test_run_headless_on_the_20_second_sample_writes_every_frame_and_reports(
    tmp_path: Path,
    sample_path: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's main job: WolfgangLanger_Pexels.mp4 (472 frames, one face)."""
    from airctrl.commands import run as run_command_module

    # Piped output reports every 5 s; ask for every second so a fast machine
    # that finishes the clip in under 5 s still shows a line.
    real_run = run_command_module.run

    def run_reporting_every_second(*args: Any, **kwargs: Any) -> Any:
        return real_run(*args, **{**kwargs, "progress_interval_s": 1.0})

    monkeypatch.setattr(run_command_module, "run", run_reporting_every_second)

    code = main(["run", "--source", str(sample_path("WolfgangLanger_Pexels.mp4")),
                 "--headless", "--output-dir", str(tmp_path)])  # fmt: skip

    captured = capsys.readouterr()
    events = read_events(tmp_path / "events.jsonl")
    face_frames = {e["frame"] for e in events if e["event"] == "face"}
    shares = re.search(r"^  emotions: (.+)$", captured.out, re.MULTILINE)
    percents = re.findall(r" (\d+\.\d)%", shares[1] if shares else "")
    assert code == 0
    assert count_video_frames(tmp_path / "annotated.mp4") == 472
    assert len(face_frames) >= 0.95 * 472
    assert PROGRESS_LINE.search(captured.err), captured.err
    assert re.search(
        r"^source main: 472 frames analysed, \d+ with a face, \d+ face observations, "
        r"\d+\.\d FPS average$",
        captured.out,
        re.MULTILINE,
    ), captured.out
    assert sum(map(float, percents)) == pytest.approx(100.0, abs=0.5)


def test_run_with_csv_writes_one_row_per_face(
    tmp_path: Path, sample_path: Callable[[str], Path]
) -> None:
    code = main(
        [
            "run",
            "--source",
            str(sample_path("single_face.mp4")),
            "--headless",
            "--no-video",
            "--csv",
            "--max-frames",
            "10",
            "--output-dir",
            str(tmp_path),
        ]
    )

    lines = (tmp_path / "events.csv").read_text(encoding="utf-8").splitlines()
    face_rows = [line for line in lines if line.startswith("face,")]
    assert code == 0
    assert lines[0].startswith("event,source,frame")
    assert len(face_rows) == 10
    assert not (tmp_path / "annotated.mp4").exists()


def test_run_missing_source_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--source",
            str(tmp_path / "missing.mp4"),
            "--headless",
            "--output-dir",
            str(tmp_path),
        ]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("airctrl: error:") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("stop_signal", "started_with_sigint_ignored"),
    [
        pytest.param(signal.SIGINT, False, id="ctrl-c"),
        pytest.param(signal.SIGINT, True, id="ctrl-c-started-in-background"),
        pytest.param(signal.SIGTERM, False, id="sigterm"),
    ],
)
def test_run_stop_signal_ends_cleanly_and_keeps_outputs(
    tmp_path: Path,
    sample_path: Callable[[str], Path],
    stop_signal: int,
    started_with_sigint_ignored: bool,
) -> None:
    command = run_command(sample_path("single_face.mp4"), tmp_path, "--headless")
    # A shell without job control starts background commands with SIGINT
    # ignored; an ignored signal stays ignored across exec, so the child
    # inherits it the same way from here.
    handler = signal.SIG_IGN if started_with_sigint_ignored else signal.SIG_DFL
    previous = signal.signal(signal.SIGINT, handler)
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    events = tmp_path / "events.jsonl"
    wait_for_events(events)

    out, err = stop_run(process, stop_signal)

    assert process.returncode == 0, err
    assert "stopped by user" in out
    assert "Traceback" not in err
    assert count_video_frames(tmp_path / "annotated.mp4") > 10
    assert all(json.loads(line) for line in events.read_text().splitlines())


class ScriptedCamera:
    """A capture that plays frames, then fails every read (camera unplugged)."""

    def __init__(self, good_reads: int) -> None:
        self.good_reads = good_reads
        self.reads = 0
        self.image = np.full((120, 160, 3), 90, dtype=np.uint8)

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, Any]:
        self.reads += 1
        if self.reads > self.good_reads:
            return False, None
        image = self.image.copy()
        image[0, 0, 0] = self.reads % 255  # differs each frame, so never "stale"
        return True, image

    def release(self) -> None:
        pass


def test_run_reports_lost_camera_retries_with_growing_waits_and_stops_cleanly(
    tmp_path: Path, model_path: Path
) -> None:
    opened: list[ScriptedCamera] = []

    def factory(index: int) -> ScriptedCamera:
        if opened:
            raise OSError("no such device")  # unplugged: every reopen fails
        camera = ScriptedCamera(good_reads=10)
        opened.append(camera)
        return camera

    sources: list[CameraSource] = []

    def source_factory(
        source: SourceSettings,
        stop: threading.Event,
        on_status: Callable[[str, str], None],
    ) -> CameraSource:
        camera = CameraSource(
            0, source, capture_factory=factory, on_status=on_status, stop_event=stop
        )
        sources.append(camera)
        return camera

    camera_settings = SourceSettings(
        source="0",
        reconnect_initial_seconds=0.05,
        reconnect_max_seconds=0.4,
        reconnect_jitter=0.0,
        read_timeout_seconds=0.3,
    )
    settings = Settings(sources=[camera_settings])
    stop = threading.Event()
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            summary=run(
                settings,
                RunOptions(output_dir=tmp_path, write_video=False),
                stop_event=stop,
                model_path=model_path,
                source_factory=source_factory,
            )
        ),
    )
    thread.start()
    time.sleep(3.0)
    stop.set()
    thread.join(timeout=10)

    states = [
        e["state"]
        for e in read_events(tmp_path / "events.jsonl")
        if e["event"] == "status"
    ]
    waits = sources[0].backoff_history
    assert not thread.is_alive()
    assert result["summary"].sources[0].frames == 10
    assert "lost" in states or "reconnecting" in states
    assert result["summary"].sources[0].outages == 1
    assert len(waits) >= 3
    assert waits[:3] == sorted(waits[:3]) and waits[2] > waits[0]
    assert max(waits) <= 0.4 + 1e-9


@pytest.fixture()
def xvfb_display() -> Iterator[str]:
    """A virtual X display for the HUD window test, on a number Xvfb picks.

    ``-displayfd`` makes Xvfb choose a free display and write its number once
    it is ready, so runs side by side never share (or wait on) one display.
    """
    process = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", "1024x600x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    number = process.stdout.readline().strip()
    try:
        yield f":{number}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def hud_pixels(screen: np.ndarray) -> tuple[int, int]:
    """Count pixels in any emotion colour (box, label, bar) and status-panel pixels."""
    from airctrl.overlay import EMOTION_COLORS_BGR

    signed = screen.astype(int)
    box = sum(
        int(np.all(np.abs(signed - list(colour)) <= 6, axis=2).sum())
        for colour in EMOTION_COLORS_BGR.values()
    )
    panel = int(np.all(screen == [30, 30, 30], axis=2).sum())
    return box, panel


WindowRun = tuple[subprocess.Popen[str], dict[str, str]]


@pytest.fixture()
def start_window_run(xvfb_display: str) -> Iterator[Callable[[Path, Path], WindowRun]]:
    """Start `airctrl run --window` looping a video on the Xvfb display.

    The starter returns the process and the environment it runs in; a run still
    going when the test ends is killed, so a failing test leaves none behind.
    """
    started: list[subprocess.Popen[str]] = []

    def start(video: Path, output_dir: Path) -> WindowRun:
        env = {**os.environ, "DISPLAY": xvfb_display, "QT_QPA_PLATFORM": "xcb"}
        process = subprocess.Popen(
            run_command(video, output_dir, "--window"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process, env

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_run_window_under_xvfb_shows_the_hud(
    tmp_path: Path,
    sample_path: Callable[[str], Path],
    xvfb_display: str,
    start_window_run: Callable[[Path, Path], WindowRun],
) -> None:
    process, _ = start_window_run(sample_path("single_face.mp4"), tmp_path)
    shot = tmp_path / "screen.png"
    grab = [shutil.which("import") or "import", "-display", xvfb_display,
            "-window", "root", str(shot)]  # fmt: skip
    # The window appears once the model is loaded; on a busy machine that takes
    # a while, so look again until the HUD shows or a generous deadline passes.
    box_pixels = panel_pixels = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (box_pixels <= 300 or panel_pixels <= 500):
        time.sleep(2.0)
        subprocess.run(grab, check=True, timeout=30)
        box_pixels, panel_pixels = hud_pixels(cv2.imread(str(shot)))
    _, err = stop_run(process, signal.SIGINT)

    assert process.returncode == 0, err
    assert box_pixels > 300
    assert panel_pixels > 500


def test_run_window_quits_on_q_and_keeps_outputs(
    tmp_path: Path,
    sample_path: Callable[[str], Path],
    start_window_run: Callable[[Path, Path], WindowRun],
) -> None:
    # The clip loops, so only the key press can stop the run.
    process, env = start_window_run(sample_path("single_face.mp4"), tmp_path)
    events = tmp_path / "events.jsonl"
    xdotool = shutil.which("xdotool") or "xdotool"
    wait_for_events(events)

    found = subprocess.run(
        [xdotool, "search", "--name", "^AIRCTRL main$"],
        env=env, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    window = found.stdout.split()[0]
    # No window manager under Xvfb: keys go to the window under the pointer.
    subprocess.run(
        [xdotool, "mousemove", "--window", window, "20", "20", "key", "q"],
        env=env, check=True, timeout=30,
    )  # fmt: skip
    out, err = process.communicate(timeout=30)

    lines = events.read_text(encoding="utf-8").splitlines()
    assert process.returncode == 0, err
    assert "Quit requested from the window" in err
    assert "stopped by user" in out
    assert "Traceback" not in err
    assert sum(json.loads(line)["event"] == "face" for line in lines) > 10


def test_load_governor_switches_light_then_skips_then_recovers() -> None:
    governor = LoadGovernor(
        light_below_fps=12,
        light_recover_fps=18,
        max_stride=4,
        alpha=1.0,
        warmup_frames=0,
    )
    interval = 0.04  # a 25 fps camera

    governor.update(0.010, interval)  # 100 fps capacity: all fine
    calm = (governor.light_mode, governor.stride)
    governor.update(0.100, interval)  # 10 fps: light on and behind the camera
    overloaded = (governor.light_mode, governor.stride)
    governor.update(0.300, interval)  # 3.3 fps: 7.5 frames behind, capped at 4
    capped = governor.stride
    governor.update(0.070, interval)  # 14 fps: between thresholds, light stays on
    between = governor.light_mode
    governor.update(0.050, interval)  # 20 fps: recovered
    recovered = (governor.light_mode, governor.stride)

    assert calm == (False, 1)
    assert overloaded == (True, 3)  # 0.100 s of work per 0.040 s frame: every 3rd
    assert capped == 4
    assert between is True
    assert recovered == (False, 1)


def test_load_governor_ignores_warmup_frames() -> None:
    governor = LoadGovernor(
        light_below_fps=12,
        light_recover_fps=18,
        max_stride=4,
        alpha=1.0,
        warmup_frames=2,
    )

    governor.update(1.0, 0.04)
    governor.update(1.0, 0.04)

    assert governor.light_mode is False


def test_load_governor_never_skips_when_disabled() -> None:
    governor = LoadGovernor(
        light_below_fps=12,
        light_recover_fps=18,
        max_stride=4,
        skip_enabled=False,
        alpha=1.0,
        warmup_frames=0,
    )

    governor.update(0.5, 0.04)

    assert governor.light_mode is True
    assert governor.stride == 1


class RepeatedFrameSource:
    """A source that yields one real frame ``count`` times, ``step_ms`` apart.

    ``kind`` "stream" with a high ``fps`` stands in for a live source that
    delivers frames faster than anything can analyse; "video" at 25 fps for a
    recorded video, whose frames are never skipped.
    """

    def __init__(
        self, image: np.ndarray, count: int, *, kind: str, fps: float, step_ms: int
    ) -> None:
        self.image = image
        self.count = count
        self.kind = kind
        self.fps = fps
        self.step_ms = step_ms

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.count):
            yield Frame(self.image, i * self.step_ms, i, self.kind)

    def close(self) -> None:
        pass


def test_run_overloaded_live_source_goes_light_and_skips_frames(
    tmp_path: Path, model_path: Path, happy_face_rgb: np.ndarray
) -> None:
    from airctrl import metrics

    settings = Settings(
        sources=[SourceSettings(source="fast", name="overload-test")],
        hud=HudSettings(light_mode_below_fps=5000, light_mode_recover_fps=6000),
        output=OutputSettings(max_lag_frames=3),
    )
    before = (
        metrics.REGISTRY.get_sample_value(
            "airctrl_frames_skipped_total", {"source": "overload-test"}
        )
        or 0.0
    )

    summary = run(
        settings,
        RunOptions(output_dir=tmp_path, write_video=False),
        model_path=model_path,
        source_factory=lambda *_: RepeatedFrameSource(
            happy_face_rgb, 120, kind="stream", fps=1000.0, step_ms=1
        ),
    )

    after = (
        metrics.REGISTRY.get_sample_value(
            "airctrl_frames_skipped_total", {"source": "overload-test"}
        )
        or 0.0
    )
    s = summary.sources[0]
    assert s.light_mode is True
    assert s.skipped_frames > 0
    assert s.frames + s.skipped_frames == 120
    assert after - before == s.skipped_frames


def test_run_light_mode_turns_off_when_the_load_eases(
    tmp_path: Path,
    model_path: Path,
    happy_face_rgb: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airctrl.pipeline import Pipeline

    # The runner reads a clock that each analysed frame moves on: 0.2 s for the
    # first frames (5 FPS, under the 6 FPS threshold once the 10 warm-up frames
    # are past), then 0.01 s (100 FPS, over the 8 FPS recovery), whatever this
    # machine's real speed.
    slow_frames, total_frames = 14, 60
    real_process = Pipeline.process
    processed = 0
    now = 0.0

    def process_under_load(self: Pipeline, frame: Frame) -> Any:
        nonlocal processed, now
        processed += 1
        now += 0.2 if processed <= slow_frames else 0.01
        return real_process(self, frame)

    clock = types.SimpleNamespace(
        perf_counter=lambda: now, time=time.time, sleep=time.sleep
    )
    monkeypatch.setattr("airctrl.runner.time", clock)
    monkeypatch.setattr(Pipeline, "process", process_under_load)
    caplog.set_level(logging.INFO, logger="airctrl.runner")
    settings = Settings(
        sources=[SourceSettings(source="paced", name="easing-test")],
        hud=HudSettings(light_mode_below_fps=6, light_mode_recover_fps=8),
    )

    summary = run(
        settings,
        RunOptions(output_dir=tmp_path, write_video=False),
        model_path=model_path,
        source_factory=lambda *_: RepeatedFrameSource(
            happy_face_rgb, total_frames, kind="video", fps=25.0, step_ms=40
        ),
    )

    switches = [
        r.getMessage().split("light HUD ")[1].split()[0]
        for r in caplog.records
        if r.name == "airctrl.runner" and "light HUD" in r.getMessage()
    ]
    assert switches == ["on", "off"]
    assert summary.sources[0].light_mode is False
    assert summary.sources[0].frames == total_frames


def test_run_file_sources_are_never_skipped(
    tmp_path: Path, model_path: Path, sample_path: Callable[[str], Path]
) -> None:
    settings = Settings(
        sources=[SourceSettings(source=str(sample_path("single_face.mp4")))],
        hud=HudSettings(light_mode_below_fps=5000, light_mode_recover_fps=6000),
    )

    summary = run(
        settings,
        RunOptions(output_dir=tmp_path, write_video=False),
        model_path=model_path,
    )

    assert summary.sources[0].skipped_frames == 0
    assert summary.sources[0].frames == 72


def test_run_several_sources_keep_their_own_outputs(
    tmp_path: Path, model_path: Path, sample_path: Callable[[str], Path]
) -> None:
    settings = Settings(
        sources=[
            SourceSettings(source=str(sample_path("single_face.mp4")), name="door"),
            SourceSettings(source=str(sample_path("no_face.mp4")), name="hall"),
        ]
    )

    summary = run(
        settings,
        RunOptions(output_dir=tmp_path, write_video=False),
        model_path=model_path,
    )

    by_name = {s.source_id: s for s in summary.sources}
    door = read_events(tmp_path / "door" / "events.jsonl")
    hall = read_events(tmp_path / "hall" / "events.jsonl")
    assert by_name["door"].frames_with_faces >= 70
    assert by_name["hall"].faces == 0
    assert {e["source"] for e in door} == {"door"}
    assert not [e for e in hall if e["event"] == "face"]
    assert {e["face_id"] for e in door if e["event"] == "face"} == {1}


def _sample(name: str, **labels: str) -> float:
    """Read one sample from the metrics registry (0 when it was never set)."""
    from airctrl import metrics

    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _image_folder(folder: Path, image: npt.NDArray[np.uint8], count: int) -> Path:
    """Write ``count`` copies of ``image`` as JPEG files into a new ``folder``."""
    folder.mkdir()
    for number in range(count):
        (folder / f"{number:02d}.jpg").write_bytes(media.jpeg(image))
    return folder


def test_run_several_sources_count_frames_under_their_own_labels(
    tmp_path: Path, model_path: Path, happy_face_rgb: npt.NDArray[np.uint8]
) -> None:
    # Names no other test uses, so every count here comes from this run.
    door, hall = f"door-{uuid.uuid4().hex[:6]}", f"hall-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        sources=[
            SourceSettings(
                source=str(_image_folder(tmp_path / "a", happy_face_rgb, 2)), name=door
            ),
            SourceSettings(
                source=str(_image_folder(tmp_path / "b", happy_face_rgb, 3)), name=hall
            ),
        ]
    )

    frames = "airctrl_frames_processed_total"
    # The default ids of unnamed sources; earlier runs in this process use them.
    defaults_before = [_sample(frames, source=name) for name in ("main", "cam1")]

    run(
        settings,
        RunOptions(output_dir=tmp_path / "out", write_video=False, draw_hud=False),
        model_path=model_path,
    )

    assert _sample(frames, source=door) == 2
    assert _sample(frames, source=hall) == 3
    assert [_sample(frames, source=n) for n in ("main", "cam1")] == defaults_before


def test_run_counts_each_undecodable_file_in_a_folder_as_a_decode_failure(
    tmp_path: Path, model_path: Path, happy_face_rgb: npt.NDArray[np.uint8]
) -> None:
    folder = _image_folder(tmp_path / "in", happy_face_rgb, 2)
    (folder / "03-cut.jpg").write_bytes(media.truncated(media.jpeg(happy_face_rgb)))
    (folder / "04-page.jpg").write_bytes(media.HTML_PAGE)
    name = f"shelf-{uuid.uuid4().hex[:6]}"
    settings = Settings(sources=[SourceSettings(source=str(folder), name=name)])

    summary = run(
        settings,
        RunOptions(output_dir=tmp_path / "out", write_video=False, draw_hud=False),
        model_path=model_path,
    )

    failures = _sample(
        "airctrl_face_detection_failures_total", source=name, reason="decode"
    )
    assert summary.sources[0].error is None
    assert _sample("airctrl_frames_processed_total", source=name) == 2
    assert failures == 2


def test_run_encrypts_events_when_configured(
    tmp_path: Path, model_path: Path, sample_path: Callable[[str], Path]
) -> None:
    from airctrl.secure import generate_key, load_cipher, read_lines

    key_file = tmp_path / "events.key"
    key_file.write_bytes(generate_key() + b"\n")
    key_file.chmod(0o600)
    settings = Settings(
        sources=[SourceSettings(source=str(sample_path("single_face.mp4")))],
        output=OutputSettings(encrypt=True, encryption_key_file=key_file),
    )

    run(
        settings,
        RunOptions(output_dir=tmp_path / "out", write_video=False, max_frames=5),
        model_path=model_path,
    )

    encrypted = tmp_path / "out" / "events.jsonl.enc"
    raw = encrypted.read_bytes()
    events = [json.loads(line) for line in read_lines(encrypted, load_cipher(key_file))]
    assert b"emotion" not in raw
    assert [e["frame"] for e in events if e["event"] == "face"] == [0, 1, 2, 3, 4]
    assert not (tmp_path / "out" / "events.jsonl").exists()


@pytest.mark.parametrize("store", [False, True], ids=["default-no-frames", "opted-in"])
def test_run_stores_frames_only_when_opted_in(
    tmp_path: Path, model_path: Path, sample_path: Callable[[str], Path], store: bool
) -> None:
    settings = Settings(
        sources=[SourceSettings(source=str(sample_path("single_face.mp4")))],
        output=OutputSettings(store_frames=store),
    )

    run(
        settings,
        RunOptions(output_dir=tmp_path, write_video=False, max_frames=3),
        model_path=model_path,
    )

    stored = (
        sorted(p.name for p in (tmp_path / "frames").glob("*.jpg")) if store else []
    )
    assert (tmp_path / "frames").exists() is store
    assert stored == (["00000000.jpg", "00000001.jpg", "00000002.jpg"] if store else [])
