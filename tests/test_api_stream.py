"""WS /v1/stream through TestClient: auth, tracking, timestamps, drops, history."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import media
import numpy as np
import pytest
from apiserver import API_KEY, KEY, api_key_hash
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from airctrl.api import create_app
from airctrl.api.stream import parse_hello
from airctrl.config import Settings


@pytest.fixture(scope="module")
def frames(sample_path: Callable[[str], Path]) -> list[bytes]:
    """Every 4th frame of single_face.mp4 as JPEG bytes (18 frames, 640x360)."""
    out = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(sample_path("single_face.mp4")),
            "-vf",
            "select=not(mod(n\\,4))",
            "-vsync",
            "vfr",
            "-f",
            "image2pipe",
            "-c:v",
            "mjpeg",
            "-q:v",
            "4",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    parts = [b"\xff\xd8" + p for p in out.split(b"\xff\xd8")[1:]]
    assert len(parts) == 18
    return parts


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_path: Path
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("stream")
    settings = Settings.model_validate(
        {
            "server": {
                "api_keys": [api_key_hash()],
                "stream_queue_size": 2,
                "max_stream_sessions": 2,
            },
            "storage": {"backend": "sqlite", "sqlite_path": str(folder / "h.sqlite3")},
        }
    )
    with TestClient(create_app(settings, model_path=model_path)) as test_client:
        yield test_client


def run_session(
    ws: Any,
    frames: list[bytes],
    *,
    hello: dict[str, Any] | None = None,
    timestamps: list[int] | None = None,
    lockstep: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send ``frames`` and collect the answers; lockstep waits for each answer."""
    if hello is not None:
        ws.send_text(json.dumps(hello))
    ready = ws.receive_json()
    answers = []
    for index, frame in enumerate(frames):
        if timestamps is not None:
            ws.send_text(json.dumps({"timestamp_ms": timestamps[index]}))
        ws.send_bytes(frame)
        if lockstep:
            answers.append(ws.receive_json())
    ws.send_text(json.dumps({"type": "end"}))
    if not lockstep:
        try:
            while True:
                answers.append(ws.receive_json())
        except WebSocketDisconnect:
            pass
    return ready, answers


def test_stream_tracks_one_face_and_smooths_to_happy_mid_clip(
    client: TestClient, frames: list[bytes]
) -> None:
    with client.websocket_connect("/v1/stream", headers=KEY) as ws:
        ready, answers = run_session(
            ws, frames, hello={}, timestamps=[i * 133 for i in range(18)]
        )

    assert ready["type"] == "ready" and ready["storing"] is False
    assert [a["type"] for a in answers] == ["result"] * 18
    assert all(len(a["faces"]) == 1 for a in answers)
    assert {a["faces"][0]["id"] for a in answers} == {answers[0]["faces"][0]["id"]}
    # The clip is happy around frames 24-60, i.e. our frames 6..15.
    labels = [a["faces"][0]["emotion"] for a in answers]
    assert "happy" in labels[8:15]
    assert labels[0] != "happy"
    assert [a["timestamp_ms"] for a in answers] == [i * 133 for i in range(18)]


def test_repeated_and_backward_timestamps_are_made_strictly_increasing(
    client: TestClient, frames: list[bytes]
) -> None:
    stamps = [0, 0, 0, 50, 40, 40]
    with client.websocket_connect("/v1/stream", headers=KEY) as ws:
        _, answers = run_session(ws, frames[:6], hello={}, timestamps=stamps)

    sent = [a["timestamp_ms"] for a in answers]
    assert sent == [0, 1, 2, 50, 51, 52]
    assert all(len(a["faces"]) == 1 for a in answers)


def test_slow_consumer_gets_frames_dropped_and_counted(
    client: TestClient, frames: list[bytes]
) -> None:
    burst = frames * 3
    with client.websocket_connect("/v1/stream", headers=KEY) as ws:
        _, answers = run_session(ws, burst, hello={}, lockstep=False)

    results = [a for a in answers if a["type"] == "result"]
    last = results[-1]
    assert last["received"] == len(burst)
    assert last["dropped"] > 0
    assert last["processed"] + last["dropped"] == len(burst)
    assert len(results) == last["processed"]
    # Newest wins: the last frame sent is always analysed.
    assert results[-1]["frame"] == len(burst) - 1


def test_hello_key_authenticates_when_no_header(
    client: TestClient, frames: list[bytes]
) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ready, answers = run_session(ws, frames[:1], hello={"api_key": API_KEY})

    assert ready["type"] == "ready"
    assert len(answers[0]["faces"]) == 1


@pytest.mark.parametrize(
    "first",
    [json.dumps({"api_key": "wrong-key-0123456789"}), json.dumps({}), None],
    ids=["wrong-key", "no-key", "binary-first"],
)
def test_stream_without_valid_key_is_closed_4401(
    client: TestClient, frames: list[bytes], first: str | None
) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        if first is None:
            ws.send_bytes(frames[0])
        else:
            ws.send_text(first)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()

    assert closed.value.code == 4401


def test_bad_frame_gets_an_error_and_the_session_goes_on(
    client: TestClient, frames: list[bytes]
) -> None:
    with client.websocket_connect("/v1/stream", headers=KEY) as ws:
        _, answers = run_session(
            ws, [b"<html>not a frame</html>", b"", frames[0]], hello={}
        )

    assert [a["type"] for a in answers] == ["error", "error", "result"]
    assert "HTML" in answers[0]["detail"]
    assert len(answers[2]["faces"]) == 1


def test_consented_stream_stores_aggregates_and_erasure_removes_them(
    client: TestClient, frames: list[bytes]
) -> None:
    hello = {"subject_id": "viewer-1", "consent": True, "session_id": "sess-1"}
    with client.websocket_connect("/v1/stream", headers=KEY) as ws:
        ready, _ = run_session(ws, frames[:5], hello=hello)

    history = client.get("/v1/subjects/viewer-1/history", headers=KEY).json()
    assert ready["storing"] is True and ready["session_id"] == "sess-1"
    assert history["frames"] == 5
    assert history["sessions"][0]["session_id"] == "sess-1"
    assert sum(history["counts"].values()) == 5

    client.delete("/v1/subjects/viewer-1", headers=KEY)
    assert client.get("/v1/subjects/viewer-1/history", headers=KEY).status_code == 404


def test_stream_without_consent_stores_nothing(
    client: TestClient, frames: list[bytes]
) -> None:
    hello = {"subject_id": "viewer-2", "consent": False}
    with client.websocket_connect("/v1/stream", headers=KEY) as ws:
        ready, _ = run_session(ws, frames[:3], hello=hello)

    assert ready["storing"] is False
    assert client.get("/v1/subjects/viewer-2/history", headers=KEY).status_code == 404


def test_erasure_during_a_stream_stops_its_storing(
    client: TestClient, frames: list[bytes]
) -> None:
    hello = {"subject_id": "viewer-3", "consent": True}
    with client.websocket_connect("/v1/stream", headers=KEY) as ws:
        ws.send_text(json.dumps(hello))
        ws.receive_json()
        ws.send_bytes(frames[0])
        ws.receive_json()
        client.delete("/v1/subjects/viewer-3", headers=KEY)
        for frame in frames[1:4]:
            ws.send_bytes(frame)
            ws.receive_json()
        ws.send_text(json.dumps({"type": "end"}))

    assert client.get("/v1/subjects/viewer-3/history", headers=KEY).status_code == 404


def test_sessions_over_the_limit_are_told_to_retry(client: TestClient) -> None:
    with (
        client.websocket_connect("/v1/stream", headers=KEY) as first,
        client.websocket_connect("/v1/stream", headers=KEY) as second,
    ):
        first.send_text("{}")
        second.send_text("{}")
        assert first.receive_json()["type"] == "ready"
        assert second.receive_json()["type"] == "ready"
        with client.websocket_connect("/v1/stream", headers=KEY) as third:
            third.send_text("{}")
            with pytest.raises(WebSocketDisconnect) as closed:
                third.receive_json()

    assert closed.value.code == 1013


def test_every_session_closes_its_pipeline(
    client: TestClient, frames: list[bytes]
) -> None:
    counters = client.app.state.service.counters  # type: ignore[attr-defined]
    for _ in range(5):
        with client.websocket_connect("/v1/stream", headers=KEY) as ws:
            run_session(ws, frames[:1], hello={})

    assert counters.sessions_active == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "JSON object"),
        ("{", "JSON object"),
        ('{"consent": "yes"}', "consent"),
        ('{"subject_id": 5}', "subject_id"),
    ],
    ids=["list", "broken", "consent-type", "subject-type"],
)
def test_parse_hello_rejects_malformed_options(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hello(text)


def test_stream_with_no_history_backend_says_it_stores_nothing(
    model_path: Path, frames: list[bytes]
) -> None:
    settings = Settings.model_validate(
        {
            "server": {"api_keys": [api_key_hash()]},
            "storage": {"backend": "none"},
        }
    )
    hello = {"subject_id": "viewer-4", "consent": True}
    with (
        TestClient(create_app(settings, model_path=model_path)) as test_client,
        test_client.websocket_connect("/v1/stream", headers=KEY) as ws,
    ):
        ready, answers = run_session(ws, frames[:2], hello=hello)

    assert ready["storing"] is False
    assert len(answers) == 2


# -- sessions side by side ------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_frames(sample_path: Callable[[str], Path]) -> list[bytes]:
    """18 frames of a still: two copies of single_face.jpg side by side (2 faces)."""
    with Image.open(sample_path("single_face.jpg")) as image:
        face = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    return [media.jpeg(media.grid(face, 1, 2))] * 18


def faces_by_frame(answers: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each answer as (frame, timestamp, faces as (track id, emotion, box))."""
    return [
        (
            a["frame"],
            a["timestamp_ms"],
            [(f["id"], f["emotion"], f["box"]) for f in a["faces"]],
        )
        for a in answers
    ]


def test_two_open_sessions_keep_their_own_tracks_and_timestamps(
    client: TestClient, frames: list[bytes], pair_frames: list[bytes]
) -> None:
    # B's clock lags A's: one landmarker shared by both would refuse B's frames.
    stamps = {"a": [i * 133 for i in range(18)], "b": [i * 50 for i in range(18)]}
    sent = {"a": frames, "b": pair_frames}
    alone = {}
    for name in ("a", "b"):
        with client.websocket_connect("/v1/stream", headers=KEY) as ws:
            _, answers = run_session(ws, sent[name], hello={}, timestamps=stamps[name])
        alone[name] = answers

    mixed: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    with (
        client.websocket_connect("/v1/stream", headers=KEY) as ws_a,
        client.websocket_connect("/v1/stream", headers=KEY) as ws_b,
    ):
        sockets = {"a": ws_a, "b": ws_b}
        for ws in sockets.values():
            ws.send_text("{}")
            ws.receive_json()
        for index in range(18):
            # Both frames are sent before either answer is read, so the two
            # sessions analyse at the same time.
            for name, ws in sockets.items():
                ws.send_text(json.dumps({"timestamp_ms": stamps[name][index]}))
                ws.send_bytes(sent[name][index])
            for name, ws in sockets.items():
                mixed[name].append(ws.receive_json())
        for ws in sockets.values():
            ws.send_text(json.dumps({"type": "end"}))

    for name in ("a", "b"):
        assert [m["type"] for m in mixed[name]] == ["result"] * 18, mixed[name]
        assert [m["frame"] for m in mixed[name]] == list(range(18))
        assert [m["timestamp_ms"] for m in mixed[name]] == stamps[name]
        assert faces_by_frame(mixed[name]) == faces_by_frame(alone[name])
    assert {len(m["faces"]) for m in mixed["a"]} == {1}
    assert {len(m["faces"]) for m in mixed["b"]} == {2}
    assert len({f["id"] for m in mixed["b"] for f in m["faces"]}) == 2
