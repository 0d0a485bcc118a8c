"""``airctrl run``: the main job. A window with the HUD, or headless outputs."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from airctrl.config import Settings, SourceSettings, with_overrides
from airctrl.errors import ConfigError
from airctrl.runner import RunOptions, RunSummary, SourceSummary, run

__all__ = ["has_display", "register"]

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="watch a camera, video or stream: HUD window, or annotated video + events",
    )
    parser.add_argument(
        "--source",
        action="append",
        default=None,
        help="webcam index, video file, rtsp/http URL, image or folder; repeat "
        "for several (default: sources[] from the settings, camera 0)",
    )
    display = parser.add_mutually_exclusive_group()
    display.add_argument("--headless", action="store_true", help="never open a window")
    display.add_argument("--window", action="store_true", help="always open a window")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="headless outputs (default: output.directory)",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="stop after this many frames per source",
    )
    parser.add_argument("--csv", action="store_true", help="also write events.csv")
    parser.add_argument(
        "--no-video", action="store_true", help="do not write the annotated video"
    )
    parser.add_argument(
        "--loop",
        action="store_true",
        help="loop video files forever (soak tests, demos)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port",
    )
    parser.set_defaults(handler=handle)


def has_display() -> bool:
    """True when a graphical display is available for the HUD window."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _progress_line(summaries: list[SourceSummary]) -> str:
    parts = []
    for s in summaries:
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(s.emotion_shares().items())[:2])
        state = "" if s.state in ("connected", "stopped") else f" [{s.state}]"
        parts.append(
            f"{s.source_id}: {s.frames} frames, {s.faces} faces, "
            f"{s.fps:.1f} FPS{state}{' | ' + top if top else ''}"
        )
    return " || ".join(parts)


def _print_summary(summary: RunSummary) -> None:
    lines = [
        "AIRCTRL run "
        + ("stopped by user" if summary.stopped else "finished")
        + f" after {summary.seconds:.1f} s"
    ]
    for s in summary.sources:
        avg_fps = s.frames / s.seconds if s.seconds > 0 else 0.0
        lines.append(
            f"source {s.source_id}: {s.frames} frames analysed, "
            f"{s.frames_with_faces} with a face, {s.faces} face observations, "
            f"{avg_fps:.1f} FPS average"
        )
        if s.skipped_frames or s.outages:
            lines.append(f"  skipped frames: {s.skipped_frames}, outages: {s.outages}")
        shares = s.emotion_shares()
        if shares:
            lines.append(
                "  emotions: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items())
            )
        for path in s.outputs:
            lines.append(f"  wrote {path}")
    print("\n".join(lines))


def handle(args: argparse.Namespace, settings: Settings) -> int:
    """Run the configured sources and print a summary; 2 when a source failed."""
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(
            f"--max-frames: expected a positive number, got {args.max_frames}"
        )
    updates: dict[str, Any] = {}
    if args.source:
        base = (
            settings.sources[0] if settings.sources else SourceSettings()
        ).model_dump()
        updates["sources"] = [
            {**base, "source": s, "name": None, "loop": args.loop or base["loop"]}
            for s in args.source
        ]
    elif args.loop:
        updates["sources"] = [
            {**s.model_dump(), "loop": True} for s in settings.sources
        ]
    if args.metrics_port is not None:
        updates["metrics.enabled"] = True
        updates["metrics.port"] = args.metrics_port
    if updates:
        settings = with_overrides(settings, updates)

    window = args.window or (
        not args.headless
        and settings.hud.window != "never"
        and (has_display() or settings.hud.window == "always")
    )
    output_dir = args.output_dir or settings.output.directory
    options = RunOptions(
        output_dir=output_dir,
        show_window=window,
        max_frames=args.max_frames,
        write_video=settings.output.annotated_video
        and not args.no_video
        and not window,
        write_jsonl=settings.output.events_jsonl,
        write_csv=settings.output.events_csv or args.csv,
        draw_hud=settings.hud.enabled,
    )

    if settings.metrics.enabled:
        from airctrl.metrics import start_metrics_server

        try:
            start_metrics_server(settings.metrics.port, settings.metrics.host)
        except OSError as exc:
            where = f"{settings.metrics.host}:{settings.metrics.port}"
            reason = exc.strerror or str(exc)
            raise ConfigError(f"cannot serve metrics on {where}: {reason}") from None
        logger.info(
            "Metrics on http://%s:%d/metrics",
            settings.metrics.host,
            settings.metrics.port,
        )

    is_tty = sys.stderr.isatty()
    last_len = 0

    def on_progress(summaries: list[SourceSummary]) -> None:
        nonlocal last_len
        line = _progress_line(summaries)
        if is_tty:
            sys.stderr.write("\r" + line.ljust(last_len))
            last_len = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    stop = threading.Event()
    # Container runtimes and systemd stop with SIGTERM: treat it like Ctrl-C so
    # the video and event files are closed properly.
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # A shell without job control starts background commands with SIGINT
    # ignored, and Python then leaves it ignored: Ctrl-C (or a supervisor's
    # SIGINT) would do nothing. Ctrl-C always stops a run.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        summary = run(
            settings,
            options,
            stop_event=stop,
            on_progress=on_progress,
            progress_interval_s=1.0 if is_tty else 5.0,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    if is_tty and last_len:
        sys.stderr.write("\n")
    failed = [s for s in summary.sources if s.error]
    if not failed or any(s.frames for s in summary.sources):
        _print_summary(summary)
    if failed:
        print(
            f"airctrl: error: source {failed[0].source_id}: {failed[0].error}",
            file=sys.stderr,
        )
        return 2
    return 0
