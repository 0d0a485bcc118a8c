"""Logging set-up for the entry points (CLI and service); library modules never call it."""

from __future__ import annotations

import logging

from airctrl.config import LoggingSettings

__all__ = ["configure_logging"]


def configure_logging(settings: LoggingSettings) -> None:
    """Send log records to stderr in the configured level and format."""
    logging.basicConfig(
        level=settings.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
