"""airctrl.api.routes: uploads that do not decode are counted on ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import media
import numpy as np
import pytest
from apiserver import KEY, app_client
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

DECODE_FAILURES = "airctrl_face_detection_failures_total"


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_path: Path
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("api-routes")
    with app_client(folder, model_path) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def photo(sample_path: Callable[[str], Path]) -> bytes:
    return sample_path("single_face.jpg").read_bytes()


def decode_failures(client: TestClient, source: str = "api") -> float:
    """Read a decode-failure count from the ``/metrics`` page (0 if absent)."""
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == DECODE_FAILURES and sample.labels == {
                "source": source,
                "reason": "decode",
            }:
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize(
    ("make_upload", "status"),
    [
        (media.truncated, 422),
        (lambda photo: media.HTML_PAGE, 415),
        (lambda photo: b"", 400),
    ],
    ids=["truncated-jpeg", "html-page", "empty-file"],
)
def test_undecodable_upload_adds_one_decode_failure(
    client: TestClient,
    photo: bytes,
    make_upload: Callable[[bytes], bytes],
    status: int,
) -> None:
    before = decode_failures(client)

    response = client.post(
        "/v1/detect", files={"file": ("upload.jpg", make_upload(photo))}, headers=KEY
    )

    assert response.status_code == status
    assert decode_failures(client) - before == 1


def test_decodable_upload_adds_no_decode_failure(
    client: TestClient, photo: bytes
) -> None:
    before = decode_failures(client)

    response = client.post("/v1/detect", files={"file": ("a.jpg", photo)}, headers=KEY)

    assert response.status_code == 200
    assert decode_failures(client) == before


def test_each_undecodable_batch_item_adds_one_decode_failure(
    client: TestClient, photo: bytes
) -> None:
    before = decode_failures(client)
    files = [
        ("files", ("a.jpg", media.truncated(photo))),
        ("files", ("b.jpg", photo)),
        ("files", ("c.html", media.HTML_PAGE)),
    ]

    response = client.post("/v1/detect/batch", files=files, headers=KEY)

    assert [item["status"] for item in response.json()["items"]] == [422, 200, 415]
    assert decode_failures(client) - before == 2


@pytest.mark.parametrize(
    ("make_frame", "detail", "counted"),
    [
        (media.truncated, "truncated", 1),
        (lambda photo: media.jpeg(np.full((16, 16, 3), 128, np.uint8)), "16x16", 0),
    ],
    ids=["truncated-jpeg", "too-small-image"],
)
def test_stream_counts_only_undecodable_frames_as_decode_failures(
    client: TestClient,
    photo: bytes,
    make_frame: Callable[[bytes], bytes],
    detail: str,
    counted: int,
) -> None:
    before = decode_failures(client, source="stream")

    with client.websocket_connect("/v1/stream", headers=KEY) as ws:
        ws.send_bytes(make_frame(photo))  # the first frame opens the session
        assert ws.receive_json()["type"] == "ready"
        answer = ws.receive_json()
        ws.send_json({"type": "end"})

    assert answer["type"] == "error"
    assert detail in answer["detail"]
    assert decode_failures(client, source="stream") - before == counted
