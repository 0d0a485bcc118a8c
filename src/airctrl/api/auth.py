"""API keys: salted scrypt hashes at rest, several keys, revocable.

A key is a random token given to a client. The server only ever stores
``scrypt$<n>$<r>$<p>$<salt hex>$<digest hex>``; :func:`hash_key` makes that
string (``airctrl serve --hash-key`` prints it). Hashes come from
``server.api_keys`` and, optionally, a keys file (one ``[label] hash`` per line,
``#`` comments) that is re-read when it changes, so deleting a line revokes a
key without a restart.

Verifying scrypt costs tens of milliseconds by design, so a successful check is
remembered per process as a SHA-256 of the presented key; the memo is dropped
whenever the key set changes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from airctrl.errors import AirctrlError, ConfigError

__all__ = [
    "ApiKeyRing",
    "AuthError",
    "KeyRecord",
    "generate_key",
    "hash_key",
    "parse_key_hash",
    "verify_key",
]

logger = logging.getLogger(__name__)

#: scrypt cost parameters: n=2**14, r=8 needs 16 MiB and ~40 ms per check on a
#: laptop core, the interactive-login level suggested for scrypt.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
DIGEST_BYTES = 32
#: Upper bound on memo entries so random wrong keys cannot grow memory.
MEMO_LIMIT = 1024


class AuthError(AirctrlError):
    """The request carries no API key, or one that is not (or no longer) valid."""

    http_status = 401


@dataclass(frozen=True)
class KeyRecord:
    """One accepted key: a label for logs and its parsed hash."""

    label: str
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        key.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=length,
        maxmem=256 * r * n + 1024 * 1024,
    )


def generate_key() -> str:
    """Return a new random API key (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def hash_key(key: str, *, salt: bytes | None = None) -> str:
    """Return the storable salted scrypt hash of ``key``.

    Raises:
        ValueError: ``key`` is shorter than 16 characters.
    """
    if len(key) < 16:
        raise ValueError("API key: expected at least 16 characters")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = _scrypt(key, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, DIGEST_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def parse_key_hash(text: str, *, label: str = "key") -> KeyRecord:
    """Parse a stored hash string.

    Raises:
        ConfigError: not of the form ``scrypt$n$r$p$salt$digest`` (a plain key
            pasted into the config lands here, on purpose).
    """
    parts = text.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ConfigError(
            f"API key '{label}': expected a hash 'scrypt$n$r$p$salt$digest' "
            "(make one with 'airctrl serve --hash-key'), not a plain key"
        )
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        raise ConfigError(f"API key '{label}': malformed scrypt hash") from None
    if (
        n < 2
        or n & (n - 1)
        or not 1 <= r <= 64
        or not 1 <= p <= 16
        or not salt
        or not digest
    ):
        raise ConfigError(f"API key '{label}': scrypt parameters out of range")
    return KeyRecord(label, n, r, p, salt, digest)


def verify_key(key: str, record: KeyRecord) -> bool:
    """Return True when ``key`` hashes to ``record`` (constant-time compare)."""
    candidate = _scrypt(
        key, record.salt, record.n, record.r, record.p, len(record.digest)
    )
    return hmac.compare_digest(candidate, record.digest)


def _parse_lines(lines: list[str], origin: str) -> list[KeyRecord]:
    records = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) == 1:
            label, hashed = f"{origin}:{number}", fields[0]
        elif len(fields) == 2:
            label, hashed = fields
        else:
            raise ConfigError(f"{origin} line {number}: expected '[label] scrypt$...'")
        records.append(parse_key_hash(hashed, label=label))
    return records


class ApiKeyRing:
    """The set of accepted keys, from settings plus an optional keys file.

    Thread-safe. :meth:`check` returns the matching key's label or raises
    :class:`AuthError`.
    """

    def __init__(
        self,
        hashes: list[str],
        *,
        keys_file: Path | None = None,
        extra_plain_keys: tuple[str, ...] = (),
    ) -> None:
        self._static = _parse_lines(list(hashes), "server.api_keys")
        self._keys_file = keys_file
        self._file_records: list[KeyRecord] = []
        self._file_stamp: tuple[float, int] | None = None
        self._plain = {
            hashlib.sha256(k.encode()).digest(): "kiosk" for k in extra_plain_keys if k
        }
        self._memo: dict[bytes, str] = {}
        self._lock = threading.Lock()
        if keys_file is not None:
            self._reload_file(force=True)

    @property
    def is_empty(self) -> bool:
        """True when no key at all would be accepted."""
        with self._lock:
            self._reload_file()
            return not (self._static or self._file_records or self._plain)

    def _reload_file(self, *, force: bool = False) -> None:
        if self._keys_file is None:
            return
        try:
            stat = self._keys_file.stat()
        except OSError:
            if force:
                raise ConfigError(
                    f"API keys file {self._keys_file} cannot be read"
                ) from None
            if self._file_records:
                logger.warning(
                    "API keys file %s vanished; its keys are revoked", self._keys_file
                )
            self._file_records, self._file_stamp = [], None
            self._memo.clear()
            return
        stamp = (stat.st_mtime, stat.st_size)
        if not force and stamp == self._file_stamp:
            return
        try:
            lines = self._keys_file.read_text(encoding="utf-8").splitlines()
            records = _parse_lines(lines, str(self._keys_file))
        except (OSError, UnicodeDecodeError) as exc:
            if force:
                raise ConfigError(f"API keys file {self._keys_file}: {exc}") from None
            logger.warning(
                "API keys file %s unreadable; keeping previous keys", self._keys_file
            )
            return
        except ConfigError:
            if force:
                raise
            logger.warning(
                "API keys file %s is malformed; keeping previous keys", self._keys_file
            )
            return
        self._file_records, self._file_stamp = records, stamp
        self._memo.clear()
        logger.info("Loaded %d API key(s) from %s", len(records), self._keys_file)

    def check_remembered(self, key: str | None) -> str | None:
        """Return the label if ``key`` was verified before (no scrypt), else None.

        Lets async callers skip a thread hop on every request; call :meth:`check`
        when this returns None.
        """
        if not key:
            return None
        fingerprint = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            self._reload_file()
            return self._plain.get(fingerprint) or self._memo.get(fingerprint)

    def check(self, key: str | None) -> str:
        """Return the label of the key that matches ``key``.

        Limitation: an unknown key costs one scrypt run per configured key,
        so a client sending many wrong keys burns CPU; rate-limit at the proxy
        (or add a per-address failure budget here).

        Raises:
            AuthError: no key given, or none matches.
        """
        if not key:
            raise AuthError("missing API key (send it in the X-API-Key header)")
        fingerprint = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            self._reload_file()
            if fingerprint in self._plain:
                return self._plain[fingerprint]
            label = self._memo.get(fingerprint)
            if label is not None:
                return label
            records = self._static + self._file_records
        for record in records:
            if verify_key(key, record):
                with self._lock:
                    if len(self._memo) >= MEMO_LIMIT:
                        self._memo.clear()
                    self._memo[fingerprint] = record.label
                return record.label
        raise AuthError("invalid API key")
