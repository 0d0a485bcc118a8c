"""``airctrl decrypt``: print an encrypted event or log file as plain text.

The key comes from ``--key-file``, else the ``AIRCTRL_ENCRYPTION_KEY``
variable, else the key file named in the settings (``logging`` first, then
``output``). Rotated, gzip-compressed logs are read directly. ``--new-key
PATH`` writes a fresh key file (mode 0600) instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from airctrl.config import Settings
from airctrl.secure import KEY_ENV_VAR, load_cipher, read_lines, write_key_file

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``decrypt`` subcommand."""
    parser = subparsers.add_parser(
        "decrypt",
        help="print an encrypted events/log file (also .gz) as plain text",
        description=(
            f"Decrypt FILE with --key-file, ${KEY_ENV_VAR}, or the settings' key file."
        ),
    )
    parser.add_argument("file", type=Path, nargs="?", help="encrypted file to read")
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help=(
            f"key file (default: ${KEY_ENV_VAR}, "
            "then logging/output.encryption_key_file)"
        ),
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="write the plain text here instead of standard output",
    )
    parser.add_argument(
        "--new-key",
        type=Path,
        default=None,
        metavar="PATH",
        help="create a new key file at PATH (never overwrites) and exit",
    )
    # Runs as an operator tool: console logging only, never the service's
    # (possibly encrypted) log file.
    parser.set_defaults(handler=_decrypt, console_logging_only=True)


def _key_file(args: argparse.Namespace, settings: Settings) -> Path | None:
    if args.key_file is not None:
        return Path(args.key_file)
    return settings.logging.encryption_key_file or settings.output.encryption_key_file


def _decrypt(args: argparse.Namespace, settings: Settings) -> int:
    if args.new_key is not None:
        try:
            write_key_file(args.new_key)
        except FileExistsError:
            raise ValueError(
                f"{args.new_key} already exists; not overwriting a key"
            ) from None
        print(f"new key written to {args.new_key} (mode 600); keep a copy safe")
        return 0
    if args.file is None:
        raise ValueError("decrypt: give FILE to decrypt (or --new-key PATH)")
    if not args.file.is_file():
        raise FileNotFoundError(f"{args.file} does not exist or is not a file")

    environ = dict(os.environ)
    if args.key_file is not None:
        environ.pop(KEY_ENV_VAR, None)  # an explicit --key-file wins
    cipher = load_cipher(_key_file(args, settings), environ=environ)

    if args.output is None:
        try:
            for line in read_lines(args.file, cipher):
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # piped into head/less that quit early: not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    partial = args.output.with_name(args.output.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for line in read_lines(args.file, cipher):
                handle.write(line + "\n")
    except BaseException:
        partial.unlink(missing_ok=True)  # no half-decrypted file left behind
        raise
    partial.replace(args.output)
    return 0
