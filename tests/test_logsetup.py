"""Tests for airctrl.logsetup on real files: format, rotation, compression, retention,
encryption and redaction."""

from __future__ import annotations

import gzip
import io
import json
import logging
import logging.handlers
import re
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from airctrl.config import LoggingSettings
from airctrl.errors import ConfigError
from airctrl.logsetup import configure_logging
from airctrl.secure import KEY_ENV_VAR, LineCipher, read_lines

LOGGER = logging.getLogger("airctrl.test_logsetup")


#: Every test here configures the root logger; put it back after each.
pytestmark = pytest.mark.usefixtures("root_logging_restored")


def _file_handler(
    handlers: list[logging.Handler],
) -> logging.handlers.TimedRotatingFileHandler:
    found = [
        h for h in handlers if isinstance(h, logging.handlers.TimedRotatingFileHandler)
    ]
    assert len(found) == 1
    return found[0]


def test_human_lines_carry_utc_time_level_logger_and_message() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="human"), stream=stream)

    LOGGER.info("camera %s opened", "door")

    line = stream.getvalue().strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
        r"INFO airctrl\.test_logsetup: camera door opened",
        line,
    )


def test_json_lines_are_one_object_each_with_extras() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=stream)

    LOGGER.warning("source %s lost", "cam1", extra={"source": "cam1"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        LOGGER.exception("failed")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "WARNING" and first["message"] == "source cam1 lost"
    assert first["logger"] == "airctrl.test_logsetup" and first["source"] == "cam1"
    assert first["ts"].endswith("Z")
    assert "RuntimeError: boom" in second["exc"]


def test_level_filters_lower_records() -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="WARNING"), stream=stream)

    LOGGER.info("hidden")
    LOGGER.warning("shown")

    assert "hidden" not in stream.getvalue() and "shown" in stream.getvalue()


def test_second_call_replaces_its_handlers_instead_of_doubling_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(LoggingSettings(), stream=first)
    configure_logging(LoggingSettings(), stream=second)

    LOGGER.info("once")

    assert first.getvalue() == "" and second.getvalue().count("once") == 1


@pytest.mark.parametrize(
    ("message", "secret", "kept"),
    [
        pytest.param(
            "open rtsp://admin:hunter2@10.0.0.5/live",
            "hunter2",
            "rtsp://***@10.0.0.5/live",
            id="url-credentials",
        ),
        pytest.param(
            "GET /v1/x?api_key=abc123&x=1", "abc123", "api_key=***", id="api-key-param"
        ),
        pytest.param(
            "header Authorization: Bearer eyJhbGciOi.x.y",
            "eyJhbGciOi",
            "Bearer ***",
            id="bearer-token",
        ),
        pytest.param(
            "subject jane.doe@example.com", "jane.doe", "***@***", id="email-address"
        ),
        pytest.param(
            "password: swordfish", "swordfish", "password: ***", id="password-pair"
        ),
    ],
)
def test_secrets_and_personal_identifiers_are_redacted(
    message: str, secret: str, kept: str
) -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(), stream=stream)

    LOGGER.info("%s", message)

    assert secret not in stream.getvalue()
    assert kept in stream.getvalue()


def test_forced_rollover_compresses_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "airctrl.log"
    handlers = configure_logging(LoggingSettings(file=path), stream=io.StringIO())

    LOGGER.info("before rollover")
    _file_handler(handlers).doRollover()
    LOGGER.info("after rollover")

    rotated = [p for p in path.parent.iterdir() if p != path]
    assert len(rotated) == 1
    assert re.fullmatch(r"airctrl\.log\.\d{4}-\d\d-\d\d\.gz", rotated[0].name)
    assert "before rollover" in gzip.decompress(rotated[0].read_bytes()).decode()
    current = path.read_text(encoding="utf-8")
    assert "after rollover" in current and "before rollover" not in current


def test_rollover_without_compression_keeps_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "airctrl.log"
    handlers = configure_logging(
        LoggingSettings(file=path, compress=False), stream=io.StringIO()
    )

    LOGGER.info("plain")
    _file_handler(handlers).doRollover()

    (rotated,) = [p for p in tmp_path.iterdir() if p != path]
    assert not rotated.name.endswith(".gz")
    assert "plain" in rotated.read_text(encoding="utf-8")


def test_retention_keeps_only_backup_count_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "airctrl.log"
    old_days = ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"]
    for day in old_days:
        (tmp_path / f"airctrl.log.{day}.gz").write_bytes(gzip.compress(day.encode()))
    unrelated = tmp_path / "other.txt"
    unrelated.write_text("keep me", encoding="utf-8")
    handlers = configure_logging(
        LoggingSettings(file=path, backup_count=2), stream=io.StringIO()
    )

    LOGGER.info("today")
    _file_handler(handlers).doRollover()

    names = sorted(p.name for p in tmp_path.glob("airctrl.log.*"))
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert names == sorted(["airctrl.log.2020-01-04.gz", f"airctrl.log.{today}.gz"])
    assert unrelated.exists()


def test_time_based_rotation_happens_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "airctrl.log"
    configure_logging(LoggingSettings(file=path, rotate_when="S"), stream=io.StringIO())

    LOGGER.info("first second")
    time.sleep(1.2)
    LOGGER.info("a later second")

    rotated = list(tmp_path.glob("airctrl.log.*.gz"))
    assert len(rotated) == 1
    assert "first second" in gzip.decompress(rotated[0].read_bytes()).decode()


def test_encrypted_log_file_round_trips_through_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Fernet.generate_key()
    monkeypatch.setenv(KEY_ENV_VAR, key.decode())
    path = tmp_path / "airctrl.log"
    console = io.StringIO()
    handlers = configure_logging(
        LoggingSettings(file=path, encrypt=True, format="json"), stream=console
    )

    LOGGER.info("rotated away")
    _file_handler(handlers).doRollover()
    LOGGER.info("still current")

    cipher = LineCipher([key])
    (rotated,) = tmp_path.glob("airctrl.log.*.gz")
    assert b"rotated" not in gzip.decompress(rotated.read_bytes())
    assert b"still current" not in path.read_bytes()
    assert [json.loads(x)["message"] for x in read_lines(rotated, cipher)] == [
        "rotated away"
    ]
    assert [json.loads(x)["message"] for x in read_lines(path, cipher)] == [
        "still current"
    ]
    assert "still current" in console.getvalue()  # the console is never encrypted


def test_encryption_without_a_key_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)

    with pytest.raises(ConfigError, match="no key"):
        configure_logging(LoggingSettings(file=tmp_path / "a.log", encrypt=True))


def test_unknown_rotation_schedule_is_rejected_by_settings() -> None:
    with pytest.raises(ValueError, match="rotate_when"):
        LoggingSettings(rotate_when="fortnightly")  # type: ignore[arg-type]
