"""Tests for airctrl.metrics: what each record/set function adds to the registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import pytest
from apiserver import free_port
from prometheus_client.parser import text_string_to_metric_families

from airctrl import metrics
from airctrl.capture import SourceStatus
from airctrl.pipeline import FaceResult, FrameResult
from airctrl.types import EMOTIONS, BoundingBox, EmotionEstimate, HeadPose


def _value(name: str, **labels: str) -> float:
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def _face(label: str = "happy", confidence: float = 0.8) -> FaceResult:
    probabilities = {name: 0.0 for name in EMOTIONS}
    probabilities[label] = 1.0
    estimate = EmotionEstimate(
        label=label, probabilities=probabilities, confidence=confidence
    )
    return FaceResult(
        face_id=1,
        box=BoundingBox(10, 10, 50, 50),
        emotion=estimate,
        raw_emotion=estimate,
        pose=HeadPose(0.0, 0.0, 0.0),
        is_partial=False,
    )


def _frame(
    source: str,
    timestamp_ms: int,
    faces: tuple[FaceResult, ...] = (),
    latency_ms: float = 20.0,
) -> FrameResult:
    return FrameResult(
        frame_index=timestamp_ms // 33,
        timestamp_ms=timestamp_ms,
        width=640,
        height=360,
        faces=faces,
        latency_ms=latency_ms,
        source_id=source,
    )


@pytest.fixture()
def source() -> str:
    """A source name no other test uses, so counters start at zero."""
    return f"cam-{uuid.uuid4().hex[:8]}"


def test_record_frame_counts_frames_faces_emotions_and_latency(source: str) -> None:
    metrics.record_frame(
        source, _frame(source, 0, (_face("happy"), _face("sad")), 40.0)
    )
    metrics.record_frame(source, _frame(source, 33, (_face("happy"),), 20.0))

    assert _value("airctrl_frames_processed_total", source=source) == 2
    assert (
        _value("airctrl_emotions_detected_total", source=source, emotion="happy") == 2
    )
    assert _value("airctrl_emotions_detected_total", source=source, emotion="sad") == 1
    assert _value("airctrl_faces_per_frame_sum", source=source) == 3
    assert _value("airctrl_faces_per_frame_bucket", source=source, le="1.0") == 1
    assert _value(
        "airctrl_frame_processing_seconds_sum", source=source
    ) == pytest.approx(0.06)
    assert (
        _value("airctrl_frame_processing_seconds_bucket", source=source, le="0.033")
        == 1
    )


def test_record_frame_maps_unknown_emotion_label_to_other(source: str) -> None:
    metrics.record_frame(source, _frame(source, 0, (_face("contempt"),)))

    assert (
        _value("airctrl_emotions_detected_total", source=source, emotion="other") == 1
    )


@pytest.mark.parametrize(
    ("face_at_ms", "empty_at_ms", "expected_failures"),
    [
        pytest.param(0, 1000, 1, id="face-1s-ago-is-expected"),
        pytest.param(0, 2000, 1, id="face-exactly-2s-ago-is-expected"),
        pytest.param(0, 2500, 0, id="face-2.5s-ago-is-an-empty-scene"),
        pytest.param(5000, 100, 0, id="timestamp-went-back-forgets-face"),
        pytest.param(0, 0, 0, id="stills-at-the-same-timestamp-are-not-a-stream"),
        pytest.param(None, 1000, 0, id="never-had-a-face"),
    ],
)
def test_no_face_counts_as_failure_only_when_a_face_was_recent(
    source: str, face_at_ms: int | None, empty_at_ms: int, expected_failures: int
) -> None:
    if face_at_ms is not None:
        metrics.record_frame(source, _frame(source, face_at_ms, (_face(),)))
    metrics.record_frame(source, _frame(source, empty_at_ms))

    got = _value(
        "airctrl_face_detection_failures_total", source=source, reason="no_face"
    )
    assert got == expected_failures


def test_decode_failure_has_its_own_reason(source: str) -> None:
    metrics.record_decode_failure(source)
    metrics.record_decode_failure(source)

    assert (
        _value("airctrl_face_detection_failures_total", source=source, reason="decode")
        == 2
    )
    assert _value("airctrl_frames_processed_total", source=source) == 0


def test_confidence_mean_and_histogram_follow_reported_faces(source: str) -> None:
    metrics.record_frame(
        source, _frame(source, 0, (_face(confidence=0.9), _face(confidence=0.3)))
    )
    metrics.record_frame(source, _frame(source, 33, (_face(confidence=0.6),)))

    assert _value("airctrl_confidence_mean", source=source) == pytest.approx(0.6)
    assert _value("airctrl_emotion_confidence_count", source=source) == 3
    assert _value("airctrl_emotion_confidence_bucket", source=source, le="0.5") == 1


def test_fps_gauge_measures_frames_per_second_over_trailing_window(source: str) -> None:
    # 11 frames 0.1 s apart: 10 intervals in 1 s -> 10 fps.
    for step in range(11):
        metrics.record_frame(source, _frame(source, step * 100), now=100.0 + step * 0.1)
    assert _value("airctrl_fps", source=source) == pytest.approx(10.0)

    # 20 s later the old frames leave the 5 s window: 1 new frame -> no rate yet.
    metrics.record_frame(source, _frame(source, 30000), now=121.0)
    assert _value("airctrl_fps", source=source) == 0.0


def test_fps_histogram_samples_the_window_rate_once_a_second(source: str) -> None:
    # 25 frames 0.125 s apart (8 fps, exact in binary) over 3 s. Samples fall on
    # the 2nd frame (the first with a rate), then 1 s and 2 s after it.
    for step in range(25):
        metrics.record_frame(source, _frame(source, step * 125), now=100 + step / 8)

    histogram = "airctrl_frames_per_second"
    assert _value(f"{histogram}_count", source=source) == 3
    assert _value(f"{histogram}_sum", source=source) == pytest.approx(24.0)
    assert _value(f"{histogram}_bucket", source=source, le="5.0") == 0
    assert _value(f"{histogram}_bucket", source=source, le="8.0") == 3


def test_fps_histogram_takes_no_sample_before_a_rate_exists(source: str) -> None:
    metrics.record_frame(source, _frame(source, 0), now=100.0)

    assert _value("airctrl_frames_per_second_count", source=source) == 0
    assert _value("airctrl_fps", source=source) == 0.0


def test_camera_state_is_one_hot_and_counts_outages_and_reconnects(source: str) -> None:
    # connected -> lost -> reconnecting is one outage; back to connected is one
    # reconnect; connected -> failed is the second outage.
    sequence = ("connecting", "connected", "lost", "reconnecting", "reconnecting")
    for state in (*sequence, "connected", "failed"):
        metrics.set_camera_state(source, state)  # type: ignore[arg-type]

    assert _value("airctrl_source_outages_total", source=source) == 2
    assert _value("airctrl_source_reconnects_total", source=source) == 1
    assert _value("airctrl_camera_connected", source=source) == 0
    states = {
        s: _value("airctrl_camera_state", source=source, state=s)
        for s in metrics.CAMERA_STATES
    }
    assert states == {
        "connecting": 0,
        "connected": 0,
        "lost": 0,
        "reconnecting": 0,
        "ended": 0,
        "stopped": 0,
        "failed": 1,
    }


def test_camera_states_are_the_words_capture_reports() -> None:
    assert set(metrics.CAMERA_STATES) == set(get_args(SourceStatus))


def test_file_source_ending_is_not_an_outage(source: str) -> None:
    metrics.set_camera_state(source, "connected")
    metrics.set_camera_state(source, "ended")

    assert _value("airctrl_source_outages_total", source=source) == 0
    assert _value("airctrl_camera_state", source=source, state="ended") == 1


def test_leaving_connected_drops_fps_to_zero(source: str) -> None:
    metrics.set_camera_state(source, "connected")
    for step in range(5):
        metrics.record_frame(source, _frame(source, step * 100), now=10.0 + step * 0.1)
    assert _value("airctrl_fps", source=source) > 0

    metrics.set_camera_state(source, "reconnecting")

    assert _value("airctrl_fps", source=source) == 0.0


def test_unknown_camera_state_is_rejected_by_name(source: str) -> None:
    with pytest.raises(ValueError, match="state: expected one of"):
        metrics.set_camera_state(source, "on-fire")  # type: ignore[arg-type]


def test_skips_and_light_hud_are_recorded(source: str) -> None:
    metrics.record_skip(source, 3)
    metrics.record_skip(source, 0)
    metrics.set_light_hud(source, True)

    assert _value("airctrl_frames_skipped_total", source=source) == 3
    assert _value("airctrl_light_hud", source=source) == 1


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        pytest.param(
            "rtsp://user:secret@10.0.0.5:554/live?token=abc",
            None,
            "rtsp://10.0.0.5:554/live",
            id="url-loses-credentials-and-query",
        ),
        pytest.param(
            "rtsp://user:secret@10.0.0.5/live", "door", "door", id="name-wins"
        ),
        pytest.param("0", None, "0", id="webcam-index-kept"),
        pytest.param("x" * 100, None, "x" * 64, id="long-value-cut-to-64"),
    ],
)
def test_source_label_never_carries_secrets(
    raw: str, name: str | None, expected: str
) -> None:
    assert metrics.source_label(raw, name) == expected


def test_record_frame_uses_the_sanitised_source_label() -> None:
    marker = uuid.uuid4().hex[:8]
    metrics.record_frame(f"rtsp://u:pw@cam-{marker}/s?k=1", _frame("x", 0))

    assert (
        _value("airctrl_frames_processed_total", source=f"rtsp://cam-{marker}/s") == 1
    )
    assert "pw" not in metrics.metrics_payload()[0].decode().split(marker)[0][-20:]


def test_many_frames_make_one_series_not_one_per_frame(source: str) -> None:
    for step in range(50):
        metrics.record_frame(source, _frame(source, step * 33, (_face(),)))

    text = metrics.metrics_payload()[0].decode()
    series = [
        line
        for line in text.splitlines()
        if line.startswith("airctrl_frames_processed_total{") and source in line
    ]
    assert len(series) == 1


def test_http_requests_are_counted_by_route_template_and_status() -> None:
    route = f"/v1/test/{uuid.uuid4().hex[:6]}/{{subject}}"
    metrics.record_http_request("get", route, 200, 0.02)
    metrics.record_http_request("GET", route, 404, 0.01)
    metrics.record_http_request("BREW", route, 418, 0.01)

    assert (
        _value("airctrl_http_requests_total", method="GET", route=route, status="200")
        == 1
    )
    assert (
        _value("airctrl_http_requests_total", method="GET", route=route, status="404")
        == 1
    )
    assert (
        _value("airctrl_http_requests_total", method="OTHER", route=route, status="418")
        == 1
    )
    count = _value(
        "airctrl_http_request_duration_seconds_count", method="GET", route=route
    )
    assert count == 2


def test_every_metric_shares_the_prefix_and_counters_end_in_total() -> None:
    names = metrics.exported_sample_names()
    text = metrics.metrics_payload()[0].decode()
    counter_names = [
        line.split()[2]
        for line in text.splitlines()
        if line.startswith("# TYPE") and line.endswith(" counter")
    ]

    assert names and all(name.startswith(metrics.PREFIX) for name in names)
    assert counter_names and all(name.endswith("_total") for name in counter_names)
    assert "airctrl_fps" in names and "airctrl_frame_processing_seconds_bucket" in names
    assert "airctrl_frames_per_second_bucket" in names


def test_metrics_server_serves_the_registry_over_http(source: str) -> None:
    metrics.record_frame(source, _frame(source, 0, (_face(),)))
    port = free_port()
    server = metrics.start_metrics_server(port)
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5
        ) as reply:
            body = reply.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    families = {f.name: f for f in text_string_to_metric_families(body)}
    samples = [
        s
        for s in families["airctrl_frames_processed"].samples
        if s.labels.get("source") == source
    ]
    assert samples and samples[0].value == 1


_WORKER = textwrap.dedent(
    """
    import sys
    from airctrl import metrics
    from airctrl.pipeline import FrameResult
    for i in range(int(sys.argv[1])):
        metrics.record_frame("api", FrameResult(i, i * 33, 64, 64, latency_ms=5.0))
    metrics.record_http_request("POST", "/v1/analyze", 200, 0.05)
    metrics.set_camera_state("api", "connected")
    """
)


def test_multiprocess_payload_merges_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for frames in (3, 4):
        subprocess.run(
            [sys.executable, "-c", _WORKER, str(frames)],
            env=env,
            check=True,
            timeout=60,
        )

    reader = (
        "from airctrl import metrics; import sys; "
        "sys.stdout.write(metrics.metrics_payload()[0].decode())"
    )
    body = subprocess.run(
        [sys.executable, "-c", reader],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout

    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert values[("airctrl_frames_processed_total", (("source", "api"),))] == 7
    requests = (("method", "POST"), ("route", "/v1/analyze"), ("status", "200"))
    assert values[("airctrl_http_requests_total", requests)] == 2


# -- end to end: `airctrl run` on a real HTTP stream that dies and comes back -------


def _stream_server(clip: Path, port: int) -> subprocess.Popen[bytes]:
    """ffmpeg serving ``clip`` in a loop, in real time, as MPEG-TS over HTTP."""
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
        "-i", str(clip), "-c", "copy", "-f", "mpegts", "-listen", "1",
        f"http://127.0.0.1:{port}/live.ts",
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5
        ) as reply:
            body = reply.read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _sample(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
            **labels: str) -> float:  # fmt: skip
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def _wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.slow
def test_run_reports_stream_outage_reconnects_and_keeps_writing_events(
    tmp_path: Path, sample_path: Callable[[str], Path]
) -> None:
    stream_port, metrics_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            """
            sources:
              - source: "0"
                read_timeout_seconds: 1.0
                open_timeout_seconds: 2.0
                reconnect_initial_seconds: 0.2
                reconnect_max_seconds: 1.0
            hud: {window: never}
            output: {annotated_video: false}
            """
        ),
        encoding="utf-8",
    )
    events = tmp_path / "out" / "events.jsonl"
    clip = sample_path("single_face.mp4")
    server = _stream_server(clip, stream_port)
    run_log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "airctrl.cli", "--config", str(config), "run",
         "--source", f"http://127.0.0.1:{stream_port}/live.ts", "--headless",
         "--no-video", "--output-dir", str(tmp_path / "out"),
         "--metrics-port", str(metrics_port)],
        stdout=subprocess.DEVNULL, stderr=run_log,
    )  # fmt: skip
    try:
        # Connected and processing faces.
        _wait_until(
            lambda: _sample(_scrape(metrics_port), "airctrl_frames_processed_total",
                            source="main") >= 30,
            60, "frames from the stream",
        )  # fmt: skip
        before = _scrape(metrics_port)
        assert _sample(before, "airctrl_camera_connected", source="main") == 1
        assert _sample(before, "airctrl_source_outages_total", source="main") == 0

        # The server dies: the run must see the loss.
        _kill(server)
        _wait_until(
            lambda: _sample(_scrape(metrics_port), "airctrl_source_outages_total",
                            source="main") == 1,
            30, "the outage to be counted",
        )  # fmt: skip
        during = _scrape(metrics_port)
        assert _sample(during, "airctrl_camera_connected", source="main") == 0
        lost_states = [
            _sample(during, "airctrl_camera_state", source="main", state=state)
            for state in ("lost", "reconnecting")
        ]
        assert sum(lost_states) == 1
        lines_at_outage = len(events.read_text(encoding="utf-8").splitlines())

        # The server comes back on the same port: the run reconnects by itself.
        server = _stream_server(clip, stream_port)
        frames_at_outage = _sample(
            during, "airctrl_frames_processed_total", source="main"
        )
        _wait_until(
            lambda: _sample(_scrape(metrics_port), "airctrl_frames_processed_total",
                            source="main") >= frames_at_outage + 30,
            60, "frames after reconnecting",
        )  # fmt: skip
        after = _scrape(metrics_port)
    finally:
        _kill(server)
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=30)
        finally:
            _kill(run)
            run_log.close()

    assert _sample(after, "airctrl_camera_connected", source="main") == 1
    assert _sample(after, "airctrl_source_reconnects_total", source="main") == 1
    assert _sample(after, "airctrl_source_outages_total", source="main") == 1
    records = [
        json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()
    ]
    states = [r["state"] for r in records if r.get("event") == "status"]
    assert states[:2] == ["connected", "lost"] and "connected" in states[2:]
    faces_after = [r for r in records[lines_at_outage:] if r.get("event") != "status"]
    assert len(faces_after) >= 30  # events kept flowing after the reconnection
    log = (tmp_path / "run.log").read_text(encoding="utf-8", errors="replace")
    assert "lost" in log and "reconnected" in log.lower()
