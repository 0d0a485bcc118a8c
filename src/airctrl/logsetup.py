"""Logging set-up for the entry points (CLI and service); library modules never call it.

:func:`configure_logging` sends records to stderr and, when ``logging.file``
is set, to a file rotated on a UTC schedule (``rotate_when``), with rotated
files gzip-compressed (``compress``), only the newest ``backup_count`` kept,
and optionally every line encrypted (``encrypt``; see :mod:`airctrl.secure`).
Lines are human-readable or one JSON object each (``format``). Times are UTC.

Every handler runs a redaction filter that masks credentials in URLs, secret
query parameters, bearer tokens and e-mail addresses, as a second line of
defence: code must still never log frames, landmarks or anything that
identifies a person. uvicorn's WebSocket handshake lines, which begin with the
client's address, are dropped (:class:`ClientAddressFilter`).
"""

from __future__ import annotations

import gzip
import json
import logging
import logging.handlers
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TextIO

from airctrl.config import LoggingSettings
from airctrl.secure import LineCipher, load_cipher

__all__ = [
    "HUMAN_FORMAT",
    "ClientAddressFilter",
    "JsonFormatter",
    "RedactingFilter",
    "configure_logging",
]

HUMAN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%S"

#: Marks handlers installed here, so a second call replaces only those (and
#: leaves e.g. pytest's capture handler alone).
_OWNED_ATTRIBUTE: Final = "_airctrl_owned"

#: Attributes every LogRecord has; anything else came from ``extra=``.
_RECORD_FIELDS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)

#: Third-party loggers held at INFO even when the level is DEBUG.
_CHATTY_LIBRARIES: Final = (
    "matplotlib", "PIL", "urllib3", "asyncio", "httpx", "httpcore", "multipart",
    "python_multipart", "websockets", "redis",
)  # fmt: skip

_REDACTIONS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # scheme://user:password@host -> scheme://***@host
    (
        re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]+@"),
        r"\g<scheme>***@",
    ),
    # ?token=...&api_key=... and key: value pairs naming a secret
    (
        re.compile(
            r"(?i)\b(?P<name>api[_-]?key|token|password|passwd|secret|x-api-key)"
            r"(?P<sep>\s*[=:]\s*)(?P<value>[^\s&,;\"']+)"
        ),
        r"\g<name>\g<sep>***",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer ***"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "***@***"),
)


#: How uvicorn's WebSocket handshake lines begin: the client address, then the
#: path (uvicorn 0.55, in each of its three WebSocket implementations).
_WEBSOCKET_LINE_PREFIX: Final = '%s - "WebSocket '
#: The logger uvicorn writes those lines to.
_UVICORN_LOGGER: Final = "uvicorn.error"


def _redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks credentials, secret parameters and e-mail addresses in messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted text; never drops it."""
        message = record.getMessage()
        cleaned = _redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class ClientAddressFilter(logging.Filter):
    """Drops uvicorn's WebSocket handshake lines, which start with the client address.

    uvicorn writes ``127.0.0.1:52114 - "WebSocket /v1/stream" [accepted]`` to
    ``uvicorn.error`` whatever ``access_log`` says; a client address identifies
    a person, so these lines are not logged. uvicorn's other lines (start-up,
    shutdown, errors) pass. HTTP access lines are turned off where the server
    starts (``access_log=False`` in ``airctrl serve``, ``accesslog = None`` for
    gunicorn).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for a WebSocket handshake line, True for anything else."""
        return not (
            isinstance(record.msg, str)
            and record.msg.startswith(_WEBSOCKET_LINE_PREFIX)
        )


class _UtcFormatter(logging.Formatter):
    """Human lines with ISO-8601 UTC times and milliseconds."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime(datefmt or _DATE_FORMAT, time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class JsonFormatter(_UtcFormatter):
    """One JSON object per line: ts, level, logger, message, pid, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single-line JSON object."""
        entry: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = _redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class _EncryptingFormatter(logging.Formatter):
    """Encrypts what another formatter produced, one token per record."""

    def __init__(self, inner: logging.Formatter, cipher: LineCipher) -> None:
        super().__init__()
        self._inner = inner
        self._cipher = cipher

    def format(self, record: logging.LogRecord) -> str:
        return self._cipher.encrypt_line(self._inner.format(record)).decode("ascii")


def _gzip_namer(default_name: str) -> str:
    return default_name + ".gz"


def _gzip_rotator(source: str, destination: str) -> None:
    """Compress the just-closed log file into ``destination`` and remove it."""
    with open(source, "rb") as plain, gzip.open(destination, "wb") as packed:
        shutil.copyfileobj(plain, packed)
    os.remove(source)


def _file_handler(
    settings: LoggingSettings, path: Path
) -> logging.handlers.TimedRotatingFileHandler:
    # Limitation: rotation is per process. Several processes writing one file
    # (e.g. `airctrl serve` with server.workers > 1) race at rollover and can
    # lose or interleave lines; give each process its own file or log to
    # stderr and let journald / the container runtime collect it.
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.TimedRotatingFileHandler(
        path,
        when=settings.rotate_when,
        backupCount=settings.backup_count,
        encoding="utf-8",
        utc=True,
    )
    if settings.compress:
        handler.namer = _gzip_namer
        handler.rotator = _gzip_rotator
    return handler


def configure_logging(
    settings: LoggingSettings,
    *,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> list[logging.Handler]:
    """Install the root handlers described by ``settings`` and return them.

    Calling it again replaces the handlers a previous call installed (other
    handlers, such as a test harness's, are kept). The stderr handler is never
    encrypted; the file handler is when ``settings.encrypt`` is on.

    Args:
        settings: the ``logging`` section of the settings.
        environ: environment for the encryption key variable (default
            ``os.environ``).
        stream: where console lines go (default ``sys.stderr``).

    Raises:
        ConfigError: encryption is on and no valid key is available.
    """
    cipher = (
        load_cipher(settings.encryption_key_file, environ=environ)
        if settings.encrypt
        else None
    )
    formatter: logging.Formatter = (
        JsonFormatter() if settings.format == "json" else _UtcFormatter(HUMAN_FORMAT)
    )

    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    handlers[0].setFormatter(formatter)
    if settings.file is not None:
        file_handler = _file_handler(settings, settings.file)
        file_handler.setFormatter(
            _EncryptingFormatter(formatter, cipher) if cipher is not None else formatter
        )
        handlers.append(file_handler)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OWNED_ATTRIBUTE, False)]:
        root.removeHandler(old)
        old.close()
    redactor = RedactingFilter()
    for handler in handlers:
        setattr(handler, _OWNED_ATTRIBUTE, True)
        handler.addFilter(redactor)
        root.addHandler(handler)
    root.setLevel(settings.level)
    uvicorn = logging.getLogger(_UVICORN_LOGGER)
    if not any(isinstance(f, ClientAddressFilter) for f in uvicorn.filters):
        uvicorn.addFilter(ClientAddressFilter())
    for name in _CHATTY_LIBRARIES:  # DEBUG is for our modules, not their internals
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    logging.captureWarnings(True)
    return handlers
