"""The ``airctrl`` command: parse arguments, build settings, set up logging, dispatch.

Each subcommand lives in ``airctrl.commands.<name>`` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a
function ``(args, settings) -> int``. No pipeline logic lives here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from airctrl.config import Settings, load_settings
from airctrl.errors import AirctrlError

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

logger = logging.getLogger(__name__)

# OpenCV and its FFmpeg print warnings straight to stderr ("moov atom not
# found", "[ WARN:0] ..."), around the one-line errors the CLI promises; every
# failure they signal reaches the user as our own message instead. Set before
# any subcommand module imports cv2. FFmpeg: -8 is AV_LOG_QUIET.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")

#: Subcommand modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "airctrl.commands.run",
    "airctrl.commands.analyze",
    "airctrl.commands.serve",
    "airctrl.commands.assets",
    "airctrl.commands.decrypt",
    "airctrl.commands.calibrate",
    "airctrl.commands.evaluate",
)


class _OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other failure.

    argparse's own error prints the whole usage block first; here a bad flag
    value reads ``airctrl: error: analyze: argument --max-faces: invalid int
    value: 'zero' (see airctrl analyze --help)`` and exits with status 2.
    Subcommand parsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("airctrl").strip()
        where = f"{command}: " if command else ""
        hint = f"airctrl {command} --help" if command else "airctrl --help"
        self.exit(2, f"airctrl: error: {where}{message} (see {hint})\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, unless it has none or its help names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "(default" in text:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = _OneLineErrorParser(
        prog="airctrl",
        description="Real-time facial emotion recognition.",
        formatter_class=_HelpFormatter,
    )
    _add_common_options(parser, default=None)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    # The common options work after the subcommand too ("airctrl run --config
    # F"); SUPPRESS keeps a value given before the subcommand.
    for subparser in subparsers.choices.values():
        subparser.formatter_class = _HelpFormatter
        _add_common_options(subparser, default=argparse.SUPPRESS)
    return parser


def _add_common_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        help="settings file (default: ./config.yaml if present, else built-in ones)",
    )
    parser.add_argument(
        "--log-level",
        default=default,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="override logging.level from the settings",
    )


def _configure_logging(settings: Settings, args: argparse.Namespace) -> None:
    from airctrl.logsetup import configure_logging

    logging_settings = settings.logging
    if getattr(args, "console_logging_only", False):
        # Operator tools (e.g. decrypt) must not need the service's log file or key.
        logging_settings = logging_settings.model_copy(
            update={"file": None, "encrypt": False}
        )
    configure_logging(logging_settings)


def _fail(message: str) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"airctrl: error: {first_line}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code (0 ok, 2 error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = {"logging.level": args.log_level} if args.log_level else {}
        settings = load_settings(args.config, overrides=overrides)
        _configure_logging(settings, args)
        result: int = args.handler(args, settings)
        return result
    except AirctrlError as exc:
        return _fail(str(exc))
    except ValueError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if exc.filename is not None and exc.strerror:
            return _fail(f"{exc.filename}: {exc.strerror}")
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("airctrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
