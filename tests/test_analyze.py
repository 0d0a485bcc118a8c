"""Tests for `airctrl analyze` on the sample media: faces, emotions, output formats."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airctrl.cli import main


def analyze(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["analyze", "--no-progress", *args])
    captured = capsys.readouterr()
    is_json = "--format" not in args
    data = (
        json.loads(captured.out) if is_json and captured.out.strip() else captured.out
    )
    return code, data, captured.err


def test_analyze_single_face_photo_is_one_happy_face(
    capsys: pytest.CaptureFixture[str], sample_path: Callable[[str], Path]
) -> None:
    code, data, _ = analyze(capsys, str(sample_path("single_face.jpg")))

    faces = data["results"][0]["faces"]
    assert code == 0
    assert len(faces) == 1
    assert faces[0]["emotion"] == "happy"
    assert set(faces[0]["probabilities"]) == {
        "neutral",
        "happy",
        "sad",
        "angry",
        "surprised",
        "fear",
        "disgust",
    }
    assert sum(faces[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert faces[0]["evidence"], "every prediction names its evidence"


def test_analyze_group_photo_finds_five_faces(
    capsys: pytest.CaptureFixture[str], sample_path: Callable[[str], Path]
) -> None:
    code, data, _ = analyze(capsys, str(sample_path("multi_face.jpg")))

    assert code == 0
    assert len(data["results"][0]["faces"]) == 5


def test_analyze_landscape_has_no_face_and_no_emotion(
    capsys: pytest.CaptureFixture[str], sample_path: Callable[[str], Path]
) -> None:
    code, data, _ = analyze(capsys, str(sample_path("free-mountain-vector-01.jpg")))

    assert code == 0
    assert data["results"][0]["faces"] == []
    assert "emotion" not in json.dumps(data["results"][0])


def test_analyze_video_follows_neutral_then_happy(
    capsys: pytest.CaptureFixture[str], sample_path: Callable[[str], Path]
) -> None:
    code, data, _ = analyze(capsys, str(sample_path("single_face.mp4")))

    frames = data["results"][0]["frames"]
    labels = {
        f["frame"]: (f["faces"][0]["emotion"] if f["faces"] else None) for f in frames
    }
    happy_mid = sum(labels[i] == "happy" for i in range(24, 61))
    happy_start = sum(labels[i] == "happy" for i in range(16))
    assert code == 0
    assert data["results"][0]["frame_count"] == 72
    assert happy_mid > (61 - 24) / 2
    assert happy_start < 16 / 2


def test_analyze_folder_mixes_images_and_reports_unreadable_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sample_path: Callable[[str], Path],
) -> None:
    (tmp_path / "a.jpg").write_bytes(sample_path("single_face.jpg").read_bytes())
    (tmp_path / "broken.jpg").write_bytes(b"<html><body>not a photo</body></html>")

    code, data, err = analyze(capsys, str(tmp_path))

    assert code == 2
    assert [Path(r["path"]).name for r in data["results"]] == ["a.jpg"]
    assert len(data["errors"]) == 1 and "broken.jpg" in data["errors"][0]["error"]
    assert err.strip().count("\n") == 0 and err.startswith("airctrl: error:")


def test_analyze_csv_has_header_and_one_row_per_face(
    capsys: pytest.CaptureFixture[str], sample_path: Callable[[str], Path]
) -> None:
    code, out, _ = analyze(
        capsys, "--format", "csv", str(sample_path("multi_face.jpg"))
    )

    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert len(rows) == 5
    assert all(row["emotion"] for row in rows)


def test_analyze_jsonl_marks_faceless_image(
    capsys: pytest.CaptureFixture[str], sample_path: Callable[[str], Path]
) -> None:
    code, out, _ = analyze(
        capsys, "--format", "jsonl", str(sample_path("free-mountain-vector-01.jpg"))
    )

    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [e["event"] for e in events] == ["no_face"]


def test_analyze_missing_file_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = analyze(capsys, str(tmp_path / "nope.jpg"))

    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert "nope.jpg" in err


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_analyze_line_formats_keep_frame_flags(
    capsys: pytest.CaptureFixture[str], sample_path: Callable[[str], Path], fmt: str
) -> None:
    code, out, _ = analyze(
        capsys, "--format", fmt, "--max-faces", "2", str(sample_path("multi_face.jpg"))
    )

    if fmt == "jsonl":
        flags = [json.loads(line)["frame_flags"] for line in out.splitlines()]
    else:
        flags = [
            row["frame_flags"].split(";") for row in csv.DictReader(io.StringIO(out))
        ]
    assert code == 0
    assert len(flags) == 2
    assert all("max_faces_reached" in f for f in flags)


def test_analyze_empty_folder_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see")

    code, data, err = analyze(capsys, str(tmp_path))

    assert code == 2
    assert data["results"] == []
    assert (
        err.strip() == f"airctrl: error: {tmp_path}: no images or videos in this folder"
    )


def test_analyze_damaged_video_is_one_line_without_native_noise(
    tmp_path: Path, sample_path: Callable[[str], Path]
) -> None:
    damaged = tmp_path / "cut.mp4"
    damaged.write_bytes(sample_path("single_face.mp4").read_bytes()[:100_000])

    command = [sys.executable, "-m", "airctrl.cli", "analyze", "--no-progress"]
    done = subprocess.run(
        [*command, str(damaged)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    reason = "cannot open the video (damaged, truncated, or a codec FFmpeg cannot read)"
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"airctrl: error: {damaged}: {reason}"]


# -- progress on a terminal, quiet when piped --------------------------------------

#: The ``airctrl`` console script installed beside the interpreter running tests.
AIRCTRL = Path(sys.executable).with_name("airctrl")
#: What tqdm draws for a count without a known total: "\r42frame [00:03, ...".
PROGRESS_BAR = re.compile(r"\r\d+frame \[\d\d:\d\d")
#: Our log lines begin with a UTC timestamp (airctrl.logsetup.HUMAN_FORMAT).
LOG_LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


@pytest.fixture()
def mixed_folder(tmp_path: Path, sample_path: Callable[[str], Path]) -> Path:
    """A folder with two photos and a 72-frame video: long enough for a bar."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("single_face.jpg", "multi_face.jpg", "single_face.mp4"):
        (folder / name).write_bytes(sample_path(name).read_bytes())
    return folder


def run_with_stderr_on_a_terminal(command: list[str]) -> tuple[int, str, str]:
    """Run ``command`` with stderr on an 80x24 pseudo-terminal, stdout piped.

    Returns the exit code, stdout, and everything written to the terminal.
    """
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal
    )
    os.close(terminal)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed its side
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        reader.join(timeout=10)
        os.close(controller)
    return process.returncode, out.decode(), b"".join(chunks).decode()


def test_analyze_folder_on_a_terminal_shows_a_progress_bar_on_stderr(
    mixed_folder: Path,
) -> None:
    code, out, terminal = run_with_stderr_on_a_terminal(
        [str(AIRCTRL), "analyze", str(mixed_folder)]
    )

    # Log lines (the video's "Opened video ...") go above the bar, never onto
    # the end of it: each one starts a fresh line or overwrites a cleared bar.
    log_lines = [part for part in re.split(r"[\r\n]", terminal) if " INFO " in part]
    assert code == 0
    assert len(json.loads(out)["results"]) == 3
    assert PROGRESS_BAR.search(terminal), terminal
    assert log_lines and all(LOG_LINE_START.match(line) for line in log_lines)


def test_analyze_folder_piped_shows_no_progress_bar(mixed_folder: Path) -> None:
    done = subprocess.run(
        [str(AIRCTRL), "analyze", str(mixed_folder)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["results"]) == 3
    assert "\r" not in done.stderr
    assert "frame [" not in done.stderr and "frame/s" not in done.stderr
