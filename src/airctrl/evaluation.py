"""Accuracy, calibration and fairness figures for labelled photos, and the report.

The input is a prediction table (one :class:`PredictionRow` per photo, with no
prediction when no face was found), so the figures can be checked by hand on a
tiny table. :func:`predict_samples` builds the table with the real model;
:func:`write_report` writes the Markdown report, PNG figures and CSV files.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from airctrl.features import extract_features
from airctrl.types import EMOTIONS

if TYPE_CHECKING:
    from airctrl.dataset import Sample
    from airctrl.emotions import EmotionClassifier

__all__ = [
    "ClassificationMetrics",
    "Evaluation",
    "GroupFigures",
    "PredictionRow",
    "classification_metrics",
    "evaluate_predictions",
    "expected_calibration_error",
    "format_repeated_summary",
    "format_summary",
    "group_figures",
    "predict_samples",
    "write_report",
]

logger = logging.getLogger(__name__)

#: Calibration bins: ten equal-width confidence bins, the usual ECE setting.
ECE_BINS = 10
#: Groups with fewer photos than this are listed but left out of the best-worst
#: gap: macro-F1 on a handful of photos is mostly noise.
MIN_GROUP_SIZE = 5
#: Predictions under this confidence go to the review CSV for a person to check.
DEFAULT_REVIEW_THRESHOLD = 0.5


@dataclass(frozen=True)
class PredictionRow:
    """One photo: its true label, the prediction (None when no face) and groups."""

    path: str
    label: str
    predicted: str | None
    confidence: float | None = None
    probabilities: Mapping[str, float] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)
    evidence: str = ""
    note: str = ""

    def group(self, column: str) -> str:
        """Return this row's value for grouping ``column`` ('unknown' when absent)."""
        return self.groups.get(column) or "unknown"


@dataclass(frozen=True)
class ClassificationMetrics:
    """Per-class precision, recall, F1 and support; macro-F1; accuracy; confusion.

    ``confusion[i][j]`` counts photos of class ``labels[i]`` predicted as
    ``labels[j]``. Macro-F1 averages over ``labels`` (a class never seen and
    never predicted scores 0, as scikit-learn does with ``zero_division=0``).
    """

    labels: tuple[str, ...]
    precision: Mapping[str, float]
    recall: Mapping[str, float]
    f1: Mapping[str, float]
    support: Mapping[str, int]
    macro_f1: float
    accuracy: float
    confusion: tuple[tuple[int, ...], ...]
    count: int


@dataclass(frozen=True)
class GroupFigures:
    """Macro-F1 per value of one grouping column and the best-worst gap.

    Each group's macro-F1 averages over the classes present among that group's
    true labels, so a group holding only neutral and happy photos is not marked
    down for five classes it never had. ``gap`` is best minus worst over the
    groups with at least :data:`MIN_GROUP_SIZE` photos, leaving out "unknown"
    (rows without the value are no group of people; None when fewer than two
    such groups).
    """

    column: str
    macro_f1: Mapping[str, float]
    count: Mapping[str, int]
    gap: float | None
    best: str | None
    worst: str | None


@dataclass(frozen=True)
class Evaluation:
    """Everything the report shows."""

    overall: ClassificationMetrics
    ece: float
    reliability: tuple[tuple[float, float, float, int], ...]
    groups: tuple[GroupFigures, ...]
    no_face: tuple[PredictionRow, ...]
    review: tuple[PredictionRow, ...]
    excluded: tuple[PredictionRow, ...]
    rows: tuple[PredictionRow, ...]
    review_threshold: float


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = EMOTIONS
) -> ClassificationMetrics:
    """Return per-class and overall figures (scikit-learn) for string labels."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    labels = tuple(labels)
    if not y_true:
        zero = {c: 0.0 for c in labels}
        empty = tuple(tuple(0 for _ in labels) for _ in labels)
        return ClassificationMetrics(
            labels, zero, zero, zero, {c: 0 for c in labels}, 0.0, 0.0, empty, 0
        )
    precision, recall, f1, support = precision_recall_fscore_support(
        list(y_true), list(y_pred), labels=list(labels), zero_division=0
    )
    confusion = confusion_matrix(list(y_true), list(y_pred), labels=list(labels))
    return ClassificationMetrics(
        labels=labels,
        precision={c: float(v) for c, v in zip(labels, precision)},
        recall={c: float(v) for c, v in zip(labels, recall)},
        f1={c: float(v) for c, v in zip(labels, f1)},
        support={c: int(v) for c, v in zip(labels, support)},
        macro_f1=float(np.mean(f1)),
        accuracy=float(accuracy_score(list(y_true), list(y_pred))),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        count=len(y_true),
    )


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> tuple[float, list[tuple[float, float, float, int]]]:
    """Return the ECE and the reliability table.

    Confidences fall into ``bins`` equal-width bins over (0, 1] (a confidence
    of exactly 0 goes to the first). ECE is the count-weighted mean of
    |accuracy - mean confidence| per bin. Each table row is (bin upper edge,
    mean confidence, accuracy, count); empty bins have count 0. Empty input
    gives 0.0.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    hits = np.asarray(correct, dtype=np.float64)
    if conf.shape != hits.shape:
        raise ValueError(
            f"confidences and correct differ in length: {conf.shape} vs {hits.shape}"
        )
    edges = np.linspace(0.0, 1.0, bins + 1)
    # The small tolerance keeps 0.7 (stored as 0.7000...01 after * 10) in (0.6, 0.7].
    index = np.clip(np.ceil(conf * bins - 1e-9).astype(int) - 1, 0, bins - 1)
    table: list[tuple[float, float, float, int]] = []
    ece = 0.0
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if n == 0:
            table.append((float(edges[b + 1]), 0.0, 0.0, 0))
            continue
        mean_conf, accuracy = float(conf[mask].mean()), float(hits[mask].mean())
        ece += n / len(conf) * abs(accuracy - mean_conf)
        table.append((float(edges[b + 1]), mean_conf, accuracy, n))
    return float(ece), table


def group_figures(rows: Sequence[PredictionRow], column: str) -> GroupFigures:
    """Return macro-F1 per value of ``column`` over rows that have a prediction."""
    from sklearn.metrics import f1_score

    by_group: dict[str, list[PredictionRow]] = {}
    for row in rows:
        if row.predicted is not None:
            by_group.setdefault(row.group(column), []).append(row)
    scores: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name in sorted(by_group):
        members = by_group[name]
        present = sorted({r.label for r in members}, key=EMOTIONS.index)
        scores[name] = float(
            f1_score(
                [r.label for r in members],
                [r.predicted for r in members],
                labels=present,
                average="macro",
                zero_division=0,
            )
        )
        counts[name] = len(members)
    eligible = [
        name for name in scores if counts[name] >= MIN_GROUP_SIZE and name != "unknown"
    ]
    if len(eligible) < 2:
        return GroupFigures(column, scores, counts, None, None, None)
    best = max(eligible, key=lambda name: scores[name])
    worst = min(eligible, key=lambda name: scores[name])
    return GroupFigures(
        column, scores, counts, scores[best] - scores[worst], best, worst
    )


def evaluate_predictions(
    rows: Sequence[PredictionRow],
    *,
    group_by: Sequence[str] = (),
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
) -> Evaluation:
    """Compute every figure for a prediction table.

    Rows whose label is outside :data:`EMOTIONS` (contempt) are set aside as
    ``excluded``; rows without a prediction are ``no_face`` and left out of the
    classification figures but counted and listed.
    """
    in_scope = [r for r in rows if r.label in EMOTIONS]
    excluded = tuple(r for r in rows if r.label not in EMOTIONS)
    predicted = [r for r in in_scope if r.predicted is not None]
    no_face = tuple(r for r in in_scope if r.predicted is None)

    overall = classification_metrics(
        [r.label for r in predicted], [r.predicted or "" for r in predicted]
    )
    ece, table = expected_calibration_error(
        [r.confidence or 0.0 for r in predicted],
        [r.label == r.predicted for r in predicted],
    )
    groups = tuple(group_figures(predicted, column) for column in group_by)
    review = tuple(r for r in predicted if (r.confidence or 0.0) < review_threshold)
    return Evaluation(
        overall,
        ece,
        tuple(table),
        groups,
        no_face,
        review,
        excluded,
        tuple(rows),
        review_threshold,
    )


def predict_samples(
    samples: Sequence[Sample], classifier: EmotionClassifier
) -> list[PredictionRow]:
    """Run ``classifier`` on every sample's face and return the prediction table.

    A sample without a face gives a row with ``predicted=None`` and the reason
    in ``note``.
    """
    table: list[PredictionRow] = []
    for sample in samples:
        row = sample.row
        if sample.face is None:
            table.append(
                PredictionRow(
                    row.relative_path,
                    row.label,
                    None,
                    groups=row.groups,
                    note=sample.error or "no face found",
                )
            )
            continue
        estimate = classifier.classify(extract_features(sample.face), face=sample.face)
        evidence = ", ".join(f"{name} {value:.2f}" for name, value in estimate.evidence)
        table.append(
            PredictionRow(
                row.relative_path,
                row.label,
                estimate.label,
                estimate.confidence,
                dict(estimate.probabilities),
                row.groups,
                evidence,
                ",".join(estimate.flags),
            )
        )
    return table


# -- report --------------------------------------------------------------------


def _plot_confusion(metrics: ClassificationMetrics, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(metrics.confusion, dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(metrics.labels)), metrics.labels, rotation=45, ha="right")
    ax.set_yticks(range(len(metrics.labels)), metrics.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    top = matrix.max() if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            colour = "white" if top and matrix[i, j] > top / 2 else "black"
            ax.text(
                j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour
            )
    ax.set_title(f"Confusion matrix (macro-F1 {metrics.macro_f1:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_reliability(
    table: Sequence[tuple[float, float, float, int]], ece: float, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 1.0 / len(table)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    lefts = [upper - width for upper, _, _, _ in table]
    accuracy = [acc if n else 0.0 for _, _, acc, n in table]
    ax.bar(
        lefts, accuracy, width=width, align="edge", edgecolor="black", label="accuracy"
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for left, (_, conf, _, n) in zip(lefts, table):
        if n:
            ax.plot(left + width / 2, conf, "o", color="red")
            ax.text(left + width / 2, 0.02, str(n), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("stated confidence")
    ax.set_ylabel("share correct")
    ax.set_title(f"Reliability (ECE {ece:.3f}; dots: mean confidence)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_csv(rows: Sequence[PredictionRow], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["path", "label", "predicted", "confidence", "evidence", "note"]
            + [f"p_{c}" for c in EMOTIONS]
        )
        for r in rows:
            writer.writerow(
                [
                    r.path,
                    r.label,
                    r.predicted or "",
                    "" if r.confidence is None else f"{r.confidence:.4f}",
                    r.evidence,
                    r.note,
                ]
                + [
                    f"{r.probabilities.get(c, 0.0):.4f}" if r.probabilities else ""
                    for c in EMOTIONS
                ]
            )


def confusion_text(metrics: ClassificationMetrics) -> str:
    """Return the confusion matrix as a fixed-width text table (rows: true labels)."""
    width = max(len(c) for c in metrics.labels) + 1
    lines = [
        "true \\ pred".ljust(width + 2)
        + "".join(c[:9].rjust(10) for c in metrics.labels)
    ]
    for label, row in zip(metrics.labels, metrics.confusion):
        lines.append(label.ljust(width + 2) + "".join(str(v).rjust(10) for v in row))
    return "\n".join(lines)


def format_repeated_summary(evaluations: list[Evaluation]) -> str:
    """Return mean (min-max) headline figures over repeated cross-validations.

    Each repetition splits the subjects into folds with its own seed, so the
    spread shows how much the figures depend on which people share a fold.
    """

    def spread(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    first = evaluations[0]
    lines = [
        (
            f"photos: {len(first.rows)} ({len(first.no_face)} with no face, "
            f"{len(first.excluded)} excluded labels); mean (min-max) of "
            f"{len(evaluations)} repetitions"
        ),
        "macro-F1: " + spread([e.overall.macro_f1 for e in evaluations]),
        "accuracy: " + spread([e.overall.accuracy for e in evaluations]),
        "ECE: " + spread([e.ece for e in evaluations]),
        "F1 per class: "
        + ", ".join(
            f"{c} {np.mean([e.overall.f1[c] for e in evaluations]):.2f}"
            for c in first.overall.labels
        ),
    ]
    for g, group in enumerate(first.groups):
        parts = ", ".join(
            f"{value} {spread([e.groups[g].macro_f1[value] for e in evaluations])}"
            for value in group.macro_f1
        )
        lines.append(f"macro-F1 by {group.column}: {parts}")
    return "\n".join(lines)


def format_summary(evaluation: Evaluation) -> str:
    """Return the headline figures as a few plain lines."""
    m = evaluation.overall
    lines = [
        (
            f"photos: {len(evaluation.rows)} ({len(evaluation.no_face)} with no face, "
            f"{len(evaluation.excluded)} excluded labels)"
        ),
        (
            f"macro-F1: {m.macro_f1:.3f}  accuracy: {m.accuracy:.3f}  "
            f"ECE: {evaluation.ece:.3f}"
        ),
    ]
    for g in evaluation.groups:
        parts = ", ".join(
            f"{k} {v:.3f} (n={g.count[k]})" for k, v in g.macro_f1.items()
        )
        gap = "n/a" if g.gap is None else f"{g.gap:.3f} ({g.best} - {g.worst})"
        lines.append(f"macro-F1 by {g.column}: {parts}; gap {gap}")
    return "\n".join(lines)


def write_report(
    evaluation: Evaluation,
    output_dir: Path,
    *,
    title: str = "AIRCTRL emotion evaluation",
    notes: Sequence[str] = (),
) -> Path:
    """Write report.md, confusion.png, reliability.png, predictions.csv and review.csv.

    Returns the report path. The folder is created when missing.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    m = evaluation.overall
    _plot_confusion(m, output_dir / "confusion.png")
    _plot_reliability(
        evaluation.reliability, evaluation.ece, output_dir / "reliability.png"
    )
    _write_csv(evaluation.rows, output_dir / "predictions.csv")
    _write_csv(evaluation.review, output_dir / "review.csv")

    lines = [f"# {title}", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        (
            f"- Photos in manifest: {len(evaluation.rows)}; classified: {m.count}; "
            f"no face: {len(evaluation.no_face)}; excluded labels (contempt): "
            f"{len(evaluation.excluded)}"
        ),
        f"- **Macro-F1 (7 classes): {m.macro_f1:.3f}**, accuracy {m.accuracy:.3f}",
        (
            f"- **ECE: {evaluation.ece:.3f}** ({ECE_BINS} bins), reliability diagram: "
            "![reliability](reliability.png)"
        ),
        (
            f"- Predictions under confidence {evaluation.review_threshold:.2f} "
            "for human review: "
            f"{len(evaluation.review)} (review.csv)"
        ),
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for c in m.labels:
        lines.append(
            f"| {c} | {m.precision[c]:.3f} | {m.recall[c]:.3f} | {m.f1[c]:.3f} | "
            f"{m.support[c]} |"
        )
    lines += [
        "",
        "## Confusion matrix",
        "",
        "```",
        confusion_text(m),
        "```",
        "",
        "![confusion matrix](confusion.png)",
        "",
    ]
    for g in evaluation.groups:
        lines += [
            f"## Macro-F1 by {g.column}",
            "",
            "| group | photos | macro-F1 |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {g.count[k]} | {v:.3f} |" for k, v in g.macro_f1.items()]
        gap = (
            "n/a (fewer than two groups with enough photos)"
            if g.gap is None
            else (f"{g.gap:.3f} (best {g.best}, worst {g.worst})")
        )
        lines += [
            "",
            (
                f"Best-worst gap (groups with >= {MIN_GROUP_SIZE} photos, "
                f"'unknown' left out): {gap}"
            ),
            "",
        ]
    lines += ["## Photos with no face", ""]
    lines += [f"- {r.path} ({r.note})" for r in evaluation.no_face] or ["- none"]
    if evaluation.excluded:
        lines += ["", "## Excluded labels", ""]
        lines += [f"- {r.path} ({r.label})" for r in evaluation.excluded]
    path = output_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("Evaluation report written to %s", path)
    return path
