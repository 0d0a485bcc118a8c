"""``airctrl assets``: fetch and verify the model and sample media ahead of time."""

from __future__ import annotations

import argparse
from typing import Any

from airctrl.assets import default_cache_dir, fetch_all
from airctrl.config import Settings

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``assets`` subcommand."""
    parser = subparsers.add_parser(
        "assets", help="fetch the model and sample media into the cache"
    )
    actions = parser.add_subparsers(dest="assets_action", metavar="ACTION")
    actions.required = True
    fetch = actions.add_parser(
        "fetch", help="download and verify everything (for offline use)"
    )
    fetch.set_defaults(handler=_fetch)
    where = actions.add_parser("path", help="print the cache folder")
    where.set_defaults(handler=_path)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    paths = fetch_all(
        settings.assets.cache_dir, try_official=settings.assets.try_official_download
    )
    for path in paths:
        print(path)
    return 0


def _path(args: argparse.Namespace, settings: Settings) -> int:
    print(settings.assets.cache_dir or default_cache_dir())
    return 0
