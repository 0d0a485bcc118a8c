"""``airctrl analyze PATH...``: emotions for photos, folders and videos."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from airctrl.capture import VideoFileSource
from airctrl.config import Settings, with_overrides
from airctrl.decode import read_image, sniff_kind
from airctrl.errors import AirctrlError
from airctrl.pipeline import FrameResult, Pipeline
from airctrl.sinks import event_to_row, events_from_frame
from airctrl.types import Frame

__all__ = ["analyze_paths", "register"]

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``analyze`` subcommand."""
    parser = subparsers.add_parser(
        "analyze",
        help="analyse photos, folders and videos; results to stdout",
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="image, video or folder"
    )
    parser.add_argument(
        "--format",
        choices=["json", "jsonl", "csv"],
        default="json",
        help="output format",
    )
    parser.add_argument(
        "--max-faces", type=int, default=None, help="override detection.max_faces"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="never show a progress bar"
    )
    parser.set_defaults(handler=handle)


#: In folders, files with these endings are expected to be media: one that is
#: not (say an HTML page saved as .jpg) is reported, not silently passed over.
#: Other files are read only if their content is media. Content, never the
#: ending, decides how a file is decoded.
MEDIA_SUFFIXES = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".webp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".avif",
        ".mp4",
        ".mov",
        ".m4v",
        ".avi",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
    ]
)


def _expand(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if not path.is_dir():
            yield path
            continue
        children = sorted(
            p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        for child in children:
            if child.suffix.lower() in MEDIA_SUFFIXES or sniff_kind(child) is not None:
                yield child
            else:
                logger.debug("Skipping %s: not media", child)


def _analyse_image(path: Path, pipeline: Pipeline) -> dict[str, Any]:
    decoded = read_image(path)
    frame = Frame(decoded.image, 0, 0, source_id=str(path), warnings=decoded.warnings)
    result = pipeline.process(frame)
    return {"path": str(path), "kind": "image", **result.to_dict()}


def _analyse_video(path: Path, pipeline: Pipeline, progress: Any) -> dict[str, Any]:
    pipeline.reset()
    frames: list[FrameResult] = []
    with VideoFileSource(path) as source:
        for frame in source:
            frames.append(pipeline.process(frame))
            if progress is not None:
                progress.update(1)

    with_faces = sum(1 for f in frames if f.faces)
    return {
        "path": str(path),
        "kind": "video",
        "frame_count": len(frames),
        "frames_with_faces": with_faces,
        "frames": [{**f.to_dict(), "source": str(path)} for f in frames],
    }


class _AboveProgressBar:
    """A text stream that writes log lines above tqdm's bar instead of onto it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        """Clear the bar, write ``text``, draw the bar again below it."""
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")
        return len(text)

    def flush(self) -> None:
        """Flush the underlying stream."""
        self.stream.flush()


@contextlib.contextmanager
def _logs_above_progress_bar(stream: TextIO) -> Iterator[None]:
    """Route root console handlers writing to ``stream`` above the progress bar.

    Only the handlers' stream changes, so their formatters and filters (the
    redaction filter) keep applying.
    """
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in logging.getLogger().handlers:
        if (
            isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler)
            and handler.stream is stream
        ):
            swapped.append((handler, handler.setStream(_AboveProgressBar(stream))))
    try:
        yield
    finally:
        for handler, previous in swapped:
            handler.setStream(previous)


def analyze_paths(
    paths: list[Path], settings: Settings, *, show_progress: bool
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Analyse every path (folders expanded); return results and per-path errors."""
    files = list(_expand(paths))
    results: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = [
        {"path": str(path), "error": f"{path}: no images or videos in this folder"}
        for path in paths
        if path.is_dir() and not any(f.is_relative_to(path) for f in files)
    ]
    image_pipeline: Pipeline | None = None
    video_pipeline: Pipeline | None = None

    progress = None
    logs_placed = contextlib.ExitStack()
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(
            total=None, unit="frame", file=sys.stderr, leave=False, dynamic_ncols=True
        )
        logs_placed.enter_context(_logs_above_progress_bar(sys.stderr))
    try:
        for path in files:
            try:
                if not path.exists():
                    raise FileNotFoundError(f"{path}: no such file")
                kind = sniff_kind(path)
                if kind == "video":
                    video_pipeline = video_pipeline or Pipeline(settings, mode="video")
                    results.append(_analyse_video(path, video_pipeline, progress))
                else:
                    image_pipeline = image_pipeline or Pipeline(settings, mode="image")
                    results.append(_analyse_image(path, image_pipeline))
                    if progress is not None:
                        progress.update(1)
            except (AirctrlError, OSError, ValueError) as exc:
                message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                errors.append(
                    {
                        "path": str(path),
                        "error": message.splitlines()[0]
                        if message
                        else type(exc).__name__,
                    }
                )
    finally:
        logs_placed.close()
        if progress is not None:
            progress.close()
        for pipeline in (image_pipeline, video_pipeline):
            if pipeline is not None:
                pipeline.close()
    return results, errors


def _events(result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    frames = result["frames"] if result["kind"] == "video" else [result]
    for frame in frames:
        yield from events_from_frame(frame)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    """Print results to stdout, one stderr line per unreadable input; 2 if any."""
    if args.max_faces is not None:
        settings = with_overrides(settings, {"detection.max_faces": args.max_faces})
    show_progress = sys.stderr.isatty() and not args.no_progress
    results, errors = analyze_paths(
        list(args.paths), settings, show_progress=show_progress
    )

    if args.format == "json":
        json.dump({"results": results, "errors": errors}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.format == "jsonl":
        for result in results:
            for event in _events(result):
                sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    else:
        writer: csv.DictWriter[str] | None = None
        for result in results:
            for event in _events(result):
                row = event_to_row(event)
                if writer is None:
                    writer = csv.DictWriter(sys.stdout, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)

    for error in errors:
        print(f"airctrl: error: {error['error']}", file=sys.stderr)
    return 2 if errors else 0
