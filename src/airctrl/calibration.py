"""Labelled photo sets: manifest reading and cached face extraction.

A manifest is a CSV with at least ``path`` (relative to the manifest's folder)
and ``label``; ``dataset``, ``subject``, ``sex``, ``age_group`` and
``ethnicity`` are optional grouping columns. Faces found in each photo are
cached as JSON keyed by the file's sha256, the landmarker model's sha256, the
detector's source and the detection options, so fitting and evaluation rerun
without the landmarker.

Fitting (:func:`fit_params`) turns labelled faces into the parameters of
:mod:`airctrl.emotions`; ``airctrl calibrate`` drives it.

Limitation: the shipped parameters were fitted on 1,038 dev photos, nine in
ten of them grayscale news crops with crowd labels on which two annotators
agreed about half the time, and only 10 fear and 19 disgust photos. Fear and
disgust are therefore recognised mostly through the EMFACS prior and rarely
on real photos; refitting on a larger, cleaner labelled set (same command)
is the fix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from airctrl.assets import default_cache_dir, resolve_model
from airctrl.config import Settings
from airctrl.emotions import (
    GEOMETRY_TERMS,
    MODEL_UNITS,
    PROTOTYPES,
    EmotionParams,
    term_values,
    transform,
)
from airctrl.errors import AirctrlError
from airctrl.features import Features, extract_features, with_padded_view
from airctrl.types import EMOTIONS, BoundingBox, FaceLandmarks, Frame, HeadPose

__all__ = [
    "ANCHOR_PATTERNS",
    "CONTEMPT_POLICY",
    "FaceCache",
    "FitOptions",
    "ManifestError",
    "ManifestRow",
    "Sample",
    "cross_validated_params",
    "extract_samples",
    "fit_params",
    "fit_temperature",
    "load_rgb",
    "prototype_anchors",
    "prototype_units",
    "read_manifest",
    "resting_levels",
]

logger = logging.getLogger(__name__)

#: Contempt is not one of the product's seven classes. Rows labelled contempt are
#: dropped from fitting and from the seven-class metrics (and counted as such in
#: reports): mapping it onto disgust would teach the disgust class a one-sided
#: smirk, which is not what disgust looks like.
CONTEMPT_POLICY = "drop"
_DROPPED_LABELS = frozenset({"contempt"})
_LABEL_ALIASES = {
    "surprise": "surprised",
    "anger": "angry",
    "happiness": "happy",
    "sadness": "sad",
    "fearful": "fear",
    "disgusted": "disgust",
}
#: Bump when the cached record layout or the extraction changes, so stale
#: entries are not read. 2: blendshapes averaged with a padded view.
CACHE_VERSION = 2


class ManifestError(AirctrlError):
    """The manifest CSV is missing, unreadable or lacks required columns."""
    http_status = 400


@dataclass(frozen=True)
class ManifestRow:
    """One labelled photo: its resolved path, label and grouping columns."""
    path: Path
    relative_path: str
    label: str
    groups: Mapping[str, str] = field(default_factory=dict)

    def group(self, column: str) -> str:
        """Return the value of grouping ``column`` ('unknown' when absent or empty)."""
        return self.groups.get(column) or "unknown"


@dataclass(frozen=True)
class Sample:
    """A manifest row with the face found in it (None when no face was found)."""
    row: ManifestRow
    face: FaceLandmarks | None
    error: str | None = None


def read_manifest(path: Path) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Read a manifest CSV and return (rows in the seven classes, dropped rows).

    Labels are lower-cased and common synonyms mapped ("surprise" ->
    "surprised"). Contempt rows are returned in the second list (see
    :data:`CONTEMPT_POLICY`).

    Raises:
        ManifestError: the file is missing, empty, lacks ``path``/``label``
            columns or holds a label outside the known set.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        missing = {"path", "label"} - columns
        if missing:
            raise ManifestError(
                f"manifest {path} lacks column(s) {', '.join(sorted(missing))}; "
                "expected at least path,label"
            )
        raw_rows = list(reader)
    if not raw_rows:
        raise ManifestError(f"manifest {path} has no rows")

    kept: list[ManifestRow] = []
    dropped: list[ManifestRow] = []
    base = path.parent
    for number, raw in enumerate(raw_rows, start=2):
        label = (raw.get("label") or "").strip().lower()
        label = _LABEL_ALIASES.get(label, label)
        relative = (raw.get("path") or "").strip()
        if not relative:
            raise ManifestError(f"manifest {path} line {number}: empty path")
        if label not in EMOTIONS and label not in _DROPPED_LABELS:
            raise ManifestError(
                f"manifest {path} line {number}: label {label!r} is not one of "
                f"{', '.join(EMOTIONS)} (or contempt)"
            )
        groups = {
            k: (v or "").strip()
            for k, v in raw.items()
            if k not in ("path", "label") and k
        }
        row = ManifestRow(base / relative, relative, label, groups)
        (dropped if label in _DROPPED_LABELS else kept).append(row)
    return kept, dropped


def load_rgb(path: Path) -> np.ndarray:
    """Return the photo at ``path`` upright (EXIF applied) as HxWx3 uint8 RGB.

    Raises:
        ValueError: the file is missing or not a readable image.
    """
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            if upright.mode in ("I;16", "I;16B", "I"):
                upright = upright.point(lambda v: v / 256).convert("L")
            return np.asarray(upright.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise ValueError(f"image {path} not found") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image {path} could not be decoded: {exc}") from exc


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def face_to_record(face: FaceLandmarks) -> dict[str, object]:
    """Return a JSON-ready record of ``face`` (points rounded to 1e-5)."""
    return {
        "points": np.round(face.points.astype(np.float64), 5).tolist(),
        "blendshapes": dict(face.blendshapes),
        "pose": [face.pose.yaw_deg, face.pose.pitch_deg, face.pose.roll_deg],
        "box": face.box.to_list(),
        "is_partial": face.is_partial,
    }


def face_from_record(record: Mapping[str, object]) -> FaceLandmarks:
    """Rebuild a :class:`FaceLandmarks` from :func:`face_to_record` output."""
    points = np.asarray(record["points"], dtype=np.float32)
    pose = [float(v) for v in record["pose"]]  # type: ignore[attr-defined]
    box = [int(v) for v in record["box"]]  # type: ignore[attr-defined]
    shapes = record["blendshapes"]
    items = shapes.items()  # type: ignore[attr-defined]
    blendshapes = {str(k): float(v) for k, v in items}
    return FaceLandmarks(
        points,
        blendshapes,
        HeadPose(*pose),
        BoundingBox(*box),
        bool(record["is_partial"]),
    )


class FaceCache:
    """On-disk cache of the largest face found in a photo.

    Entries live in ``<cache_dir>/features/<key>/<file sha256>.json`` where
    ``key`` hashes the model sha256, the detector's source and the detection
    options.
    """
    def __init__(self, root: Path, key: str) -> None:
        self.folder = Path(root) / "features" / key
        self.folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_settings(cls, settings: Settings, model_path: Path) -> FaceCache:
        """Return the cache for this model file, detection settings and detector code.

        The key also hashes the source of :mod:`airctrl.landmarks`: a change to
        the face search (crops, retries, verification) changes the faces found,
        and entries from the old code once silently stood in for the new ones.
        """
        import airctrl.landmarks

        model_sha = _sha256_file(model_path)
        code_sha = _sha256_file(Path(airctrl.landmarks.__file__))
        options = json.dumps(settings.detection.model_dump(mode="json"), sort_keys=True)
        key = hashlib.sha256(
            f"{CACHE_VERSION}|{model_sha}|{code_sha}|{options}".encode()
        ).hexdigest()[:20]
        root = settings.assets.cache_dir or default_cache_dir()
        return cls(root, key)

    def _entry(self, file_sha: str) -> Path:
        return self.folder / f"{file_sha}.json"

    def get(self, file_sha: str) -> dict[str, object] | None:
        """Return the cached record for a file, or None when not cached."""
        entry = self._entry(file_sha)
        if not entry.is_file():
            return None
        try:
            data: dict[str, object] = json.loads(entry.read_text(encoding="utf-8"))
            return data
        except (OSError, json.JSONDecodeError):
            logger.warning("Ignoring unreadable cache entry %s", entry.name)
            return None

    def put(self, file_sha: str, record: Mapping[str, object]) -> None:
        """Store a record atomically (write then rename)."""
        entry = self._entry(file_sha)
        temporary = entry.with_suffix(".tmp")
        temporary.write_text(json.dumps(record), encoding="utf-8")
        temporary.replace(entry)


def _largest(faces: Iterable[FaceLandmarks]) -> FaceLandmarks | None:
    return max(faces, key=lambda f: f.box.width * f.box.height, default=None)


def extract_samples(
    rows: list[ManifestRow],
    settings: Settings,
    *,
    model_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """Find the largest face in every row's photo, reading and filling the cache.

    The landmarker runs in image mode with its padded retry, so tight crops cut
    at chin and forehead are found, and the face's blendshapes are averaged
    with a second, padded view exactly as the pipeline does for stills
    (:func:`airctrl.features.with_padded_view`). A photo that cannot be read
    becomes a sample with ``face=None`` and ``error`` set; it is never dropped.
    """
    from airctrl.landmarks import LandmarkDetector
    from airctrl.pipeline import landmarker_options

    model_path = model_path or resolve_model(
        settings.assets.cache_dir, try_official=settings.assets.try_official_download
    )
    cache = FaceCache.for_settings(settings, model_path)
    detector: LandmarkDetector | None = None
    samples: list[Sample] = []
    hits = 0
    try:
        for index, row in enumerate(rows):
            if progress is not None:
                progress(index, len(rows))
            if not row.path.is_file():
                samples.append(Sample(row, None, "file not found"))
                continue
            file_sha = _sha256_file(row.path)
            record = cache.get(file_sha)
            if record is None:
                if detector is None:
                    detector = LandmarkDetector(
                        model_path, mode="image", options=landmarker_options(settings)
                    )
                try:
                    frame = Frame(load_rgb(row.path), 0, index)
                    face = _largest(detector.detect(frame).faces)
                    if face is not None:
                        # The same two-view averaging as the pipeline's image mode.
                        face = with_padded_view(detector, frame, (face,))[0]
                except (ValueError, AirctrlError) as exc:
                    samples.append(Sample(row, None, str(exc)))
                    continue
                record = {"face": face_to_record(face) if face is not None else None}
                cache.put(file_sha, record)
            else:
                hits += 1
            face_record = record.get("face")
            face = (
                face_from_record(face_record) if isinstance(face_record, dict) else None
            )
            samples.append(
                Sample(row, face, None if face is not None else "no face found")
            )
    finally:
        if detector is not None:
            detector.close()
    logger.info("Faces for %d photos (%d from cache)", len(rows), hits)
    return samples


# -- fitting -------------------------------------------------------------------

#: Inverse L2 strength of the logistic regression on standardised terms. Chosen
#: by subject-disjoint cross-validation on the dev set over 0.03..1: macro-F1
#: was flat from 0.05 to 0.3; the stronger end generalises better to new faces.
DEFAULT_C = 0.1
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
    """How :func:`fit_params` fits: regularisation, folds, seed, anchor weight."""

    c: float = DEFAULT_C
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


def _design(rows: Sequence[Mapping[str, float]], terms: Sequence[str]) -> np.ndarray:
    """Return the (n, terms) matrix of transformed term values (missing: 0)."""

    matrix = np.zeros((len(rows), len(terms)), dtype=np.float64)
    for i, values in enumerate(rows):
        found = term_values(Features(values))
        matrix[i] = [transform(t, found[t]) if t in found else 0.0 for t in terms]
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


def _subject_of(sample: Sample) -> str:
    """Return the sample's subject; a photo without one counts as its own."""
    return sample.row.groups.get("subject") or sample.row.relative_path


def _subject_weights(samples: list[Sample]) -> np.ndarray:
    """Weight each photo 1/sqrt(photos of its subject), so one often-photographed
    person does not dominate; photos without a subject count as their own."""
    counts: dict[str, int] = {}
    keys = [_subject_of(s) for s in samples]
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
    """Clip to >= 0 the weight of each class on its own prototype units, in place.

    More of a class's textbook movement must never lower that class's score.
    With only ten fear photos the unconstrained fit can give e.g. "brow lower"
    a small negative fear weight; the projection sets it to 0 instead.
    """
    for k, label in enumerate(EMOTIONS):
        for unit in prototype_units(label):
            if unit in terms:
                j = list(terms).index(unit)
                weights[k, j] = max(0.0, weights[k, j])


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
    x_all = _design(list(unit_rows) + list(anchor_rows), terms)
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

    Multinomial logistic regression (scikit-learn) over the model terms, with
    classes and datasets partly balanced, each photo weighted 1/sqrt(photos of
    the same subject), the EMFACS prototype anchors added as a prior, and each
    class's weights on its own prototype units clipped to >= 0. The temperature
    is fitted on out-of-fold scores from subject-disjoint folds, so stated
    confidence matches accuracy on unseen people. Deterministic for a given seed.

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
    groups = [_subject_of(s) for s in usable]
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
        oof[test] = _scores(_design([unit_rows[i] for i in test], terms), c, w, b)
    temperature = fit_temperature(oof, y)

    info: dict[str, object] = {
        "fitted_by": "airctrl calibrate",
        "photos": len(usable),
        "per_class": {c: labels.count(c) for c in EMOTIONS},
        "contempt": CONTEMPT_POLICY,
        "options": asdict(options),
    }
    info.update(meta or {})
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
    groups = [_subject_of(samples[i]) for i in usable]
    result = []
    for train, test in _folds(y, groups, options.folds, options.seed):
        params = fit_params([samples[usable[i]] for i in train], options)
        result.append(([usable[i] for i in test], params))
    return result
