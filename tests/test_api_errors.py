"""airctrl.api.errors: what a failed request leaves in the log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiserver import KEY, app_client
from fastapi.testclient import TestClient

from airctrl.errors import AirctrlError

#: A subject id that appears nowhere else, so any trace of it in the log is a leak.
SUBJECT = "subject-e5r2wm"


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_path: Path
) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("api-errors")
    with app_client(folder, model_path, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("store exploded"), AirctrlError("store gave up")],
    ids=["unexpected-exception", "airctrl-error-500"],
)
def test_failed_request_log_names_the_route_not_the_subject(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
) -> None:
    def fail(subject_id: str) -> None:
        raise failure

    store = client.app.state.service.store  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "history", fail)

    with caplog.at_level(logging.INFO):
        response = client.get(f"/v1/subjects/{SUBJECT}/history", headers=KEY)

    # httpx is the test's own client; it logs the URL it requested.
    server_side = [r for r in caplog.records if not r.name.startswith("httpx")]
    errors = [r for r in server_side if r.name == "airctrl.api.errors"]
    assert response.status_code == 500
    assert [r.levelno for r in errors] == [logging.ERROR]
    assert "GET /v1/subjects/{subject_id}/history" in errors[0].getMessage()
    assert not [r for r in server_side if SUBJECT in caplog.handler.format(r)]
