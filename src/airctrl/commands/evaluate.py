"""``airctrl evaluate``: accuracy, calibration and group figures on labelled photos."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from airctrl.config import Settings
from airctrl.dataset import CONTEMPT_POLICY, extract_samples, read_manifest
from airctrl.emotions import EmotionClassifier
from airctrl.evaluation import (
    DEFAULT_REVIEW_THRESHOLD,
    evaluate_predictions,
    format_summary,
    predict_samples,
    write_report,
)

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure the emotion model on a labelled photo manifest",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help="CSV with path (relative to the CSV's folder), label, groups ...",
    )
    parser.add_argument(
        "--group-by",
        default="",
        help="comma-separated manifest columns to report macro-F1 per group for",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("reports/eval"),
        help="folder for report.md, PNG figures and CSV files",
    )
    parser.add_argument(
        "--review-threshold",
        type=float,
        default=DEFAULT_REVIEW_THRESHOLD,
        help="predictions under this confidence go to review.csv",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 <= args.review_threshold <= 1:
        raise ValueError(
            f"--review-threshold: expected 0..1, got {args.review_threshold}"
        )
    columns = tuple(c.strip() for c in args.group_by.split(",") if c.strip())
    summary, report = run(
        args.manifest,
        args.output_dir,
        settings,
        group_by=columns,
        review_threshold=args.review_threshold,
    )
    print(summary)
    print(f"report: {report}")
    return 0


def run(
    manifest: Path,
    output_dir: Path,
    settings: Settings,
    *,
    group_by: tuple[str, ...] = (),
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
) -> tuple[str, Path]:
    """Evaluate the configured model on ``manifest``; return (summary, report path)."""
    rows, dropped = read_manifest(manifest)
    known = set(rows[0].groups) if rows else set()
    unknown = [c for c in group_by if c not in known]
    if unknown:
        raise ValueError(
            f"--group-by: column(s) {', '.join(unknown)} not in the manifest"
        )
    classifier = EmotionClassifier.from_settings(settings.emotion)
    samples = extract_samples(rows + dropped, settings)
    table = predict_samples(samples, classifier)
    evaluation = evaluate_predictions(
        table, group_by=group_by, review_threshold=review_threshold
    )
    source = settings.emotion.params_path or "shipped parameters"
    report = write_report(
        evaluation,
        output_dir,
        notes=[
            f"Manifest: {manifest}; parameters: {source}",
            (
                f"Contempt: {CONTEMPT_POLICY} (not one of the seven classes; "
                "listed under excluded)"
            ),
        ],
    )
    return format_summary(evaluation), report
