"""Per-subject emotion history: aggregated counts only, in SQLite or Redis.

A subject is a pseudonymous id a client chooses (never a name or a face). The
store keeps, per subject and session: frames seen, a count and a confidence sum
per emotion, and the first and last time the subject was seen. It never keeps
frames, landmarks or boxes. Nothing is written for a subject until consent has
been recorded for it, and :meth:`HistoryStore.delete_subject` removes every
trace (consent record included) so a later write is refused until consent is
given again.

SQLite (one file, default) suits one host; Redis suits several workers or hosts
sharing state. Both are driven through the same :class:`HistoryStore` protocol.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from airctrl.config import StorageSettings
from airctrl.errors import AirctrlError
from airctrl.types import EMOTIONS

__all__ = [
    "ConsentRequiredError",
    "HistoryStore",
    "InvalidSubjectError",
    "NullHistoryStore",
    "RedisHistoryStore",
    "SQLiteHistoryStore",
    "SessionHistory",
    "SessionTally",
    "StorageError",
    "SubjectHistory",
    "SubjectNotFoundError",
    "open_store",
    "validate_subject_id",
]

logger = logging.getLogger(__name__)

#: Subject and session ids: short opaque tokens, so they are safe in SQL, Redis
#: keys and URLs, and too short to smuggle a name plus a date of birth.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: Prefix of every Redis key this module writes.
REDIS_PREFIX = "airctrl"


class StorageError(AirctrlError):
    """The history store could not be reached or refused an operation."""

    http_status = 503


class ConsentRequiredError(AirctrlError):
    """History was about to be written for a subject without recorded consent."""

    http_status = 409


class SubjectNotFoundError(AirctrlError):
    """No history (and no consent record) exists for the subject."""

    http_status = 404


class InvalidSubjectError(AirctrlError):
    """A subject or session id does not match :data:`ID_PATTERN`."""

    http_status = 422


def validate_subject_id(value: str, *, what: str = "subject id") -> str:
    """Return ``value`` if it is a valid id, else raise InvalidSubjectError."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise InvalidSubjectError(
            f"{what}: expected 1-64 characters from A-Z a-z 0-9 _ . -"
        )
    return value


@dataclass
class SessionTally:
    """Emotion counts gathered in memory for one subject and session, then merged.

    Times are Unix seconds. ``counts`` and ``confidence_sums`` are keyed by
    emotion label. Call :meth:`clear` after merging it into a store.
    """

    frames: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    confidence_sums: dict[str, float] = field(default_factory=dict)
    first_seen: float | None = None
    last_seen: float | None = None

    def add(self, label: str, confidence: float, seen_at: float) -> None:
        """Count one frame in which the subject showed ``label``."""
        self.frames += 1
        self.counts[label] = self.counts.get(label, 0) + 1
        self.confidence_sums[label] = self.confidence_sums.get(label, 0.0) + float(
            confidence
        )
        if self.first_seen is None or seen_at < self.first_seen:
            self.first_seen = seen_at
        if self.last_seen is None or seen_at > self.last_seen:
            self.last_seen = seen_at

    @property
    def is_empty(self) -> bool:
        """True when nothing has been added since the last clear."""
        return self.frames == 0

    def clear(self) -> None:
        """Forget everything added so far."""
        self.frames = 0
        self.counts.clear()
        self.confidence_sums.clear()
        self.first_seen = None
        self.last_seen = None


@dataclass(frozen=True)
class SessionHistory:
    """Aggregated stats of one session of a subject (times in Unix seconds)."""

    session_id: str
    frames: int
    counts: dict[str, int]
    mean_confidence: dict[str, float]
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class SubjectHistory:
    """Every session stored for one subject, plus totals over them."""

    subject_id: str
    consent_at: float
    sessions: tuple[SessionHistory, ...]

    @property
    def frames(self) -> int:
        """Frames counted over all sessions."""
        return sum(s.frames for s in self.sessions)

    @property
    def counts(self) -> dict[str, int]:
        """Frames per emotion over all sessions (every emotion present, maybe 0)."""
        totals = {label: 0 for label in EMOTIONS}
        for session in self.sessions:
            for label, count in session.counts.items():
                totals[label] = totals.get(label, 0) + count
        return totals


class HistoryStore(Protocol):
    """What the API needs from a history backend."""

    def ping(self) -> bool:
        """Return True when the backend answers."""
        ...

    def record_consent(self, subject_id: str, *, at: float | None = None) -> None:
        """Record that the subject agreed to have aggregated history kept."""
        ...

    def has_consent(self, subject_id: str) -> bool:
        """Return True when consent is on record for the subject."""
        ...

    def merge(self, subject_id: str, session_id: str, tally: SessionTally) -> None:
        """Add ``tally`` to the stats (ConsentRequiredError without consent)."""
        ...

    def history(self, subject_id: str) -> SubjectHistory:
        """Return the subject's stored stats (raises SubjectNotFoundError)."""
        ...

    def delete_subject(self, subject_id: str) -> bool:
        """Remove every trace of the subject; return False when nothing was stored."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _mean(sums: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    return {
        label: round(sums.get(label, 0.0) / count, 4)
        for label, count in counts.items()
        if count > 0
    }


class NullHistoryStore:
    """A store that keeps nothing (``storage.backend: none``); always reachable."""

    def ping(self) -> bool:
        """Always True."""
        return True

    def record_consent(self, subject_id: str, *, at: float | None = None) -> None:
        """Accept and forget."""
        validate_subject_id(subject_id)

    def has_consent(self, subject_id: str) -> bool:
        """Always False: nothing is kept."""
        return False

    def merge(self, subject_id: str, session_id: str, tally: SessionTally) -> None:
        """Drop the tally and say nothing was stored."""
        tally.clear()
        raise ConsentRequiredError("no history is kept (storage.backend is none)")

    def history(self, subject_id: str) -> SubjectHistory:
        """Always raise SubjectNotFoundError."""
        validate_subject_id(subject_id)
        raise SubjectNotFoundError("no history is kept (storage.backend is none)")

    def delete_subject(self, subject_id: str) -> bool:
        """Nothing to delete."""
        validate_subject_id(subject_id)
        return False

    def close(self) -> None:
        """Nothing to release."""


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    subject_id TEXT PRIMARY KEY,
    consent_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    subject_id TEXT NOT NULL REFERENCES subjects(subject_id) ON DELETE CASCADE,
    session_id TEXT NOT NULL,
    frames INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (subject_id, session_id)
);
CREATE TABLE IF NOT EXISTS emotion_counts (
    subject_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    emotion TEXT NOT NULL,
    frames INTEGER NOT NULL,
    confidence_sum REAL NOT NULL,
    PRIMARY KEY (subject_id, session_id, emotion),
    FOREIGN KEY (subject_id, session_id)
        REFERENCES sessions(subject_id, session_id) ON DELETE CASCADE
);
"""


class SQLiteHistoryStore:
    """History in one SQLite file, safe for several threads and worker processes.

    Deleted rows are overwritten on disk (``secure_delete``), so an erased
    subject's id does not linger in free pages of the file.

    Limitation: SQLite serialises writers; with many workers streaming at once,
    writes queue behind a file lock (up to ``busy_timeout``). Use Redis then.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path),
                check_same_thread=False,
                isolation_level=None,
                timeout=busy_timeout_ms / 1000,
            )
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA secure_delete = ON")
            self._conn.executescript(_SQLITE_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(
                f"history database {self.path} cannot be opened: {exc}"
            ) from None
        logger.info("History store: SQLite file %s", self.path)

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"history database error: {exc}") from None

    def ping(self) -> bool:
        """Return True when the file answers a trivial query."""
        try:
            self._execute("SELECT 1")
        except StorageError:
            return False
        return True

    def record_consent(self, subject_id: str, *, at: float | None = None) -> None:
        """Record consent now (keeps the first consent time when already on record)."""
        validate_subject_id(subject_id)
        self._execute(
            "INSERT OR IGNORE INTO subjects (subject_id, consent_at) VALUES (?, ?)",
            (subject_id, time.time() if at is None else at),
        )

    def has_consent(self, subject_id: str) -> bool:
        """Return True when the subject has a consent row."""
        validate_subject_id(subject_id)
        rows = self._execute(
            "SELECT 1 FROM subjects WHERE subject_id = ?", (subject_id,)
        )
        return bool(rows)

    def merge(self, subject_id: str, session_id: str, tally: SessionTally) -> None:
        """Add ``tally`` in one transaction, only if consent is on record.

        Raises:
            ConsentRequiredError: no consent row (never given, or erased).
        """
        validate_subject_id(subject_id)
        validate_subject_id(session_id, what="session id")
        if tally.is_empty or tally.first_seen is None or tally.last_seen is None:
            return
        with self._lock:
            try:
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    found = cur.execute(
                        "SELECT 1 FROM subjects WHERE subject_id = ?", (subject_id,)
                    ).fetchone()
                    if not found:
                        raise ConsentRequiredError(
                            "no consent on record for this subject; nothing stored"
                        )
                    cur.execute(
                        "INSERT INTO sessions VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (subject_id, session_id) DO UPDATE SET "
                        "frames = frames + excluded.frames, "
                        "first_seen = min(first_seen, excluded.first_seen), "
                        "last_seen = max(last_seen, excluded.last_seen)",
                        (
                            subject_id,
                            session_id,
                            tally.frames,
                            tally.first_seen,
                            tally.last_seen,
                        ),
                    )
                    for label, count in tally.counts.items():
                        cur.execute(
                            "INSERT INTO emotion_counts VALUES (?, ?, ?, ?, ?) "
                            "ON CONFLICT (subject_id, session_id, emotion) "
                            "DO UPDATE SET "
                            "frames = frames + excluded.frames, "
                            "confidence_sum = confidence_sum + excluded.confidence_sum",
                            (
                                subject_id,
                                session_id,
                                label,
                                count,
                                tally.confidence_sums.get(label, 0.0),
                            ),
                        )
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"history database error: {exc}") from None
        tally.clear()

    def history(self, subject_id: str) -> SubjectHistory:
        """Return the subject's sessions, oldest first."""
        validate_subject_id(subject_id)
        subject = self._execute(
            "SELECT consent_at FROM subjects WHERE subject_id = ?", (subject_id,)
        )
        if not subject:
            raise SubjectNotFoundError("no history for this subject")
        sessions = self._execute(
            "SELECT session_id, frames, first_seen, last_seen FROM sessions "
            "WHERE subject_id = ? ORDER BY first_seen",
            (subject_id,),
        )
        counts = self._execute(
            "SELECT session_id, emotion, frames, confidence_sum FROM emotion_counts "
            "WHERE subject_id = ?",
            (subject_id,),
        )
        per_session: dict[str, tuple[dict[str, int], dict[str, float]]] = {}
        for session_id, emotion, frames, confidence_sum in counts:
            c, s = per_session.setdefault(session_id, ({}, {}))
            c[emotion] = int(frames)
            s[emotion] = float(confidence_sum)
        result = []
        for session_id, frames, first_seen, last_seen in sessions:
            c, s = per_session.get(session_id, ({}, {}))
            result.append(
                SessionHistory(
                    session_id, int(frames), c, _mean(s, c), first_seen, last_seen
                )
            )
        return SubjectHistory(subject_id, float(subject[0][0]), tuple(result))

    def delete_subject(self, subject_id: str) -> bool:
        """Delete the subject's rows from every table in one transaction."""
        validate_subject_id(subject_id)
        with self._lock:
            try:
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                deleted = 0
                for table in ("emotion_counts", "sessions", "subjects"):
                    cur.execute(
                        f"DELETE FROM {table} WHERE subject_id = ?", (subject_id,)
                    )
                    deleted += cur.rowcount
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"history database error: {exc}") from None
        return deleted > 0

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


# Adds a tally to a session hash only while the subject's consent key exists, so
# a worker flushing after an erasure elsewhere cannot bring the subject back.
# KEYS: consent, sessions set, session hash. ARGV: session id, frames, first,
# last, then label/count/confidence-sum triples.
_REDIS_MERGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'frames', ARGV[2])
local first = redis.call('HGET', KEYS[3], 'first_seen')
if (not first) or tonumber(ARGV[3]) < tonumber(first) then
  redis.call('HSET', KEYS[3], 'first_seen', ARGV[3])
end
local last = redis.call('HGET', KEYS[3], 'last_seen')
if (not last) or tonumber(ARGV[4]) > tonumber(last) then
  redis.call('HSET', KEYS[3], 'last_seen', ARGV[4])
end
for i = 5, #ARGV, 3 do
  redis.call('HINCRBY', KEYS[3], 'count:' .. ARGV[i], ARGV[i + 1])
  redis.call('HINCRBYFLOAT', KEYS[3], 'confsum:' .. ARGV[i], ARGV[i + 2])
end
return 1
"""


class RedisHistoryStore:
    """History in Redis, shared by every worker and host pointing at it.

    Keys per subject share the hash tag ``{subject}`` so they live on one slot
    in a cluster: ``airctrl:{s}:consent`` (string, consent time),
    ``airctrl:{s}:sessions`` (set of session ids) and
    ``airctrl:{s}:session:<id>`` (hash of counters).
    """

    def __init__(self, url: str, *, timeout_seconds: float = 2.0) -> None:
        import redis

        self.url = url
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            decode_responses=True,
        )
        self._merge = self._client.register_script(_REDIS_MERGE)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        logger.info("History store: Redis at %s", _redact_url(url))

    @staticmethod
    def _key(subject_id: str, *parts: str) -> str:
        return ":".join((REDIS_PREFIX, "{" + subject_id + "}", *parts))

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise StorageError(
                f"Redis history store unavailable: {type(exc).__name__}"
            ) from None

    def ping(self) -> bool:
        """Return True when Redis answers PING."""
        try:
            return bool(self._client.ping())
        except self._errors:
            return False

    def record_consent(self, subject_id: str, *, at: float | None = None) -> None:
        """Record consent (keeps the first consent time when already on record)."""
        validate_subject_id(subject_id)
        stamp = time.time() if at is None else at
        self._call(
            self._client.set, self._key(subject_id, "consent"), repr(stamp), nx=True
        )

    def has_consent(self, subject_id: str) -> bool:
        """Return True when the consent key exists."""
        validate_subject_id(subject_id)
        return bool(self._call(self._client.exists, self._key(subject_id, "consent")))

    def merge(self, subject_id: str, session_id: str, tally: SessionTally) -> None:
        """Add ``tally`` atomically, only while consent is on record.

        Raises:
            ConsentRequiredError: no consent key (never given, or erased).
        """
        validate_subject_id(subject_id)
        validate_subject_id(session_id, what="session id")
        if tally.is_empty or tally.first_seen is None or tally.last_seen is None:
            return
        args: list[Any] = [
            session_id,
            tally.frames,
            repr(tally.first_seen),
            repr(tally.last_seen),
        ]
        for label, count in tally.counts.items():
            args += [label, count, repr(tally.confidence_sums.get(label, 0.0))]
        keys = [
            self._key(subject_id, "consent"),
            self._key(subject_id, "sessions"),
            self._key(subject_id, "session", session_id),
        ]
        stored = self._call(self._merge, keys=keys, args=args)
        if not stored:
            raise ConsentRequiredError(
                "no consent on record for this subject; nothing stored"
            )
        tally.clear()

    def history(self, subject_id: str) -> SubjectHistory:
        """Return the subject's sessions, oldest first."""
        validate_subject_id(subject_id)
        consent = self._call(self._client.get, self._key(subject_id, "consent"))
        if consent is None:
            raise SubjectNotFoundError("no history for this subject")
        session_ids = sorted(
            self._call(self._client.smembers, self._key(subject_id, "sessions"))
        )
        sessions = []
        for session_id in session_ids:
            raw = self._call(
                self._client.hgetall, self._key(subject_id, "session", session_id)
            )
            if not raw:
                continue
            counts = {k[6:]: int(v) for k, v in raw.items() if k.startswith("count:")}
            sums = {k[8:]: float(v) for k, v in raw.items() if k.startswith("confsum:")}
            sessions.append(
                SessionHistory(
                    session_id,
                    int(raw.get("frames", 0)),
                    counts,
                    _mean(sums, counts),
                    float(raw.get("first_seen", 0.0)),
                    float(raw.get("last_seen", 0.0)),
                )
            )
        sessions.sort(key=lambda s: s.first_seen)
        return SubjectHistory(subject_id, float(consent), tuple(sessions))

    def delete_subject(self, subject_id: str) -> bool:
        """Delete every key carrying the subject's hash tag (found with SCAN)."""
        validate_subject_id(subject_id)
        pattern = self._key(subject_id, "*").replace("{", "\\{").replace("}", "\\}")
        keys = list(
            self._call(lambda: list(self._client.scan_iter(match=pattern, count=500)))
        )
        if not keys:
            return False
        self._call(self._client.delete, *keys)
        return True

    def close(self) -> None:
        """Close the connection pool."""
        try:
            self._client.close()
        except self._errors:
            logger.debug("Redis close failed", exc_info=True)


def _redact_url(url: str) -> str:
    """Return ``url`` without a password, for logs."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def open_store(settings: StorageSettings) -> HistoryStore:
    """Open the history backend ``settings.backend`` names.

    Raises:
        StorageError: the SQLite file cannot be opened.
    """
    if settings.backend == "sqlite":
        return SQLiteHistoryStore(settings.sqlite_path)
    if settings.backend == "redis":
        return RedisHistoryStore(settings.redis_url)
    return NullHistoryStore()
