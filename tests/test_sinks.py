"""Tests for airctrl.sinks: event shapes, CSV flattening, video size handling."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from airctrl.pipeline import FaceResult, FrameResult
from airctrl.sinks import CsvEventSink, JsonlEventSink, VideoSink, frame_events
from airctrl.types import EMOTIONS, BoundingBox, EmotionEstimate, HeadPose


def result(faces: int) -> FrameResult:
    probs = {name: 1 / len(EMOTIONS) for name in EMOTIONS}
    estimate = EmotionEstimate(
        "neutral", probs, probs["neutral"], (("brow raise", 0.1),)
    )
    items = tuple(
        FaceResult(
            i + 1,
            BoundingBox(10 * i, 0, 5, 5),
            estimate,
            estimate,
            HeadPose(1, 2, 3),
            False,
        )
        for i in range(faces)
    )
    return FrameResult(7, 233, 64, 48, items, source_id="cam")


def test_frame_events_one_per_face() -> None:
    events = frame_events(result(2))

    assert [e["event"] for e in events] == ["face", "face"]
    assert [e["face_id"] for e in events] == [1, 2]
    assert events[1]["box"] == [10, 0, 5, 5]
    assert events[0]["frame"] == 7 and events[0]["timestamp_ms"] == 233


def test_frame_events_marks_empty_frame() -> None:
    assert [e["event"] for e in frame_events(result(0))] == ["no_face"]


def test_jsonl_sink_flushes_each_write(tmp_path: Path) -> None:
    sink = JsonlEventSink(tmp_path / "e.jsonl")
    sink.write(frame_events(result(1)))

    written = (tmp_path / "e.jsonl").read_text(encoding="utf-8")  # before close
    sink.close()
    assert json.loads(written)["face_id"] == 1


def test_csv_sink_flattens_box_and_probabilities(tmp_path: Path) -> None:
    sink = CsvEventSink(tmp_path / "e.csv")
    sink.write(frame_events(result(1)))
    sink.close()

    rows = list(csv.DictReader((tmp_path / "e.csv").open(encoding="utf-8")))
    assert rows[0]["x"] == "0" and rows[0]["width"] == "5"
    assert float(rows[0]["p_happy"]) == pytest.approx(round(1 / 7, 4))
    assert rows[0]["evidence"] == "brow raise 0.1"


def test_video_sink_resizes_odd_frames_to_first_size(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "v.mp4", fps=10)
    sink.write(np.zeros((48, 64, 3), dtype=np.uint8))
    sink.write(np.zeros((100, 100, 3), dtype=np.uint8))
    sink.close()

    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    sizes = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        sizes.append(image.shape[:2])
    assert sizes == [(48, 64), (48, 64)]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"fps": 0}, "fps"), ({"fps": 5, "codec": "h264x"}, "codec")],
    ids=["zero-fps", "bad-codec"],
)
def test_video_sink_rejects_bad_options(
    tmp_path: Path, kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        VideoSink(tmp_path / "v.mp4", **kwargs)  # type: ignore[arg-type]
