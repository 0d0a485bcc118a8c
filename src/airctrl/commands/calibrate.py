"""``airctrl calibrate``: fit the emotion model's parameters on labelled photos."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

from airctrl.assets import sha256_of_file
from airctrl.calibration import (
    DEFAULT_C,
    DEFAULT_FOLDS,
    DEFAULT_KNOT,
    DEFAULT_SEED,
    FitOptions,
    cross_validated_params,
    fit_params,
    subject_of,
)
from airctrl.config import Settings, StillSearch, with_overrides
from airctrl.dataset import CONTEMPT_POLICY, Sample, extract_samples, read_manifest
from airctrl.emotions import EmotionClassifier, EmotionParams
from airctrl.evaluation import (
    Evaluation,
    evaluate_predictions,
    format_repeated_summary,
    format_summary,
    predict_samples,
)

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

#: Repetitions of the cross-validation: with ten fear and nineteen disgust
#: photos, one split's macro-F1 moves by about 0.03 with the fold seed alone.
DEFAULT_CV_REPEATS = 5
#: The ``detection.still_search`` values; the fit reads "thorough" by default.
SEARCHES: tuple[str, ...] = get_args(StillSearch)


def register(subparsers: Any) -> None:
    """Add the ``calibrate`` subcommand."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the emotion model's parameters on a labelled photo manifest",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help="CSV with path (relative to the CSV's folder), label, subject, ...",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("reports/calibration/emotion_params.json"),
        help="parameter file to write (the shipped one is "
        "src/airctrl/data/emotion_params.json)",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports/calibration"),
        help="folder for the calibration report",
    )
    parser.add_argument(
        "--cv",
        action="store_true",
        help="also report subject-disjoint cross-validated figures",
    )
    parser.add_argument(
        "--folds", type=int, default=DEFAULT_FOLDS, help="cross-validation folds"
    )
    parser.add_argument(
        "--cv-repeats",
        type=int,
        default=DEFAULT_CV_REPEATS,
        help="repetitions of the cross-validation, each with new folds",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="random seed for the folds"
    )
    parser.add_argument(
        "--c", type=float, default=DEFAULT_C, help="inverse L2 regularisation strength"
    )
    parser.add_argument(
        "--knot",
        type=float,
        default=DEFAULT_KNOT,
        help="blendshape score (0..1) where each unit's contribution may bend; "
        "0 fits straight lines",
    )
    parser.add_argument(
        "--prototype-terms",
        action="store_true",
        help="also give the model EMFACS prototype terms (geometric means of units)",
    )
    parser.add_argument(
        "--search",
        choices=SEARCHES,
        default="thorough",
        help=(
            "still-image face search whose faces the fit reads (with --cv the "
            "out-of-fold parameters are also scored on the other search)"
        ),
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, settings: Settings) -> int:
    if args.folds < 2:
        raise ValueError(f"--folds: expected at least 2, got {args.folds}")
    if args.cv_repeats < 1:
        raise ValueError(f"--cv-repeats: expected at least 1, got {args.cv_repeats}")
    if not args.c > 0:
        raise ValueError(f"--c: expected a positive number, got {args.c}")
    if not 0 <= args.knot < 1:
        raise ValueError(f"--knot: expected a number in [0, 1), got {args.knot}")
    summary = run(
        args.manifest,
        args.output,
        args.report_dir,
        settings,
        options=FitOptions(
            c=args.c,
            knot=args.knot or None,
            folds=args.folds,
            seed=args.seed,
            use_prototypes=args.prototype_terms,
        ),
        cv=args.cv,
        cv_repeats=args.cv_repeats,
        search=args.search,
    )
    print(summary)
    return 0


def run(
    manifest: Path,
    output: Path,
    report_dir: Path,
    settings: Settings,
    *,
    options: FitOptions,
    cv: bool = False,
    cv_repeats: int = DEFAULT_CV_REPEATS,
    search: str = "thorough",
) -> str:
    """Fit, write the parameter file and report; return a short text summary.

    The fit reads the faces that the ``search`` still-image search finds
    (``detection.still_search``). With ``cv``, the whole fit is also
    cross-validated ``cv_repeats`` times, each with folds split by subject under
    seeds ``options.seed``, ``options.seed + 1``, ...; the held-out photos are
    scored both as that search and as the other one finds them, so the report
    gives the figures of both settings for the one parameter file.
    """
    rows, dropped = read_manifest(manifest)
    samples = extract_samples(rows, _with_search(settings, search))
    no_face = [s for s in samples if s.face is None]
    params = fit_params(
        samples,
        options,
        meta={
            "manifest_sha256": sha256_of_file(manifest),
            "no_face": len(no_face),
            "dropped_contempt": len(dropped),
        },
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(params.to_dict(), indent=1, sort_keys=False) + "\n", encoding="utf-8"
    )
    logger.info("Emotion parameters written to %s", output)

    lines = [
        "# AIRCTRL calibration",
        "",
        f"- Manifest: {manifest} ({len(rows) + len(dropped)} photos)",
        f"- Contempt: {CONTEMPT_POLICY} ({len(dropped)} photos left out)",
        f"- No face found: {len(no_face)}"
        + (
            " (" + ", ".join(s.row.relative_path for s in no_face) + ")"
            if no_face
            else ""
        ),
        (
            f"- Fitted on {params.meta['photos']} photos; C={options.c}, "
            f"knot={options.knot}, seed={options.seed}, "
            f"temperature {params.temperature:.3f}"
        ),
        f"- Parameter file: {output}",
    ]
    fitted = predict_samples(samples, EmotionClassifier(params))
    in_sample = evaluate_predictions(fitted, group_by=("dataset",))
    lines += [
        "",
        "## On the fitting photos (optimistic)",
        "",
        "```",
        format_summary(in_sample),
        "```",
    ]
    if cv:
        other = next(name for name in SEARCHES if name != search)
        scored = {
            search: samples,
            other: extract_samples(rows, _with_search(settings, other)),
        }
        # Each repetition's folds are fitted once and score both searches.
        folds = [
            cross_validated_params(samples, replace(options, seed=options.seed + r))
            for r in range(cv_repeats)
        ]
        last_seed = options.seed + cv_repeats - 1
        for name, held_out in scored.items():
            evaluations = [evaluate_folds(one, samples, held_out) for one in folds]
            lines += [
                "",
                (
                    f"## Subject-disjoint {options.folds}-fold cross-validation, "
                    f"{cv_repeats} repetitions (fold seeds {options.seed}-"
                    f"{last_seed}); fitted on the {search} search, scored on "
                    f"the {name} search"
                ),
                "",
                "```",
                format_repeated_summary(evaluations),
                "```",
                "",
                f"First repetition (fold seed {options.seed}):",
                "",
                "```",
                format_summary(evaluations[0]),
                "```",
            ]
    report_dir.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    (report_dir / "calibration_report.md").write_text(text, encoding="utf-8")
    return text


def _with_search(settings: Settings, search: str) -> Settings:
    """Return ``settings`` with ``detection.still_search`` set to ``search``."""
    return with_overrides(settings, {"detection.still_search": search})


def cross_validated_evaluation(
    samples: list[Sample],
    options: FitOptions,
    held_out_samples: list[Sample] | None = None,
) -> Evaluation:
    """Return the evaluation of out-of-fold predictions (folds split by subject).

    The folds are fitted on ``samples``; each held-out photo is scored as it
    appears in ``held_out_samples`` (see :func:`evaluate_folds`; default:
    ``samples`` itself).

    Raises:
        ValueError: ``held_out_samples`` does not have one sample per sample.
    """
    scored = samples if held_out_samples is None else held_out_samples
    return evaluate_folds(cross_validated_params(samples, options), samples, scored)


def evaluate_folds(
    folds: list[tuple[list[int], EmotionParams]],
    fitted: list[Sample],
    scored: list[Sample],
) -> Evaluation:
    """Score ``scored`` with the parameters of the fold that held each photo out.

    ``folds`` come from :func:`cross_validated_params` on ``fitted``;
    ``scored`` holds the same rows in the same order, their faces perhaps found
    another way. A photo with no face in ``scored`` is listed as no face. A
    photo whose face only ``scored`` has was never split into a fold; it is
    scored by the fold that held its subject out, so no photo is scored by
    parameters fitted on its own subject (the last fold when no photo of the
    subject was usable).

    Raises:
        ValueError: ``scored`` does not have one sample per ``fitted`` sample.
    """
    if len(scored) != len(fitted):
        raise ValueError(
            f"held_out_samples: expected {len(fitted)} samples, got {len(scored)}"
        )
    if not folds:
        raise ValueError("folds: expected at least one fold")
    table = []
    fold_of_subject: dict[str, EmotionParams] = {}
    for held_out, params in folds:
        classifier = EmotionClassifier(params)
        faces = [scored[i] for i in held_out if scored[i].face is not None]
        table.extend(predict_samples(faces, classifier))
        fold_of_subject.update({subject_of(fitted[i]): params for i in held_out})

    last = folds[-1][1]
    for one, used in zip(scored, fitted):
        if one.face is None:
            table.extend(predict_samples([one], EmotionClassifier(last)))
        elif used.face is None:
            params = fold_of_subject.get(subject_of(one), last)
            table.extend(predict_samples([one], EmotionClassifier(params)))
    return evaluate_predictions(table, group_by=("dataset",))
