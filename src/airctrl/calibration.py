"""Fitting the emotion model's parameters on labelled faces.

:func:`fit_params` turns labelled faces (read and cached by
:mod:`airctrl.dataset`) into the parameters of :mod:`airctrl.emotions`;
``airctrl calibrate`` drives it.

Limitation: the shipped parameters were fitted on 1,038 dev photos, nine in
ten of them grayscale news crops with crowd labels on which two annotators
agreed about half the time, and only 10 fear and 19 disgust photos. Fear and
disgust are therefore recognised mostly through the EMFACS prior and rarely
on real photos; refitting on a larger, cleaner labelled set (same command)
is the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from airctrl.dataset import CONTEMPT_POLICY, Sample
from airctrl.emotions import (
    GEOMETRY_TERMS,
    MODEL_UNITS,
    PROTOTYPES,
    EmotionParams,
    term_values,
    transform_terms,
)
from airctrl.features import Features, extract_features
from airctrl.types import EMOTIONS

__all__ = [
    "ANCHOR_PATTERNS",
    "FitOptions",
    "cross_validated_params",
    "fit_params",
    "fit_temperature",
    "prototype_anchors",
    "prototype_units",
    "resting_levels",
    "subject_of",
]

logger = logging.getLogger(__name__)


#: Inverse L2 strength of the logistic regression on standardised terms. Chosen
#: by subject-disjoint cross-validation on the dev set (5 fold seeds) over
#: 0.03..0.3 together with the knot: with bends, 0.03-0.1 scored within 0.007
#: macro-F1 of each other and 0.05 best; weaker regularisation overfits the
#: doubled term count.
DEFAULT_C = 0.05
#: Where each unit's contribution may bend (0..1 blendshape score; see
#: :mod:`airctrl.emotions`). Chosen with ``DEFAULT_C``: knots 0.15-0.25 scored
#: 0.486-0.494 subject-disjoint macro-F1 (0.477 with no bend, 0.476 at 0.3).
#: Fear gained most: a strong jaw drop or lip stretch means more than a slight
#: one.
DEFAULT_KNOT = 0.2
#: Folds for subject-disjoint cross-validation (and the inner split that
#: produces out-of-fold scores for the temperature).
DEFAULT_FOLDS = 5
DEFAULT_SEED = 0
#: How far datasets (the manifest's dataset column) are re-weighted towards equal
#: total weight: a small carefully labelled set is not drowned by a large
#: crowd-labelled one, without letting its few faces dominate either.
DATASET_BALANCE_POWER = 0.5
#: How far classes are re-weighted towards equal weight (1 = fully balanced).
BALANCE_POWER = 0.5
#: Each EMFACS prototype face (see :func:`prototype_anchors`) counts as this
#: many photos. Enough to pin the textbook cases down without outvoting data.
ANCHOR_WEIGHT = 10.0
#: Value given to the action units of a prototype anchor (0..1 blendshape score;
#: a clearly visible but not maximal expression).
ANCHOR_LEVEL = 0.6

#: Each anchor pattern is repeated at these multiples of its listed values (a
#: mild and a strong version), so the prior holds across intensities.
ANCHOR_STRENGTHS = (0.75, 1.5)

#: Textbook action-unit patterns per class (EMFACS prototypes, written with our
#: unit names). Units not listed stay at the population's resting level.
ANCHOR_PATTERNS: dict[str, tuple[dict[str, float], ...]] = {
    "neutral": ({},),
    "happy": (
        {"cheek_raise": ANCHOR_LEVEL, "lip_corner_pull": 0.8},
        {"lip_corner_pull": ANCHOR_LEVEL},
    ),
    "sad": (
        {"inner_brow_raise": ANCHOR_LEVEL, "lip_corner_depress": ANCHOR_LEVEL},
        {
            "inner_brow_raise": ANCHOR_LEVEL,
            "brow_lower": 0.3,
            "lip_corner_depress": ANCHOR_LEVEL,
            "chin_raise": 0.4,
        },
    ),
    "angry": (
        {
            "brow_lower": ANCHOR_LEVEL,
            "lid_tighten": ANCHOR_LEVEL,
            "lip_press": ANCHOR_LEVEL,
        },
        {
            "brow_lower": ANCHOR_LEVEL,
            "upper_lid_raise": 0.4,
            "lid_tighten": ANCHOR_LEVEL,
        },
    ),
    "surprised": (
        {
            "inner_brow_raise": ANCHOR_LEVEL,
            "outer_brow_raise": ANCHOR_LEVEL,
            "jaw_drop": ANCHOR_LEVEL,
        },
        {
            "inner_brow_raise": ANCHOR_LEVEL,
            "outer_brow_raise": ANCHOR_LEVEL,
            "upper_lid_raise": 0.4,
            "jaw_drop": ANCHOR_LEVEL,
            "lower_lip_depress": 0.3,
        },
    ),
    "fear": (
        {
            "inner_brow_raise": ANCHOR_LEVEL,
            "outer_brow_raise": 0.4,
            "brow_lower": ANCHOR_LEVEL,
            "upper_lid_raise": ANCHOR_LEVEL,
            "lip_stretch": ANCHOR_LEVEL,
        },
        {
            "inner_brow_raise": ANCHOR_LEVEL,
            "brow_lower": ANCHOR_LEVEL,
            "upper_lid_raise": ANCHOR_LEVEL,
            "lip_stretch": ANCHOR_LEVEL,
            "jaw_drop": 0.3,
        },
    ),
    "disgust": (
        {"nose_wrinkle": ANCHOR_LEVEL, "upper_lip_raise": ANCHOR_LEVEL},
        {
            "nose_wrinkle": ANCHOR_LEVEL,
            "upper_lip_raise": 0.4,
            "brow_lower": 0.3,
            "lip_corner_depress": 0.3,
        },
    ),
}


@dataclass(frozen=True)
class FitOptions:
    """How :func:`fit_params` fits.

    Regularisation, bend knot (None: straight lines), folds, seed, anchor
    weight and sample weighting.
    """

    c: float = DEFAULT_C
    knot: float | None = DEFAULT_KNOT
    folds: int = DEFAULT_FOLDS
    seed: int = DEFAULT_SEED
    anchor_weight: float = ANCHOR_WEIGHT
    subject_weighting: bool = True
    use_geometry: bool = True
    use_prototypes: bool = False
    dataset_balance_power: float = DATASET_BALANCE_POWER
    balance_power: float = BALANCE_POWER


def _units_of(sample: Sample) -> dict[str, float]:
    if sample.face is None:
        raise ValueError("sample has no face")
    return dict(extract_features(sample.face).values)


def _design(
    rows: Sequence[Mapping[str, float]], terms: Sequence[str], knot: float | None
) -> np.ndarray:
    """Return the model matrix: transformed term values (missing: 0), then bends.

    Shape (n, terms) without a knot, (n, 2 * terms) with one: column
    ``len(terms) + j`` holds term j's part past the knot (0 for geometry).
    """
    width = len(terms) * (1 if knot is None else 2)
    matrix = np.zeros((len(rows), width), dtype=np.float64)
    for i, values in enumerate(rows):
        line, past, _ = transform_terms(term_values(Features(values)), terms, knot)
        matrix[i] = line if knot is None else np.concatenate([line, past])
    return matrix


def resting_levels(
    unit_rows: list[Mapping[str, float]], labels: list[str]
) -> dict[str, float]:
    """Return the median of each action unit and geometry ratio over neutral rows.

    Units default to 0 and geometry ratios to their median over all rows when
    no row is neutral.
    """
    neutral = [row for row, label in zip(unit_rows, labels) if label == "neutral"]
    reference = neutral or list(unit_rows)
    rest = {
        unit: float(np.median([row.get(unit, 0.0) for row in neutral]))
        if neutral
        else 0.0
        for unit in MODEL_UNITS
    }
    for name in GEOMETRY_TERMS:
        rest[name] = float(np.median([row.get(name, 0.0) for row in reference]))
    return rest


def prototype_anchors(
    rest: Mapping[str, float],
) -> tuple[list[dict[str, float]], list[str]]:
    """Return textbook prototype faces (unit values) and their labels.

    Every pattern appears twice: over the population's resting levels and over
    a perfectly still face (every unit 0); a still face itself is neutral.
    Geometry stays at its resting level in every anchor. They act as a prior:
    a fitted model must still call a textbook surprise surprised, however noisy
    the photos' labels were.
    """
    rows: list[dict[str, float]] = []
    labels: list[str] = []
    still = {
        name: (0.0 if name in MODEL_UNITS else value) for name, value in rest.items()
    }
    for background in (dict(rest), still):
        for label, patterns in ANCHOR_PATTERNS.items():
            for pattern in patterns:
                for strength in ANCHOR_STRENGTHS:
                    row = dict(background)
                    row.update({u: min(1.0, v * strength) for u, v in pattern.items()})
                    rows.append(row)
                    labels.append(label)
    return rows, labels


def subject_of(sample: Sample) -> str:
    """Return the sample's subject; a photo without one counts as its own."""
    return sample.row.groups.get("subject") or sample.row.relative_path


def _subject_weights(samples: list[Sample]) -> np.ndarray:
    """Weight each photo 1/sqrt(photos of its subject), so one often-photographed
    person does not dominate; photos without a subject count as their own."""
    counts: dict[str, int] = {}
    keys = [subject_of(s) for s in samples]
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return np.array([1.0 / np.sqrt(counts[k]) for k in keys])


def _dataset_factors(samples: list[Sample], power: float) -> np.ndarray:
    """Return per-photo factors moving each dataset's share towards equal."""
    names = [s.row.groups.get("dataset") or "unknown" for s in samples]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    mean = len(names) / len(counts)
    return np.array([(mean / counts[name]) ** power for name in names])


def _balanced(
    labels: np.ndarray, weights: np.ndarray, n_classes: int, power: float
) -> np.ndarray:
    """Scale ``weights`` towards equal total weight per class.

    ``power`` 1 gives every class present the same total; 0.5 only halfway (on a
    log scale), so a class with ten photos is not blown up into a tenth of the
    fit, which made it learn the quirks of those ten faces.
    """
    out = weights.copy()
    present = [c for c in range(n_classes) if np.any(labels == c)]
    for c in present:
        mask = labels == c
        out[mask] *= (weights.sum() / (len(present) * weights[mask].sum())) ** power
    return out


def _fit_linear(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, options: FitOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit multinomial logistic regression.

    Returns (center, weights of shape (classes, terms), bias) on the raw scale.
    """
    from sklearn.linear_model import LogisticRegression

    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    model = LogisticRegression(C=options.c, max_iter=5000, tol=1e-8)
    model.fit((x - center) / scale, y, sample_weight=w)
    weights = np.zeros((len(EMOTIONS), x.shape[1]))
    bias = np.full(len(EMOTIONS), -30.0)  # a class absent from the data is never chosen
    for row, cls in enumerate(model.classes_):
        weights[int(cls)] = model.coef_[row] / scale
        bias[int(cls)] = model.intercept_[row]
    return center, weights, bias


def prototype_units(label: str) -> frozenset[str]:
    """Return the action units of ``label``'s main EMFACS pattern."""
    patterns = ANCHOR_PATTERNS.get(label, ())
    return frozenset(patterns[0]) if patterns else frozenset()


def _project_monotone(weights: np.ndarray, terms: Sequence[str]) -> None:
    """Keep each class's slope on its own prototype units >= 0, in place.

    More of a class's textbook movement must never lower that class's score.
    With only ten fear photos the unconstrained fit can give e.g. "brow lower"
    a small negative fear weight; the projection sets it to 0 instead. With
    bends (``weights`` twice as wide as ``terms``) the slope past the knot,
    weight plus bend, is kept >= 0 as well.
    """
    n = len(terms)
    for k, label in enumerate(EMOTIONS):
        for unit in prototype_units(label):
            if unit in terms:
                j = list(terms).index(unit)
                weights[k, j] = max(0.0, weights[k, j])
                if weights.shape[1] == 2 * n:
                    weights[k, n + j] = max(-weights[k, j], weights[k, n + j])


def _scores(
    x: np.ndarray, center: np.ndarray, weights: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    scores: np.ndarray = (x - center) @ weights.T + bias
    return scores


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """Return the temperature T minimising the log loss of softmax(scores / T)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def loss(log_t: float) -> float:
        logp = log_softmax(scores / np.exp(log_t), axis=1)
        return float(-logp[np.arange(len(y)), y].mean())

    result = minimize_scalar(
        loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded"
    )
    return float(np.exp(result.x))


def _folds(
    labels: np.ndarray, groups: list[str], n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-disjoint stratified folds (StratifiedGroupKFold on the subject)."""
    from sklearn.model_selection import StratifiedGroupKFold

    counts = np.bincount(labels)
    n_splits = max(2, min(n_splits, len(set(groups))))
    if counts[counts > 0].min() < n_splits:
        logger.debug("Some class has fewer photos than folds; folds will lack it")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def _fit_core(
    unit_rows: list[Mapping[str, float]],
    labels: list[str],
    sample_weights: np.ndarray,
    options: FitOptions,
    terms: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    rest = resting_levels(unit_rows, labels)
    anchor_rows, anchor_labels = prototype_anchors(rest)
    y = np.array([EMOTIONS.index(label) for label in labels])
    w = _balanced(y, sample_weights, len(EMOTIONS), options.balance_power)
    w = w / w.mean()
    y_all = np.concatenate([y, [EMOTIONS.index(a) for a in anchor_labels]])
    w_all = np.concatenate([w, np.full(len(anchor_rows), options.anchor_weight)])
    x_all = _design(list(unit_rows) + list(anchor_rows), terms, options.knot)
    center, weights, bias = _fit_linear(x_all, y_all, w_all, options)
    _project_monotone(weights, terms)
    # Centre on the photos only, so contributions compare with a real average face.
    photo_center = x_all[: len(unit_rows)].mean(axis=0)
    bias = bias + (photo_center - center) @ weights.T
    return photo_center, weights, bias, rest


def fit_params(
    samples: list[Sample],
    options: FitOptions | None = None,
    *,
    meta: Mapping[str, object] | None = None,
) -> EmotionParams:
    """Fit the emotion model's parameters on labelled samples with a face.

    Multinomial logistic regression (scikit-learn) over the model terms, each
    unit with a second slope past ``options.knot`` (its bend), with classes and
    datasets partly balanced, each photo weighted 1/sqrt(photos of the same
    subject), the EMFACS prototype anchors added as a prior, and each class's
    weights on its own prototype units kept >= 0 before and past the bend. The
    temperature is fitted on out-of-fold scores from subject-disjoint folds, so
    stated confidence matches accuracy on unseen people. Deterministic for a
    given seed.

    Raises:
        ValueError: no sample has a face, or fewer than two classes are present.
    """
    options = options or FitOptions()
    usable = [s for s in samples if s.face is not None]
    if not usable:
        raise ValueError("samples: no photo with a face to fit on")
    labels = [s.row.label for s in usable]
    if len(set(labels)) < 2:
        raise ValueError("samples: need at least two classes to fit")
    unit_rows: list[Mapping[str, float]] = [_units_of(s) for s in usable]
    weights_photo = (
        _subject_weights(usable) if options.subject_weighting else np.ones(len(usable))
    )
    weights_photo = weights_photo * _dataset_factors(
        usable, options.dataset_balance_power
    )
    groups = [subject_of(s) for s in usable]
    y = np.array([EMOTIONS.index(label) for label in labels])

    terms = (
        MODEL_UNITS
        + (tuple(PROTOTYPES) if options.use_prototypes else ())
        + (GEOMETRY_TERMS if options.use_geometry else ())
    )
    center, weights, bias, rest = _fit_core(
        unit_rows, labels, weights_photo, options, terms
    )

    oof = np.zeros((len(usable), len(EMOTIONS)))
    for train, test in _folds(y, groups, options.folds, options.seed):
        c, w, b, _ = _fit_core(
            [unit_rows[i] for i in train],
            [labels[i] for i in train],
            weights_photo[train],
            options,
            terms,
        )
        x_test = _design([unit_rows[i] for i in test], terms, options.knot)
        oof[test] = _scores(x_test, c, w, b)
    temperature = fit_temperature(oof, y)

    info: dict[str, object] = {
        "fitted_by": "airctrl calibrate",
        "photos": len(usable),
        "per_class": {c: labels.count(c) for c in EMOTIONS},
        "contempt": CONTEMPT_POLICY,
        "options": asdict(options),
    }
    info.update(meta or {})
    n = len(terms)
    bend_center: dict[str, float] = {}
    bends: dict[str, dict[str, float]] = {}
    if options.knot is not None:
        bend_center = {t: float(center[n + j]) for j, t in enumerate(terms)}
        bends = {
            c: {t: float(weights[k, n + j]) for j, t in enumerate(terms)}
            for k, c in enumerate(EMOTIONS)
        }
    return EmotionParams(
        classes=EMOTIONS,
        terms=terms,
        center={t: float(center[j]) for j, t in enumerate(terms)},
        weights={
            c: {t: float(weights[k, j]) for j, t in enumerate(terms)}
            for k, c in enumerate(EMOTIONS)
        },
        bias={c: float(bias[k]) for k, c in enumerate(EMOTIONS)},
        temperature=temperature,
        rest=rest,
        meta=info,
        knot=options.knot,
        bend_center=bend_center,
        bends=bends,
    )


def cross_validated_params(
    samples: list[Sample], options: FitOptions | None = None
) -> list[tuple[list[int], EmotionParams]]:
    """Fit the whole procedure on each subject-disjoint training fold.

    Returns (indices into ``samples`` held out, parameters fitted without them)
    per fold. Only samples with a face are split; the temperature inside each
    fold comes from that fold's own inner split.
    """
    options = options or FitOptions()
    usable = [i for i, s in enumerate(samples) if s.face is not None]
    y = np.array([EMOTIONS.index(samples[i].row.label) for i in usable])
    groups = [subject_of(samples[i]) for i in usable]
    result = []
    for train, test in _folds(y, groups, options.folds, options.seed):
        params = fit_params([samples[usable[i]] for i in train], options)
        result.append(([usable[i] for i in test], params))
    return result
