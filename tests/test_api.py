"""The HTTP API via TestClient: uploads, hard cases, auth, limits, history."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import media
import numpy as np
import numpy.typing as npt
import pytest
from apiserver import API_KEY, KEY, api_key_hash
from fastapi.testclient import TestClient
from PIL import Image

from airctrl.api import create_app
from airctrl.api.auth import hash_key
from airctrl.config import Settings
from airctrl.errors import ConfigError

Array = npt.NDArray[np.uint8]


def make_settings(tmp: Path, **server: Any) -> Settings:
    return Settings.model_validate(
        {
            "server": {"api_keys": [api_key_hash()], **server},
            "storage": {
                "backend": "sqlite",
                "sqlite_path": str(tmp / "history.sqlite3"),
            },
            "detection": {"max_faces": 12},
        }
    )


@pytest.fixture(scope="module")
def api_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def client(api_dir: Path, model_path: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(api_dir), model_path=model_path)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def face(sample_path: Callable[[str], Path]) -> Array:
    with Image.open(sample_path("single_face.jpg")) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def upload(client: TestClient, data: bytes, **kwargs: Any) -> Any:
    return client.post(
        "/v1/detect", files={"file": ("upload.bin", data)}, headers=KEY, **kwargs
    )


# -- one image -----------------------------------------------------------------


def test_detect_finds_one_happy_face_with_evidence(
    client: TestClient, face: Array
) -> None:
    response = upload(client, media.jpeg(face))

    assert response.status_code == 200
    body = response.json()
    assert body["face_count"] == 1
    found = body["faces"][0]
    assert found["id"] == 0
    assert found["emotion"] == "happy"
    assert abs(sum(found["probabilities"].values()) - 1.0) < 0.01
    assert found["confidence"] == found["probabilities"]["happy"]
    # The face sits around (282, 288) in the 572x562 photo (see tests/media.py).
    x, y, w, h = found["box"]
    assert x < 282 < x + w and y < 288 < y + h
    assert isinstance(found["evidence"], list) and isinstance(
        found["quality_flags"], list
    )


def test_raw_image_body_gives_the_same_answer_as_multipart(
    client: TestClient, face: Array
) -> None:
    data = media.jpeg(face)

    raw = client.post(
        "/v1/detect", content=data, headers={**KEY, "Content-Type": "image/jpeg"}
    ).json()
    form = upload(client, data).json()

    assert raw["faces"] == form["faces"]


def test_content_is_decided_from_bytes_not_the_declared_type(
    client: TestClient, face: Array
) -> None:
    response = client.post(
        "/v1/detect",
        content=media.png(face),
        headers={**KEY, "Content-Type": "image/jpeg"},
    )

    assert response.status_code == 200
    assert response.json()["source_format"] == "PNG"


def test_text_content_type_is_refused_with_415(client: TestClient) -> None:
    response = client.post(
        "/v1/detect", content=b"hello", headers={**KEY, "Content-Type": "text/plain"}
    )

    assert response.status_code == 415
    assert "multipart" in response.json()["detail"]


def test_multipart_without_file_field_is_400(client: TestClient, face: Array) -> None:
    response = client.post(
        "/v1/detect", files={"picture": ("a.jpg", media.jpeg(face))}, headers=KEY
    )

    assert response.status_code == 400
    assert "'file'" in response.json()["detail"]


# -- the hard cases (/work/shared/cases), rebuilt from the sample photo --------------


def _case_inputs(face: Array, landscape: bytes) -> dict[str, bytes]:
    closeup = face[180:420, 180:380]
    return {
        "rgba": media.rgba_transparent_background(face)[0],
        "gray": media.png(np.asarray(Image.fromarray(face).convert("L"))),
        "rgb16": media.rgb48_png(face),
        "cmyk": media.cmyk_jpeg(face),
        "exif6": media.exif_oriented_jpeg(face, 6),
        "huge_small_face": media.jpeg(
            media.small_face_on_huge_canvas(face)[0], quality=80
        ),
        "tiny": media.png(face[:8, :8]),
        "truncated": media.truncated(media.jpeg(face)),
        "empty": b"",
        "html": media.HTML_PAGE,
        "animated_webp": media.animated([face, face[::-1].copy()], "WEBP"),
        "heic": media.heic(face),
        "half_face": media.jpeg(media.left_half_cut(face)),
        "roll45": media.jpeg(media.rotated(face, 45)),
        # Squeezed to 55% width: cheeks closer together, as on a head turned ~50 deg.
        "yaw": media.jpeg(cv2.resize(face, (314, 562), interpolation=cv2.INTER_AREA)),
        "grid12": media.jpeg(media.grid(face, 3, 4)),
        "closeup": media.jpeg(np.ascontiguousarray(closeup)),
        "dark": media.jpeg(media.darkened(face)),
        "landscape": landscape,
    }


@pytest.fixture(scope="module")
def cases(face: Array, sample_path: Callable[[str], Path]) -> dict[str, bytes]:
    landscape = sample_path("free-mountain-vector-01.jpg").read_bytes()
    return _case_inputs(face, landscape)


@pytest.fixture(scope="module")
def mp4_bytes(sample_path: Callable[[str], Path]) -> bytes:
    return sample_path("single_face.mp4").read_bytes()


HAPPY_ONE = {"status": 200, "faces": 1, "emotion": "happy"}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("rgba", HAPPY_ONE),
        ("gray", HAPPY_ONE),
        ("rgb16", HAPPY_ONE),
        ("cmyk", HAPPY_ONE),
        ("exif6", HAPPY_ONE),
        ("animated_webp", {**HAPPY_ONE, "warning": "animated"}),
        ("heic", HAPPY_ONE),
        ("roll45", HAPPY_ONE),
        ("closeup", HAPPY_ONE),
        ("landscape", {"status": 200, "faces": 0}),
        ("tiny", {"status": 422, "detail": "pixels"}),
        ("truncated", {"status": 422, "detail": "truncated"}),
        ("empty", {"status": 400, "detail": "empty"}),
        ("html", {"status": 415, "detail": "HTML"}),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_hard_case_gets_its_documented_answer(
    client: TestClient, cases: dict[str, bytes], case: str, expected: dict[str, Any]
) -> None:
    response = upload(client, cases[case])

    assert response.status_code == expected["status"], response.text
    body = response.json()
    if expected["status"] != 200:
        assert set(body) == {"detail"}
        assert expected["detail"].lower() in body["detail"].lower()
        return
    assert body["face_count"] == expected["faces"]
    if "emotion" in expected:
        assert [f["emotion"] for f in body["faces"]] == [expected["emotion"]]
    if "warning" in expected:
        assert any(expected["warning"] in w for w in body["warnings"])


def test_video_upload_is_refused_with_415_naming_video(
    client: TestClient, mp4_bytes: bytes
) -> None:
    response = upload(client, mp4_bytes)

    assert response.status_code == 415
    assert "video" in response.json()["detail"]


def test_exif_rotated_photo_box_is_in_upright_coordinates(
    client: TestClient, face: Array, cases: dict[str, bytes]
) -> None:
    upright = upload(client, media.jpeg(face)).json()["faces"][0]["box"]
    rotated = upload(client, cases["exif6"]).json()

    assert (rotated["width"], rotated["height"]) == (face.shape[1], face.shape[0])
    assert np.allclose(rotated["faces"][0]["box"], upright, atol=6)


@pytest.mark.usefixtures("root_logging_restored")
def test_exif_rotated_photo_gets_the_same_face_from_cli_and_http(
    client: TestClient,
    cases: dict[str, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airctrl.cli import main

    path = tmp_path / "c05.jpg"
    path.write_bytes(cases["exif6"])
    code = main(["analyze", "--no-progress", "--max-faces", "12", str(path)])
    (cli,) = json.loads(capsys.readouterr().out)["results"]
    http = upload(client, cases["exif6"]).json()

    assert code == 0
    assert (cli["width"], cli["height"]) == (http["width"], http["height"])
    assert [f["box"] for f in cli["faces"]] == [f["box"] for f in http["faces"]]
    assert [f["emotion"] for f in cli["faces"]] == ["happy"]
    assert [f["emotion"] for f in http["faces"]] == ["happy"]


def test_turned_face_is_flagged_and_never_a_confident_wrong_emotion(
    client: TestClient, cases: dict[str, bytes]
) -> None:
    response = upload(client, cases["yaw"])

    assert response.status_code == 200
    (found,) = response.json()["faces"]
    assert {"extreme_pose", "low_confidence"} & set(found["quality_flags"]), found
    if found["emotion"] != "happy":
        assert found["confidence"] < 0.5, found


def test_twelve_face_grid_reports_twelve_faces_mostly_happy(
    client: TestClient, cases: dict[str, bytes]
) -> None:
    body = upload(client, cases["grid12"]).json()

    assert body["face_count"] == 12
    assert sorted(f["id"] for f in body["faces"]) == list(range(12))
    assert sum(f["emotion"] == "happy" for f in body["faces"]) >= 10


def test_half_face_is_absent_or_marked_partial(
    client: TestClient, cases: dict[str, bytes]
) -> None:
    body = upload(client, cases["half_face"]).json()

    assert body["face_count"] in (0, 1)
    for found in body["faces"]:
        assert found["partial"] or found["confidence"] < 0.5 or found["quality_flags"]
        assert found["box"][0] >= 0


def test_dark_photo_is_found_or_flagged_as_poorly_lit(
    client: TestClient, cases: dict[str, bytes]
) -> None:
    body = upload(client, cases["dark"]).json()

    if body["face_count"] == 0:
        assert any("light" in w for w in body["warnings"])
    else:
        assert body["faces"][0]["emotion"] == "happy"


def test_small_face_in_huge_photo_is_found_or_reported_as_maybe_too_small(
    client: TestClient, cases: dict[str, bytes]
) -> None:
    body = upload(client, cases["huge_small_face"]).json()

    assert (body["width"], body["height"]) == (6000, 4000)
    if body["face_count"] == 0:
        assert any("too small" in w or "smaller" in w for w in body["warnings"])
    else:
        x, _y, w, _h = body["faces"][0]["box"]
        assert 6000 * 0.62 <= x + w / 2 <= 6000 * 0.62 + 260


def test_server_answers_correctly_after_every_bad_input(
    client: TestClient, cases: dict[str, bytes], face: Array
) -> None:
    for name in ("empty", "html", "truncated", "tiny"):
        assert upload(client, cases[name]).status_code < 500

    assert upload(client, media.jpeg(face)).json()["face_count"] == 1


# -- batch -------------------------------------------------------------------------


def test_batch_returns_each_item_result_or_error_in_order(
    client: TestClient, face: Array, cases: dict[str, bytes]
) -> None:
    files = [
        ("files", ("one.jpg", media.jpeg(face))),
        ("files", ("empty.jpg", b"")),
        ("files", ("page.jpg", media.HTML_PAGE)),
        ("files", ("grid.jpg", cases["grid12"])),
    ]
    response = client.post("/v1/detect/batch", files=files, headers=KEY)

    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["status"] for i in items] == [200, 400, 415, 200]
    assert [i["filename"] for i in items] == [
        "one.jpg",
        "empty.jpg",
        "page.jpg",
        "grid.jpg",
    ]
    assert items[0]["result"]["face_count"] == 1
    assert items[3]["result"]["face_count"] == 12
    assert "empty" in items[1]["error"]


def test_batch_without_files_is_400(client: TestClient) -> None:
    response = client.post("/v1/detect/batch", data={"x": "1"}, headers=KEY)

    assert response.status_code == 400


# -- size limits ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limit_client(api_dir: Path, model_path: Path) -> Iterator[TestClient]:
    settings = make_settings(api_dir / "small", max_upload_bytes=50_000)
    (api_dir / "small").mkdir(exist_ok=True)
    with TestClient(create_app(settings, model_path=model_path)) as test_client:
        yield test_client


def test_declared_oversize_body_is_refused_with_413(
    small_limit_client: TestClient,
) -> None:
    response = small_limit_client.post(
        "/v1/detect",
        content=b"\xff\xd8" + b"0" * 200_000,
        headers={**KEY, "Content-Type": "image/jpeg"},
    )

    assert response.status_code == 413
    assert response.json()["detail"] == "upload too large: limit is 50000 bytes"


def test_refused_upload_is_counted_under_its_route(
    small_limit_client: TestClient,
) -> None:
    from airctrl.metrics import REGISTRY

    labels = {"method": "POST", "route": "/v1/detect", "status": "413"}
    before = REGISTRY.get_sample_value("airctrl_http_requests_total", labels) or 0.0

    small_limit_client.post(
        "/v1/detect",
        content=b"0" * 200_000,
        headers={**KEY, "Content-Type": "image/jpeg"},
    )

    after = REGISTRY.get_sample_value("airctrl_http_requests_total", labels) or 0.0
    assert after - before == 1


def test_chunked_oversize_body_is_cut_off_with_413(
    small_limit_client: TestClient,
) -> None:
    # TestClient buffers the body, so this checks the counting path only; the
    # early cut-off over a real socket is tested in test_api_server.py.
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"0" * 10_000

    response = small_limit_client.post(
        "/v1/detect", content=chunks(), headers={**KEY, "Content-Type": "image/jpeg"}
    )

    assert response.status_code == 413


def test_upload_within_limit_is_analysed(
    small_limit_client: TestClient, face: Array
) -> None:
    data = media.jpeg(face, quality=70)
    assert len(data) < 50_000

    assert upload(small_limit_client, data).status_code == 200


# -- authentication ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong-key-0123456789"}, 401),
        ({"Authorization": "Bearer wrong-key-0123456789"}, 401),
        ({"X-API-Key": API_KEY}, 200),
        ({"Authorization": f"Bearer {API_KEY}"}, 200),
    ],
    ids=["none", "wrong-header", "wrong-bearer", "header", "bearer"],
)
def test_detect_needs_a_valid_api_key(
    client: TestClient, face: Array, headers: dict[str, str], status: int
) -> None:
    response = client.post(
        "/v1/detect", files={"file": ("a.jpg", media.jpeg(face))}, headers=headers
    )

    assert response.status_code == status


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/static/app.js",
        "/static/style.css",
        "/openapi.json",
        "/docs",
    ],
)
def test_open_paths_need_no_key(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/subjects/s1/history"),
        ("delete", "/v1/subjects/s1"),
        ("put", "/v1/subjects/s1/consent"),
    ],
    ids=["history", "delete", "consent"],
)
def test_subject_routes_need_a_key(client: TestClient, method: str, path: str) -> None:
    assert getattr(client, method)(path).status_code == 401


def test_key_removed_from_keys_file_is_revoked(
    tmp_path: Path, model_path: Path, face: Array
) -> None:
    other = "second-key-abcdefghijklmnop"
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(
        f"# test keys\nalice {api_key_hash()}\nbob {hash_key(other)}\n"
    )
    settings = Settings.model_validate(
        {
            "server": {"api_keys_file": str(keys_file)},
            "storage": {"backend": "none"},
        }
    )
    with TestClient(create_app(settings, model_path=model_path)) as test_client:

        def status(key: str) -> int:
            return int(
                test_client.get(
                    "/v1/subjects/x/history", headers={"X-API-Key": key}
                ).status_code
            )

        assert status(other) == 404 and status(API_KEY) == 404
        keys_file.write_text(f"alice {api_key_hash()}\n")

        assert status(other) == 401
        assert status(API_KEY) == 404


def test_plain_key_in_config_is_refused_at_start(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"server": {"api_keys": ["my-plain-secret-key-123"]}}
    )

    with pytest.raises(ConfigError, match="hash"):
        create_app(settings)


def test_auth_required_without_keys_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="no API key"):
        create_app(Settings())


def test_key_hash_is_salted_and_verifies() -> None:
    first, second = hash_key(API_KEY), hash_key(API_KEY)

    assert first != second
    assert API_KEY not in first
    assert first.startswith("scrypt$")


def test_kiosk_key_is_given_to_the_page_and_accepted(
    tmp_path: Path, model_path: Path
) -> None:
    kiosk = tmp_path / "kiosk.key"
    kiosk.write_text("kiosk-key-abcdefghijklmnop\n")
    settings = Settings.model_validate(
        {
            "server": {"kiosk_key_file": str(kiosk)},
            "storage": {"backend": "none"},
        }
    )
    with TestClient(create_app(settings, model_path=model_path)) as test_client:
        config = test_client.get("/web-config.json").json()
        answer = test_client.get(
            "/v1/subjects/x/history", headers={"X-API-Key": config["kiosk_key"]}
        )

    assert config["kiosk_key"] == "kiosk-key-abcdefghijklmnop"
    assert answer.status_code == 404


# -- subjects, consent, history, erasure ---------------------------------------------


def test_detect_with_subject_but_no_consent_stores_nothing(
    client: TestClient, face: Array
) -> None:
    body = upload(client, media.jpeg(face), params={"subject_id": "no-consent"}).json()

    assert any("consent" in w for w in body["warnings"])
    assert client.get("/v1/subjects/no-consent/history", headers=KEY).status_code == 404


def test_history_aggregates_detections_after_consent(
    client: TestClient, face: Array
) -> None:
    assert client.put("/v1/subjects/alice/consent", headers=KEY).status_code == 200
    for _ in range(3):
        upload(
            client, media.jpeg(face), params={"subject_id": "alice", "session_id": "s1"}
        )

    history = client.get("/v1/subjects/alice/history", headers=KEY).json()

    assert history["frames"] == 3
    assert history["counts"]["happy"] == 3
    (session,) = history["sessions"]
    assert session["session_id"] == "s1"
    assert session["counts"] == {"happy": 3}
    assert 0 < session["mean_confidence"]["happy"] <= 1
    assert session["first_seen"] <= session["last_seen"]


def _sqlite_contains(path: Path, needle: str) -> list[str]:
    """Return 'table.column' for every cell in every table that contains ``needle``."""
    hits = []
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            for row in conn.execute(f"SELECT * FROM {table}"):
                hits += [
                    f"{table}.{c}" for c, v in zip(columns, row) if needle in str(v)
                ]
    return hits


def test_delete_subject_leaves_no_trace_in_sqlite(
    client: TestClient, face: Array, api_dir: Path
) -> None:
    subject = "erase-me-7f3a"
    client.put(f"/v1/subjects/{subject}/consent", headers=KEY)
    upload(client, media.jpeg(face), params={"subject_id": subject})
    database = api_dir / "history.sqlite3"
    assert _sqlite_contains(database, subject)

    response = client.delete(f"/v1/subjects/{subject}", headers=KEY)

    assert response.json() == {"subject_id": subject, "deleted": True}
    assert _sqlite_contains(database, subject) == []
    assert subject.encode() not in database.read_bytes()
    assert client.get(f"/v1/subjects/{subject}/history", headers=KEY).status_code == 404


def test_detect_after_erasure_stores_nothing_until_consent_again(
    client: TestClient, face: Array
) -> None:
    client.put("/v1/subjects/bob/consent", headers=KEY)
    client.delete("/v1/subjects/bob", headers=KEY)

    body = upload(client, media.jpeg(face), params={"subject_id": "bob"}).json()

    assert any("consent" in w for w in body["warnings"])
    assert client.get("/v1/subjects/bob/history", headers=KEY).status_code == 404


@pytest.mark.parametrize(
    "subject",
    ["a b", "x" * 65, "semi;colon", "%2e%2e"],
    ids=["space", "too-long", "semicolon", "dots-escaped"],
)
def test_malformed_subject_id_is_422(client: TestClient, subject: str) -> None:
    response = client.get(f"/v1/subjects/{subject}/history", headers=KEY)

    assert response.status_code in (404, 422)
    assert set(response.json()) == {"detail"}


# -- errors, docs, metrics -----------------------------------------------------


def test_error_bodies_hold_no_traceback_or_path(
    client: TestClient, cases: dict[str, bytes]
) -> None:
    bodies = [
        upload(client, cases[name]).text
        for name in ("empty", "html", "truncated", "tiny")
    ]
    bodies.append(client.get("/v1/nothing-here", headers=KEY).text)

    for text in bodies:
        assert "Traceback" not in text
        assert "/work" not in text and "site-packages" not in text and ".py" not in text


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {
        "/v1/detect",
        "/v1/detect/batch",
        "/v1/subjects/{subject_id}/history",
        "/v1/subjects/{subject_id}",
        "/healthz",
        "/readyz",
    } <= set(paths)


def test_metrics_count_http_requests_by_route_template(client: TestClient) -> None:
    client.get("/v1/subjects/metrics-probe/history", headers=KEY)

    text = client.get("/metrics").text

    assert 'route="/v1/subjects/{subject_id}/history"' in text
    assert "airctrl_http_requests_total" in text
    assert "metrics-probe" not in text


def _settings_with_unreachable_redis() -> Settings:
    from apiserver import free_port

    return Settings.model_validate(
        {
            "server": {"api_keys": [api_key_hash()]},
            "storage": {
                "backend": "redis",
                "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            },
        }
    )


def test_readyz_is_503_when_the_store_is_unreachable(model_path: Path) -> None:
    settings = _settings_with_unreachable_redis()
    with TestClient(create_app(settings, model_path=model_path)) as test_client:
        response = test_client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "model_loaded": True,
        "store_reachable": False,
    }


def test_history_route_answers_503_when_store_is_down(model_path: Path) -> None:
    settings = _settings_with_unreachable_redis()
    with TestClient(create_app(settings, model_path=model_path)) as test_client:
        response = test_client.get("/v1/subjects/s1/history", headers=KEY)

    assert response.status_code == 503
    assert "Redis" in response.json()["detail"]


def test_docs_page_loads_its_assets_from_this_server(client: TestClient) -> None:
    page = client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)

    assert assets and all(a.startswith("/docs-assets/") for a in assets)
    for asset in assets:
        assert client.get(asset).status_code == 200


def test_web_page_holds_consent_banner_and_ships_no_remote_scripts(
    client: TestClient,
) -> None:
    page = client.get("/").text
    script = client.get("/static/app.js").text

    assert 'id="consent-accept"' in page and 'id="consent-decline"' in page
    assert "http://" not in page + script and "https://" not in page + script
    assert "getUserMedia" in script and "/v1/stream" in script


# -- Redis backend through the API --------------------------------------------------


@pytest.fixture(scope="module")
def redis_client(api_dir: Path, model_path: Path) -> Iterator[tuple[TestClient, str]]:
    from apiserver import redis_server

    (api_dir / "redis").mkdir()
    with redis_server(api_dir / "redis") as url:
        settings = Settings.model_validate(
            {
                "server": {"api_keys": [api_key_hash()]},
                "storage": {"backend": "redis", "redis_url": url},
            }
        )
        with TestClient(create_app(settings, model_path=model_path)) as test_client:
            yield test_client, url


def test_delete_subject_leaves_no_key_in_redis(
    redis_client: tuple[TestClient, str], face: Array
) -> None:
    import redis

    client, url = redis_client
    subject = "erase-me-r3d1"
    client.put(f"/v1/subjects/{subject}/consent", headers=KEY)
    client.put("/v1/subjects/keeper/consent", headers=KEY)
    for who in (subject, "keeper"):
        upload(client, media.jpeg(face), params={"subject_id": who})
    assert (
        client.get(f"/v1/subjects/{subject}/history", headers=KEY).json()["frames"] == 1
    )

    client.delete(f"/v1/subjects/{subject}", headers=KEY)

    raw = redis.Redis.from_url(url, decode_responses=True)
    keys = list(raw.scan_iter(match="*", count=1000))
    assert keys  # the other subject is still there
    assert [k for k in keys if subject in k] == []
    values = [raw.dump(k) or b"" for k in keys]
    assert all(subject.encode() not in v for v in values)
    assert client.get(f"/v1/subjects/{subject}/history", headers=KEY).status_code == 404


# -- the serve command ----------------------------------------------------------------


def test_serve_hash_key_prints_a_hash_that_verifies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airctrl.api.auth import parse_key_hash, verify_key
    from airctrl.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(API_KEY + "\n"))

    code = main(["serve", "--hash-key"])

    printed = capsys.readouterr().out
    assert code == 0
    assert API_KEY not in printed
    record = parse_key_hash(printed.split("hash:", 1)[1].strip())
    assert verify_key(API_KEY, record)
    assert not verify_key("another-key-0123456789", record)


def test_serve_refuses_tls_cert_without_key(tmp_path: Path) -> None:
    from airctrl.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        "server:\n"
        f"  api_keys: ['{api_key_hash()}']\n"
        f"  tls_cert_file: {tmp_path / 'cert.pem'}\n"
    )

    assert main(["--config", str(config), "serve"]) == 2


def test_batch_marks_an_oversize_item_413_and_analyses_the_rest(
    small_limit_client: TestClient, face: Array
) -> None:
    big = media.png(np.tile(face, (2, 2, 1)))
    small = media.jpeg(face, quality=70)
    assert len(big) > 50_000 > len(small)

    response = small_limit_client.post(
        "/v1/detect/batch",
        files=[("files", ("big.png", big)), ("files", ("small.jpg", small))],
        headers=KEY,
    )

    items = response.json()["items"]
    assert [i["status"] for i in items] == [413, 200]
    assert items[1]["result"]["face_count"] == 1


def test_batch_with_more_files_than_allowed_is_400(
    tmp_path: Path, model_path: Path, face: Array
) -> None:
    settings = make_settings(tmp_path, max_batch_items=2)
    files = [("files", (f"{n}.jpg", media.jpeg(face[:64, :64]))) for n in range(3)]
    with TestClient(create_app(settings, model_path=model_path)) as test_client:
        response = test_client.post("/v1/detect/batch", files=files, headers=KEY)

    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
