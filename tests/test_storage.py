"""History stores against a real SQLite file and a real redis-server."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from apiserver import free_port, redis_server

from airctrl.config import StorageSettings
from airctrl.storage import (
    ConsentRequiredError,
    HistoryStore,
    InvalidSubjectError,
    RedisHistoryStore,
    SessionTally,
    SQLiteHistoryStore,
    StorageError,
    SubjectNotFoundError,
    open_store,
)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    if request.param == "sqlite":
        opened: HistoryStore = SQLiteHistoryStore(tmp_path / "h.sqlite3")
    else:
        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        opened = RedisHistoryStore(url)
    yield opened
    opened.close()


def tally(
    *labels_and_confidences: tuple[str, float], start: float = 100.0
) -> SessionTally:
    result = SessionTally()
    for step, (label, confidence) in enumerate(labels_and_confidences):
        result.add(label, confidence, start + step)
    return result


def test_merge_without_consent_is_refused_and_stores_nothing(
    store: HistoryStore,
) -> None:
    with pytest.raises(ConsentRequiredError):
        store.merge("s1", "a", tally(("happy", 0.9)))

    with pytest.raises(SubjectNotFoundError):
        store.history("s1")


def test_merges_add_up_per_session(store: HistoryStore) -> None:
    store.record_consent("s1", at=50.0)
    store.merge(
        "s1", "a", tally(("happy", 0.8), ("happy", 0.6), ("sad", 0.5), start=100)
    )
    store.merge("s1", "a", tally(("happy", 1.0), start=90))
    store.merge("s1", "b", tally(("neutral", 0.4), start=200))

    history = store.history("s1")

    assert history.consent_at == 50.0
    assert [s.session_id for s in history.sessions] == ["a", "b"]
    first = history.sessions[0]
    assert first.frames == 4
    assert first.counts == {"happy": 3, "sad": 1}
    assert first.mean_confidence == {
        "happy": pytest.approx(0.8),
        "sad": pytest.approx(0.5),
    }
    assert (first.first_seen, first.last_seen) == (90.0, 102.0)
    assert history.frames == 5
    assert history.counts["happy"] == 3 and history.counts["neutral"] == 1
    assert history.counts["fear"] == 0


def test_merge_clears_the_tally(store: HistoryStore) -> None:
    store.record_consent("s1")
    pending = tally(("happy", 0.8))

    store.merge("s1", "a", pending)

    assert pending.is_empty


def test_delete_subject_then_merge_is_refused(store: HistoryStore) -> None:
    store.record_consent("s1")
    store.merge("s1", "a", tally(("happy", 0.8)))

    assert store.delete_subject("s1") is True
    assert store.delete_subject("s1") is False
    with pytest.raises(ConsentRequiredError):
        store.merge("s1", "a", tally(("happy", 0.8)))
    assert not store.has_consent("s1")


def test_delete_subject_keeps_other_subjects(store: HistoryStore) -> None:
    for subject in ("s1", "s10", "other"):
        store.record_consent(subject)
        store.merge(subject, "a", tally(("happy", 0.8)))

    store.delete_subject("s1")

    assert store.history("s10").frames == 1
    assert store.history("other").frames == 1


@pytest.mark.parametrize(
    "bad",
    ["", "a b", "x" * 65, "a*", "{a}", "a:b"],
    ids=["empty", "space", "long", "glob", "braces", "colon"],
)
def test_malformed_ids_are_refused(store: HistoryStore, bad: str) -> None:
    with pytest.raises(InvalidSubjectError):
        store.record_consent(bad)


def test_sqlite_erasure_leaves_no_row_and_no_bytes(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = SQLiteHistoryStore(path)
    subject = "erase-me-4c2d"
    store.record_consent(subject)
    store.merge(subject, "session-9", tally(("happy", 0.8), ("sad", 0.3)))
    store.record_consent("keeper")
    store.merge("keeper", "a", tally(("happy", 0.8)))

    store.delete_subject(subject)
    store.close()

    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        rows = [(t, row) for t in tables for row in conn.execute(f"SELECT * FROM {t}")]
    assert len(tables) == 3
    assert rows and all(
        subject not in str(row) and "session-9" not in str(row) for _, row in rows
    )
    raw = path.read_bytes()
    assert subject.encode() not in raw and b"session-9" not in raw


def test_redis_erasure_leaves_no_key(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    store = RedisHistoryStore(redis_url)
    subject = "erase-me-9e1b"
    store.record_consent(subject)
    store.merge(subject, "s-a", tally(("happy", 0.8)))
    store.merge(subject, "s-b", tally(("angry", 0.7)))
    store.record_consent("keeper")
    store.merge("keeper", "a", tally(("happy", 0.8)))

    store.delete_subject(subject)

    keys = list(client.scan_iter(match="*", count=1000))
    assert keys, "the other subject's keys must remain"
    assert all(subject not in key for key in keys)
    for key in keys:
        values = client.hgetall(key) if client.type(key) == "hash" else {}
        assert all(subject not in f"{k}{v}" for k, v in values.items())
    store.close()


def test_redis_down_raises_storage_error_and_ping_is_false() -> None:
    store = RedisHistoryStore(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)

    assert store.ping() is False
    with pytest.raises(StorageError):
        store.record_consent("s1")


def test_unopenable_sqlite_path_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    with pytest.raises(StorageError):
        SQLiteHistoryStore(blocker / "sub" / "h.sqlite3")


def test_open_store_none_backend_keeps_nothing() -> None:
    store = open_store(StorageSettings(backend="none"))
    store.record_consent("s1")

    assert store.ping()
    assert not store.has_consent("s1")
    with pytest.raises(ConsentRequiredError):
        store.merge("s1", "a", tally(("happy", 0.9)))
    with pytest.raises(SubjectNotFoundError):
        store.history("s1")
