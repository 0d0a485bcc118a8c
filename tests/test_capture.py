"""capture.py: upright frames, strictly rising timestamps, live sources that recover."""

from __future__ import annotations

import itertools
import logging
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import media
import numpy as np
import numpy.typing as npt
import pytest

from airctrl.capture import (
    CameraSource,
    FolderSource,
    ImageSource,
    StreamSource,
    VideoFileSource,
    open_source,
    redact_url,
)
from airctrl.config import SourceSettings
from airctrl.decode import ANIMATED_WARNING
from airctrl.errors import (
    EmptyInputError,
    SourceError,
    SourceLostError,
    UnsupportedMediaError,
)
from airctrl.landmarks import LandmarkDetector
from airctrl.types import BoundingBox, Frame

Array = npt.NDArray[np.uint8]


def increasing(values: list[int]) -> bool:
    """True when every value is larger than the one before."""
    return all(b > a for a, b in itertools.pairwise(values))


def iou(a: BoundingBox, b: BoundingBox) -> float:
    """Intersection over union of two pixel boxes."""
    ix = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    union = a.width * a.height + b.width * b.height - ix * iy
    return ix * iy / union


@pytest.fixture(scope="module")
def source_mp4(sample_path: Callable[[str], Path]) -> Path:
    """single_face.mp4: 72 frames, 640x360."""
    return sample_path("single_face.mp4")


@pytest.fixture(scope="module")
def small_mp4(source_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample clip at 320x180, upright and without rotation metadata."""
    return media.small_mp4(source_mp4, tmp_path_factory.mktemp("v") / "small.mp4")


# -- video files -----------------------------------------------------------------


def test_rotated_phone_clip_gives_upright_frames_in_display_size(
    source_mp4: Path, tmp_path: Path
) -> None:
    clip = media.rotated_mp4(source_mp4, tmp_path / "rotated.mp4")
    stored = cv2.VideoCapture(str(clip))
    stored.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    ok, raw = stored.read()
    stored.release()

    frames = list(VideoFileSource(clip))

    assert ok and raw.shape[:2] == (320, 180)  # stored sideways
    assert len(frames) == 72
    assert {f.image.shape for f in frames} == {(180, 320, 3)}


def test_rotated_clip_face_box_is_in_display_coordinates(
    source_mp4: Path, small_mp4: Path, tmp_path: Path, model_path: Path
) -> None:
    clip = media.rotated_mp4(source_mp4, tmp_path / "rotated.mp4")
    rotated_frame = next(itertools.islice(VideoFileSource(clip), 30, None))
    plain_frame = next(itertools.islice(VideoFileSource(small_mp4), 30, None))

    with LandmarkDetector(model_path, mode="image") as detector:
        found = detector.detect(rotated_frame).faces
        expected = detector.detect(plain_frame).faces

    assert len(found) == 1 and len(expected) == 1
    assert abs(found[0].pose.roll_deg) < 20
    assert iou(found[0].box, expected[0].box) > 0.6


def test_repeated_container_milliseconds_become_strictly_increasing(
    source_mp4: Path, tmp_path: Path
) -> None:
    clip = media.duplicate_timestamp_mp4(source_mp4, tmp_path / "dup.mp4")
    raw = cv2.VideoCapture(str(clip))
    container_ms = []
    while raw.read()[0]:
        container_ms.append(round(raw.get(cv2.CAP_PROP_POS_MSEC)))
    raw.release()

    stamps = [f.timestamp_ms for f in VideoFileSource(clip)]

    assert len(set(container_ms)) < len(container_ms)  # the input really repeats
    assert len(stamps) == 72
    assert increasing(stamps)


def test_webm_without_duration_is_read_to_the_end(
    source_mp4: Path, tmp_path: Path
) -> None:
    clip = media.webm_without_duration(source_mp4, tmp_path / "live.webm")
    probe = cv2.VideoCapture(str(clip))
    claimed = probe.get(cv2.CAP_PROP_FRAME_COUNT)
    probe.release()

    frames = list(VideoFileSource(clip))

    assert claimed != 72  # the container's count is useless
    assert len(frames) == 72
    assert increasing([f.timestamp_ms for f in frames])


def test_two_clips_in_one_process_each_start_fresh(
    source_mp4: Path, tmp_path: Path
) -> None:
    first = media.clip(source_mp4, tmp_path / "a.mp4", 0, 36)
    second = media.clip(source_mp4, tmp_path / "b.mp4", 36, 36)

    frames_a = list(VideoFileSource(first))
    frames_b = list(VideoFileSource(second))

    assert (len(frames_a), len(frames_b)) == (36, 36)
    assert frames_a[0].timestamp_ms == 0 and frames_b[0].timestamp_ms == 0
    assert [f.index for f in frames_b] == list(range(36))


def test_video_frames_are_rgb_not_bgr(tmp_path: Path) -> None:
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[..., 2] = 230  # BGR red, as OpenCV writes
    path = tmp_path / "red.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for _ in range(3):
        writer.write(red)
    writer.release()

    frame = next(iter(VideoFileSource(path)))

    assert frame.image[32, 32, 0] > 200 and frame.image[32, 32, 2] < 30


def test_looping_video_keeps_timestamps_increasing(small_mp4: Path) -> None:
    frames = list(itertools.islice(VideoFileSource(small_mp4, loop=True), 100))

    assert len(frames) == 100
    assert increasing([f.timestamp_ms for f in frames])


def test_video_without_its_index_is_a_one_line_source_error(
    small_mp4: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(media.truncated(small_mp4.read_bytes(), 0.6))

    with pytest.raises(SourceError) as caught:
        VideoFileSource(broken)
    assert "\n" not in str(caught.value)


def test_video_source_reports_ended(small_mp4: Path) -> None:
    seen: list[str] = []
    source = VideoFileSource(
        small_mp4, on_status=lambda _id, status: seen.append(status)
    )
    list(source)

    assert seen == ["connected", "ended"]


# -- images and folders ------------------------------------------------------------


def test_image_source_gives_one_upright_frame(
    happy_face_rgb: Array, tmp_path: Path
) -> None:
    path = tmp_path / "phone.jpg"
    path.write_bytes(media.exif_oriented_jpeg(happy_face_rgb[:, :500], 6))

    frames = list(ImageSource(path))

    assert len(frames) == 1
    assert frames[0].image.shape == (562, 500, 3)


def test_image_source_carries_the_animation_warning(
    happy_face_rgb: Array, tmp_path: Path
) -> None:
    path = tmp_path / "anim.webp"
    path.write_bytes(media.animated([happy_face_rgb, 255 - happy_face_rgb], "WEBP"))

    frame = next(iter(ImageSource(path)))

    assert frame.warnings == (ANIMATED_WARNING,)


def test_folder_skips_unreadable_files_with_warnings(
    happy_face_rgb: Array, small_mp4: Path, tmp_path: Path
) -> None:
    (tmp_path / "a-page.jpg").write_bytes(media.HTML_PAGE)
    (tmp_path / "b.jpg").write_bytes(media.jpeg(happy_face_rgb))
    (tmp_path / "c.png").write_bytes(media.png(happy_face_rgb[:100]))
    (tmp_path / "d-cut.jpg").write_bytes(media.truncated(media.jpeg(happy_face_rgb)))
    (tmp_path / "e-empty.jpg").write_bytes(b"")
    (tmp_path / "f.mp4").write_bytes(small_mp4.read_bytes())
    (tmp_path / "sub").mkdir()

    source = FolderSource(tmp_path)
    frames = list(source)

    assert [f.source_id for f in frames] == ["b.jpg", "c.png"]
    assert [f.timestamp_ms for f in frames] == [0, 1000]
    assert [name for name, _ in source.skipped] == [
        "a-page.jpg",
        "d-cut.jpg",
        "e-empty.jpg",
        "f.mp4",
    ]
    assert "HTML" in source.skipped[0][1] and "truncated" in source.skipped[1][1]


def test_folder_reports_each_undecodable_file_but_not_a_video(
    happy_face_rgb: Array, small_mp4: Path, tmp_path: Path
) -> None:
    (tmp_path / "a-page.jpg").write_bytes(media.HTML_PAGE)
    (tmp_path / "b.jpg").write_bytes(media.jpeg(happy_face_rgb))
    (tmp_path / "c-cut.jpg").write_bytes(media.truncated(media.jpeg(happy_face_rgb)))
    (tmp_path / "d.mp4").write_bytes(small_mp4.read_bytes())
    failures: list[tuple[str, str]] = []

    frames = list(
        FolderSource(
            tmp_path,
            source_id="shelf",
            on_decode_failure=lambda *failure: failures.append(failure),
        )
    )

    assert len(frames) == 1
    assert [source_id for source_id, _ in failures] == ["shelf", "shelf"]
    assert "HTML" in failures[0][1] and "truncated" in failures[1][1]


# -- open_source ---------------------------------------------------------------------


def test_open_source_routes_by_content_not_extension(
    small_mp4: Path, happy_face_rgb: Array, tmp_path: Path
) -> None:
    video_named_jpg = tmp_path / "video.jpg"
    video_named_jpg.write_bytes(small_mp4.read_bytes())
    image_named_mp4 = tmp_path / "photo.mp4"
    image_named_mp4.write_bytes(media.jpeg(happy_face_rgb))

    assert isinstance(open_source(str(video_named_jpg)), VideoFileSource)
    assert isinstance(open_source(str(image_named_mp4)), ImageSource)
    assert isinstance(open_source(str(tmp_path)), FolderSource)
    assert isinstance(open_source("2"), CameraSource)
    assert isinstance(open_source("rtsp://127.0.0.1:9/cam"), StreamSource)
    assert isinstance(open_source("http://127.0.0.1:9/live.ts"), StreamSource)


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (media.HTML_PAGE, UnsupportedMediaError, "HTML"),
        (b"", EmptyInputError, "empty file"),
    ],
    ids=["html", "empty"],
)
def test_open_source_rejects_non_media_with_reason(
    tmp_path: Path, content: bytes, error: type[Exception], words: str
) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)

    with pytest.raises(error, match=words):
        open_source(str(path))


def test_open_source_of_missing_path_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.mp4"))


def test_stream_id_hides_the_password() -> None:
    source = open_source("rtsp://admin:hunter2@127.0.0.1:8554/cam")

    assert source.source_id == "rtsp://admin:***@127.0.0.1:8554/cam"
    assert redact_url("rtsp://127.0.0.1/cam") == "rtsp://127.0.0.1/cam"


# -- scripted camera -------------------------------------------------------------------

HANG = "hang"


def shade(value: int) -> Array:
    """A tiny BGR frame filled with ``value``: distinct values are distinct frames."""
    return np.full((24, 32, 3), value, dtype=np.uint8)


class ScriptedCapture:
    """A stand-in for cv2.VideoCapture that plays back a script of reads.

    An array is a good frame, None a failed read, HANG a read that blocks until
    the test releases it; after the script, every read fails (unplugged).
    """

    def __init__(self, steps: list[Any], unblock: threading.Event) -> None:
        self.steps = list(steps)
        self.unblock = unblock
        self.released = False

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, Any]:
        if not self.steps:
            return False, None
        step = self.steps.pop(0)
        if isinstance(step, str) and step == HANG:
            self.unblock.wait()  # until the test ends: a read that never returns
            return False, None
        if step is None:
            return False, None
        return True, step.copy()

    def release(self) -> None:
        self.released = True


class ClosedCapture:
    """What cv2.VideoCapture looks like for an unplugged camera."""

    released = False

    def isOpened(self) -> bool:
        return False

    def read(self) -> tuple[bool, Any]:
        return False, None

    def release(self) -> None:
        self.released = True


class ScriptedFactory:
    """Hands out one scripted session per open attempt; "unplugged" opens closed."""

    def __init__(self, sessions: list[list[Any] | str]) -> None:
        self.sessions = list(sessions)
        self.unblock = threading.Event()
        self.opened: list[ScriptedCapture | ClosedCapture] = []

    def __call__(self, index: Any) -> ScriptedCapture | ClosedCapture:
        session = self.sessions.pop(0) if self.sessions else "unplugged"
        capture: ScriptedCapture | ClosedCapture
        if session == "unplugged":
            capture = ClosedCapture()
        else:
            capture = ScriptedCapture(list(session), self.unblock)
        self.opened.append(capture)
        return capture


def live_settings(**changes: Any) -> SourceSettings:
    """Fast reconnect settings without jitter, so waits can be checked exactly."""
    values: dict[str, Any] = {
        "reconnect_initial_seconds": 0.01,
        "reconnect_max_seconds": 1.0,
        "reconnect_jitter": 0.0,
        "read_timeout_seconds": 2.0,
        "open_timeout_seconds": 2.0,
        "stale_frame_limit": 4,
    }
    values.update(changes)
    return SourceSettings(**values)


def take(source: CameraSource | StreamSource, count: int) -> list[Frame]:
    """Read ``count`` frames, then stop the source."""
    frames = list(itertools.islice(source.frames(), count))
    source.close()
    return frames


def values_of(frames: list[Frame]) -> list[int]:
    """The fill value of each scripted frame."""
    return [int(f.image[0, 0, 0]) for f in frames]


@pytest.fixture()
def factory_cleanup() -> Iterator[list[ScriptedFactory]]:
    """Release every blocked scripted read when the test ends."""
    made: list[ScriptedFactory] = []
    yield made
    for factory in made:
        factory.unblock.set()


def test_camera_failed_reads_mean_lost_then_backoff_then_resume(
    factory_cleanup: list[ScriptedFactory],
) -> None:
    factory = ScriptedFactory(
        [
            [shade(1), shade(2), shade(3)],
            "unplugged",
            "unplugged",
            [shade(10), shade(11)],
        ]
    )
    factory_cleanup.append(factory)
    statuses: list[str] = []
    camera = CameraSource(
        0,
        live_settings(),
        capture_factory=factory,
        on_status=lambda _id, status: statuses.append(status),
    )

    frames = take(camera, 5)

    assert values_of(frames) == [1, 2, 3, 10, 11]
    assert statuses == ["connected", "lost", "reconnecting", "connected", "stopped"]
    assert camera.backoff_history == pytest.approx([0.01, 0.02, 0.04])
    assert camera.outages == 1 and camera.reconnects == 1
    assert increasing([f.timestamp_ms for f in frames])


def test_camera_frame_that_cannot_be_converted_is_skipped_and_reported(
    factory_cleanup: list[ScriptedFactory], caplog: pytest.LogCaptureFixture
) -> None:
    unusable = np.zeros((24, 32, 3), dtype=np.float32)
    factory = ScriptedFactory([[shade(1), unusable, shade(2)]])
    factory_cleanup.append(factory)
    failures: list[tuple[str, str]] = []
    camera = CameraSource(
        0,
        live_settings(),
        capture_factory=factory,
        on_decode_failure=lambda *failure: failures.append(failure),
    )

    with caplog.at_level(logging.WARNING, logger="airctrl.capture"):
        frames = take(camera, 2)

    assert values_of(frames) == [1, 2]
    assert len(failures) == 1 and failures[0][0] == camera.source_id
    assert "float32" in failures[0][1]
    assert [r.getMessage() for r in caplog.records] == [
        f"Skipping a frame from {camera.source_id}: {failures[0][1]}"
    ]


def test_camera_repeating_one_frame_is_lost_and_never_repeats_it(
    factory_cleanup: list[ScriptedFactory],
) -> None:
    frozen = [shade(1), shade(2)] + [shade(2)] * 10
    factory = ScriptedFactory([frozen, [shade(20), shade(21)]])
    factory_cleanup.append(factory)
    camera = CameraSource(
        0, live_settings(stale_frame_limit=4), capture_factory=factory
    )

    frames = take(camera, 4)

    assert values_of(frames) == [1, 2, 20, 21]
    assert camera.outages == 1
    assert factory.opened[0].released


@pytest.mark.timeout(60)
def test_camera_read_that_hangs_times_out_and_reconnects(
    factory_cleanup: list[ScriptedFactory],
) -> None:
    factory = ScriptedFactory([[shade(1), HANG], [shade(7)]])
    factory_cleanup.append(factory)
    statuses: list[str] = []
    camera = CameraSource(
        0,
        live_settings(read_timeout_seconds=0.3),
        capture_factory=factory,
        on_status=lambda _id, status: statuses.append(status),
    )

    frames = take(camera, 2)

    assert values_of(frames) == [1, 7]
    assert "lost" in statuses and camera.outages == 1


def test_camera_gives_up_after_max_reconnect_attempts(
    factory_cleanup: list[ScriptedFactory],
) -> None:
    factory = ScriptedFactory([])
    factory_cleanup.append(factory)
    camera = CameraSource(
        0, live_settings(max_reconnect_attempts=2), capture_factory=factory
    )

    with pytest.raises(SourceLostError, match="2 reconnect attempts"):
        list(camera)
    assert camera.status == "failed"
    assert len(camera.backoff_history) == 2
    assert len(factory.opened) == 3  # the first open plus two retries


def test_stop_event_ends_a_long_backoff_wait_promptly(
    factory_cleanup: list[ScriptedFactory],
) -> None:
    factory = ScriptedFactory([])
    factory_cleanup.append(factory)
    stop = threading.Event()
    camera = CameraSource(
        0,
        live_settings(reconnect_initial_seconds=120.0, reconnect_max_seconds=300.0),
        capture_factory=factory,
        stop_event=stop,
    )
    frames: list[Frame] = []
    worker = threading.Thread(target=lambda: frames.extend(camera))
    worker.start()
    deadline = time.monotonic() + 10
    while camera.status != "reconnecting" and time.monotonic() < deadline:
        time.sleep(0.01)

    stop.set()
    worker.join(timeout=10)

    assert not worker.is_alive()  # did not sit out the 120 s wait
    assert camera.status == "stopped" and frames == []


@pytest.mark.parametrize("attempt", [0, 3, 12], ids=["first", "fourth", "capped"])
def test_backoff_doubles_up_to_the_cap_with_bounded_jitter(attempt: int) -> None:
    settings = live_settings(
        reconnect_initial_seconds=0.5, reconnect_max_seconds=30.0, reconnect_jitter=0.2
    )
    camera = CameraSource(0, settings, rng=random.Random(7))
    base = min(30.0, 0.5 * 2**attempt)

    waits = [camera.backoff_seconds(attempt) for _ in range(200)]

    assert min(waits) >= base * 0.8 and max(waits) <= base * 1.2
    assert len(set(waits)) > 100  # really jittered, not one fixed value


# -- real stream over HTTP ----------------------------------------------------------


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_stream_server(clip: Path, port: int) -> subprocess.Popen[bytes]:
    """Serve ``clip`` forever as MPEG-TS over HTTP from a real ffmpeg process."""
    command = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        str(clip),
        "-c",
        "copy",
        "-f",
        "mpegts",
        "-listen",
        "1",
        f"http://127.0.0.1:{port}/live.ts",
    ]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture()
def stream_servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every ffmpeg server a test starts; killed when it ends."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.mark.slow
def test_http_stream_killed_mid_read_is_lost_then_reconnects(
    small_mp4: Path, stream_servers: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    stream_servers.append(start_stream_server(small_mp4, port))
    statuses: list[str] = []
    stream = StreamSource(
        f"http://127.0.0.1:{port}/live.ts",
        live_settings(
            read_timeout_seconds=2.0,
            open_timeout_seconds=5.0,
            reconnect_initial_seconds=0.2,
            reconnect_max_seconds=1.0,
        ),
        on_status=lambda _id, status: statuses.append(status),
    )
    frames: list[Frame] = []
    reader = threading.Thread(target=lambda: frames.extend(stream), daemon=True)
    reader.start()

    try:
        assert wait_for(lambda: len(frames) >= 10, 30), "stream never delivered"
        stream_servers[0].kill()
        killed_at = len(frames)
        assert wait_for(lambda: stream.status in ("lost", "reconnecting"), 15)

        stream_servers.append(start_stream_server(small_mp4, port))
        assert wait_for(lambda: len(frames) >= killed_at + 10, 40), (
            "no frames after restart"
        )
    finally:
        stream.close()
        reader.join(timeout=10)

    assert not reader.is_alive()
    assert stream.outages >= 1 and stream.reconnects >= 1
    # The client may race the server at start-up; judge from the first frames on.
    after_start = statuses[statuses.index("connected") :]
    assert after_start[:3] == ["connected", "lost", "reconnecting"]
    assert "connected" in after_start[3:]
    assert increasing([f.timestamp_ms for f in frames])
    assert frames[-1].image.shape == (180, 320, 3)


def test_stream_that_accepts_but_never_answers_does_not_block(
    factory_cleanup: list[ScriptedFactory],
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    stream = StreamSource(
        f"http://127.0.0.1:{port}/live.ts",
        live_settings(
            open_timeout_seconds=1.0, read_timeout_seconds=1.0, max_reconnect_attempts=1
        ),
    )
    outcome: list[BaseException] = []

    def consume() -> None:
        try:
            list(stream)
        except SourceLostError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    reader.join(timeout=20)
    silent.close()

    assert not reader.is_alive()
    assert len(outcome) == 1 and stream.status == "failed"
