"""Tests for evaluation figures on tiny hand-made prediction tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from airctrl.evaluation import (
    Evaluation,
    PredictionRow,
    evaluate_predictions,
    expected_calibration_error,
    group_figures,
    write_report,
)


def row(
    label: str, predicted: str | None, confidence: float = 0.9, **groups: str
) -> PredictionRow:
    return PredictionRow(
        f"{label}-{predicted}-{confidence}",
        label,
        predicted,
        None if predicted is None else confidence,
        {},
        groups,
    )


# Seven photos with a face, one without, one contempt:
#   happy  -> happy, happy, sad        (group a, a, b)
#   sad    -> sad, happy               (group b, b)
#   neutral-> neutral, happy           (group a, a)
# happy: TP 2, FP 2, FN 1 -> P 1/2, R 2/3, F1 4/7
# sad:   TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 1/2
# neutral: TP 1, FN 1 -> P 1, R 1/2, F1 2/3; other four classes F1 0
# macro-F1 over 7 = (4/7 + 1/2 + 2/3) / 7 = 73/294; accuracy 4/7
TABLE = [
    row("happy", "happy", 0.9, dataset="a"),
    row("happy", "happy", 0.8, dataset="a"),
    row("happy", "sad", 0.4, dataset="b"),
    row("sad", "sad", 0.7, dataset="b"),
    row("sad", "happy", 0.3, dataset="b"),
    row("neutral", "neutral", 0.95, dataset="a"),
    row("neutral", "happy", 0.6, dataset="a"),
    row("angry", None, dataset="a"),
    row("contempt", "disgust", dataset="a"),
]


@pytest.fixture()
def evaluation() -> Evaluation:
    return evaluate_predictions(TABLE, group_by=("dataset",), review_threshold=0.5)


def test_per_class_precision_recall_f1_match_hand_counts(
    evaluation: Evaluation,
) -> None:
    m = evaluation.overall
    assert m.precision["happy"] == pytest.approx(1 / 2)
    assert m.recall["happy"] == pytest.approx(2 / 3)
    assert m.f1["happy"] == pytest.approx(4 / 7)
    assert m.f1["sad"] == pytest.approx(1 / 2)
    assert m.recall["neutral"] == pytest.approx(1 / 2)
    assert m.f1["neutral"] == pytest.approx(2 / 3)
    assert m.f1["fear"] == 0.0
    assert m.macro_f1 == pytest.approx(73 / 294)
    assert m.accuracy == pytest.approx(4 / 7)


def test_no_face_and_excluded_rows_are_counted_not_dropped(
    evaluation: Evaluation,
) -> None:
    assert [r.label for r in evaluation.no_face] == ["angry"]
    assert [r.label for r in evaluation.excluded] == ["contempt"]
    assert evaluation.overall.count == 7
    assert len(evaluation.rows) == 9


def test_low_confidence_predictions_go_to_review(evaluation: Evaluation) -> None:
    assert sorted(r.confidence for r in evaluation.review) == [0.3, 0.4]


def test_group_macro_f1_and_gap_match_hand_counts() -> None:
    # Group a: happy->happy x2, neutral->neutral: classes present happy, neutral,
    # both F1 1 -> 1.0. Group b: happy->sad, sad->sad, sad->happy: classes
    # present happy (TP 0 -> F1 0) and sad (TP 1, FP 1, FN 1 -> 1/2) -> 1/4.
    rows = TABLE[:6]
    rows = (
        rows
        + [row("neutral", "neutral", dataset="a")] * 2
        + [row("sad", "sad", dataset="b")] * 2
    )
    # Extra rows keep both groups at >= 5 photos: a gets 2 more neutral (still
    # F1 1.0); b gets 2 more correct sad: sad TP 3, FP 1, FN 1 -> 3/4; happy 0
    # -> macro 3/8.
    figures = group_figures(rows, "dataset")
    assert figures.macro_f1["a"] == pytest.approx(1.0)
    assert figures.macro_f1["b"] == pytest.approx(3 / 8)
    assert figures.gap == pytest.approx(5 / 8)
    assert (figures.best, figures.worst) == ("a", "b")


def test_small_and_unknown_groups_are_left_out_of_the_gap() -> None:
    rows = [row("happy", "happy", dataset="a")] * 5 + [
        row("happy", "sad", dataset="unknown")
    ] * 9
    rows += [row("happy", "sad", dataset="tiny")]
    assert group_figures(rows, "dataset").gap is None


def test_ece_matches_hand_computation() -> None:
    # Bin (0.8, 0.9]: confidences 0.9, 0.9 with 1 hit -> |0.5 - 0.9| = 0.4, weight 2/4.
    # Bin (0.5, 0.6]: confidences 0.6, 0.6 with 1 hit -> |0.5 - 0.6| = 0.1, weight 2/4.
    ece, table = expected_calibration_error(
        [0.9, 0.9, 0.6, 0.6], [True, False, True, False]
    )
    assert ece == pytest.approx(0.25)
    assert [n for *_, n in table] == [0, 0, 0, 0, 0, 2, 0, 0, 2, 0]


def test_perfectly_calibrated_predictions_have_zero_ece() -> None:
    ece, _ = expected_calibration_error([0.75] * 4, [True, True, True, False])
    assert ece == pytest.approx(0.0)


def test_report_writes_markdown_figures_and_csvs(
    evaluation: Evaluation, tmp_path: Path
) -> None:
    report = write_report(evaluation, tmp_path / "out")
    for name in (
        "report.md",
        "confusion.png",
        "reliability.png",
        "predictions.csv",
        "review.csv",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 0
    text = report.read_text(encoding="utf-8")
    assert "Macro-F1 (7 classes): 0.248" in text
    assert "angry-None" in text  # the no-face photo is listed by path
    assert (tmp_path / "out" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "out" / "review.csv").read_text().splitlines()) == 3


def test_confidence_on_a_bin_edge_falls_in_the_lower_bin() -> None:
    _, table = expected_calibration_error([0.7], [True])
    assert [n for *_, n in table] == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
