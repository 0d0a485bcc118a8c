"""Encryption at rest for event and log files, one encrypted record per line.

Each line written is a separate Fernet token (AES-128-CBC with HMAC-SHA256,
from the ``cryptography`` package) followed by a newline, so files stay
appendable, can be rotated and gzip-compressed like plain text, and a
damaged line costs only that line. ``airctrl decrypt FILE`` reads them back.

Keys are 32 random bytes in url-safe base64 (44 characters), from the
``AIRCTRL_ENCRYPTION_KEY`` environment variable or a key file (one key per
line). Several keys may be given, newest first (comma-separated in the
variable): the first encrypts, all are tried to decrypt, which lets an
operator rotate keys without losing old files.

Limitation: a token carries its creation time in clear, so the time of each
record is visible without the key (its content is not).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from airctrl.errors import AirctrlError, ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "KEY_ENV_VAR",
    "DecryptionError",
    "EncryptedLineWriter",
    "LineCipher",
    "generate_key",
    "load_cipher",
    "open_encrypted_writer",
    "read_lines",
    "write_key_file",
]

#: Environment variable holding the key(s); wins over any key file.
KEY_ENV_VAR: Final = "AIRCTRL_ENCRYPTION_KEY"

#: Every Fernet token starts with this (version byte 0x80 in base64).
_TOKEN_PREFIX: Final = b"gAAAAA"
_GZIP_MAGIC: Final = b"\x1f\x8b"


class DecryptionError(AirctrlError):
    """A file cannot be decrypted: wrong key, not encrypted, or damaged."""

    http_status = 400


class LineCipher:
    """Encrypts one line of text to one token and back."""

    def __init__(self, keys: list[bytes]) -> None:
        """Build from raw keys, newest first.

        Raises:
            ValueError: no keys were given.
            ConfigError: a key is not 32 url-safe base64-encoded bytes.
        """
        if not keys:
            raise ValueError("keys: expected at least one key, got none")
        fernets: list[Fernet] = []
        for number, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise ConfigError(
                    f"encryption key {number} is not a valid key "
                    "(expected 32 url-safe base64-encoded bytes, 44 characters)"
                ) from None
        self._cipher = MultiFernet(fernets)

    def encrypt_line(self, text: str) -> bytes:
        """Return the token for ``text`` (which may contain newlines), no newline."""
        return self._cipher.encrypt(text.encode("utf-8"))

    def decrypt_line(self, token: bytes) -> str:
        """Return the text of one token.

        Raises:
            cryptography.fernet.InvalidToken: wrong key or damaged token.
        """
        return self._cipher.decrypt(token.strip()).decode("utf-8")


def generate_key() -> bytes:
    """Return a new random key (44 url-safe base64 characters)."""
    return Fernet.generate_key()


def write_key_file(path: Path) -> None:
    """Write a new key to ``path`` readable by its owner only (mode 0600).

    Raises:
        FileExistsError: ``path`` exists; an existing key is never overwritten.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(generate_key() + b"\n")


def _keys_from_text(text: str) -> list[bytes]:
    parts = text.replace(",", "\n").splitlines()
    return [part.strip().encode("ascii") for part in parts if part.strip()]


def load_cipher(
    key_file: Path | None, *, environ: Mapping[str, str] | None = None
) -> LineCipher:
    """Return the cipher from ``AIRCTRL_ENCRYPTION_KEY`` or else ``key_file``.

    Args:
        key_file: file holding one key per line, newest first.
        environ: environment to read the variable from; ``None`` means
            ``os.environ``.

    Raises:
        ConfigError: no key is available, the key file cannot be read, or a key
            is malformed. The message never contains key material.
    """
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV_VAR, "").strip():
        return LineCipher(_keys_from_text(env[KEY_ENV_VAR]))
    if key_file is None:
        raise ConfigError(
            f"encryption is on but no key is set: set {KEY_ENV_VAR} "
            "or encryption_key_file (create one with 'airctrl decrypt --new-key PATH')"
        )
    try:
        text = key_file.read_text(encoding="ascii")
        mode = key_file.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"encryption key file {key_file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a key file"
        raise ConfigError(
            f"encryption key file {key_file} cannot be read: {reason}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("Key file %s is readable by other users; chmod 600 it", key_file)
    keys = _keys_from_text(text)
    if not keys:
        raise ConfigError(f"encryption key file {key_file} is empty")
    return LineCipher(keys)


class EncryptedLineWriter(io.TextIOBase):
    """A text file object that encrypts each complete line as it is written.

    Text is buffered until a newline; ``close()`` encrypts a last partial line.
    Works as the ``opener`` result of the JSONL event sink: ``write``, ``flush``
    and ``close`` behave like a plain text file.
    """

    def __init__(self, raw: IO[bytes], cipher: LineCipher) -> None:
        """Wrap an open binary file."""
        super().__init__()
        self._raw = raw
        self._cipher = cipher
        self._pending = ""

    def writable(self) -> bool:
        """Return True: this object is for writing."""
        return True

    def write(self, text: str) -> int:
        """Buffer ``text`` and write every completed line encrypted."""
        if self.closed:
            raise ValueError("write to a closed encrypted file")
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._raw.write(self._cipher.encrypt_line(line) + b"\n")
        return len(text)

    def flush(self) -> None:
        """Flush completed lines to the operating system."""
        if not self.closed:
            self._raw.flush()

    def close(self) -> None:
        """Encrypt any partial last line, then close the file."""
        if self.closed:
            return
        if self._pending:
            self._raw.write(self._cipher.encrypt_line(self._pending) + b"\n")
            self._pending = ""
        super().close()  # flushes through self.flush() while raw is still open
        self._raw.close()


def open_encrypted_writer(
    path: Path, cipher: LineCipher, *, append: bool = False
) -> EncryptedLineWriter:
    """Open ``path`` for writing encrypted lines (truncating unless ``append``).

    The file is created readable by its owner only.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    return EncryptedLineWriter(os.fdopen(descriptor, "wb"), cipher)


def read_lines(path: Path, cipher: LineCipher) -> Iterator[str]:
    """Yield the plain text of each record of an encrypted file, in order.

    Gzip-compressed files (rotated logs) are read transparently. Blank lines
    are skipped.

    Raises:
        DecryptionError: a line is not an encrypted record, or does not decrypt
            with any of the keys (wrong key or damaged file). The message names
            the file and line, never the content.
        FileNotFoundError: ``path`` does not exist.
    """
    with path.open("rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    with contextlib.ExitStack() as stack:
        handle: Iterable[bytes] = stack.enter_context(
            gzip.open(path, "rb") if compressed else path.open("rb")  # noqa: SIM115
        )
        try:
            for number, raw in enumerate(handle, start=1):
                token = raw.strip()
                if not token:
                    continue
                if not token.startswith(_TOKEN_PREFIX):
                    raise DecryptionError(
                        f"{path.name}: line {number} is not an encrypted airctrl "
                        "record (is the file encrypted?)"
                    )
                try:
                    yield cipher.decrypt_line(token)
                except InvalidToken:
                    raise DecryptionError(
                        f"{path.name}: line {number} does not decrypt with the given "
                        "key (wrong key, or the file is damaged)"
                    ) from None
        except (gzip.BadGzipFile, EOFError):
            raise DecryptionError(f"{path.name}: compressed file is damaged") from None
