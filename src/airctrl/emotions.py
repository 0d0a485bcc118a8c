"""Explainable emotion scoring: an additive model over named action-unit features.

Each class score is a bias plus one contribution per named term::

    score[c] = bias[c] + sum_j contribution[c][j]
    contribution[c][j] = weight[c][j] * (t(x_j) - center[j])
                         + bend[c][j] * (h(x_j) - bend_center[j])
    h(x) = max(0, t(x) - t(knot))
    p = softmax(score / temperature)

The second line lets a movement count differently once it is clearly there
(above ``knot``, a 0..1 blendshape score) than while it is a trace: each
unit's contribution is a line with one bend, so it is still one number per
named movement. Geometry terms have no bend.

``x_j`` is an action-unit-like feature from :mod:`airctrl.features`
("lip-corner pull"), a geometry ratio ("mouth width") or, optionally, an
EMFACS prototype term: the geometric mean of the units that make up a
published expression prototype ("cheek raise x lip-corner pull" for
happiness). The shipped parameters leave prototype terms out: on the dev set
they added nothing measurable and their weights on other classes read badly
as evidence ("brow lower x lid tighten x lip press" raising happy). The
prototypes instead act as a prior during fitting (see
:mod:`airctrl.calibration`), and every class's weight on its own prototype
units is kept >= 0. ``t`` is ``sqrt(x + 0.01)`` for units and prototypes,
which spreads the small scores MediaPipe gives subtle expressions
(closed-mouth smiles), and the identity for geometry. ``center`` is the
population mean of ``t(x_j)`` (``bend_center`` that of ``h(x_j)``), so a
contribution reads "how far this feature pushes the face towards class c
compared with an average face".

The contributions are the evidence: the terms that pushed the chosen class up
the most are reported in plain words with their raw values. The parameters
are fitted by ``airctrl calibrate`` (multinomial logistic regression plus a
temperature for calibrated confidence) and shipped in
``airctrl/data/emotion_params.json``; ``settings.emotion.params_path`` and
``settings.emotion.overrides`` replace or patch them.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from airctrl.config import EmotionSettings
from airctrl.errors import ConfigError
from airctrl.features import ACTION_UNITS, Features, plain_name
from airctrl.types import EMOTIONS, EmotionEstimate, FaceLandmarks

__all__ = [
    "PROTOTYPES",
    "EmotionClassifier",
    "EmotionParams",
    "load_params",
    "term_values",
    "transform_terms",
]

logger = logging.getLogger(__name__)

#: EMFACS-style prototypes as combinations of our action-unit features. Each
#: becomes one model term (geometric mean of its units): happiness AU6+12,
#: sadness AU1+15, anger AU4+7+24, surprise AU1+2+26 (with 5 left out: MediaPipe's
#: eyeWide is weak on photos), fear AU1+4+5+20, disgust AU9+10.
PROTOTYPES: dict[str, tuple[str, ...]] = {
    "proto_happy": ("cheek_raise", "lip_corner_pull"),
    "proto_sad": ("inner_brow_raise", "lip_corner_depress"),
    "proto_angry": ("brow_lower", "lid_tighten", "lip_press"),
    "proto_surprised": ("inner_brow_raise", "outer_brow_raise", "jaw_drop"),
    "proto_fear": ("inner_brow_raise", "brow_lower", "upper_lid_raise", "lip_stretch"),
    "proto_disgust": ("nose_wrinkle", "upper_lip_raise"),
}

#: Units left out of the model: "mouth close" and "upper lip shrug" follow
#: speech more than expression, and "eye close" is a blink. With them in, the
#: rare classes (ten fear photos) learnt that a mouth held still meant fear.
EXCLUDED_UNITS: frozenset[str] = frozenset(
    {"mouth_close", "upper_lip_shrug", "eye_close"}
)
#: The action units the model reads, in a fixed order.
MODEL_UNITS: tuple[str, ...] = tuple(u for u in ACTION_UNITS if u not in EXCLUDED_UNITS)
#: The terms of the model, in a fixed order: the model's units, then prototypes.
UNIT_TERMS: tuple[str, ...] = MODEL_UNITS + tuple(PROTOTYPES)
#: Geometry terms (ratios to the eye-corner distance, see
#: :func:`airctrl.features.geometry`). A closed-mouth smile widens the mouth
#: before MediaPipe's smile blendshape moves; these catch it.
GEOMETRY_TERMS: tuple[str, ...] = (
    "geo_mouth_open",
    "geo_mouth_width",
    "geo_corner_lift",
    "geo_brow_height",
    "geo_eye_open",
    "geo_brow_tilt",
    "geo_lip_nose",
)
#: Every term a parameter file may use, in a fixed order.
TERMS: tuple[str, ...] = UNIT_TERMS + GEOMETRY_TERMS

#: Most a per-person baseline may take off one unit. Someone whose brows sit
#: low at rest loses that offset; someone who smiled through the calibration
#: seconds keeps most of a later smile.
MAX_BASELINE_SHIFT = 0.25

#: Evidence lists at most this many terms.
MAX_EVIDENCE = 3

_PARAMS_RESOURCE = "emotion_params.json"


def term_label(term: str) -> str:
    """Return plain words for a model term ("cheek raise x lip-corner pull")."""
    if term in PROTOTYPES:
        return " x ".join(plain_name(unit) for unit in PROTOTYPES[term])
    return plain_name(term)


def term_values(
    features: Features,
    baseline: Features | None = None,
    rest: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Return the raw value of every model term for one face.

    Unit and prototype terms are 0..1. Geometry terms are present only when
    ``features`` holds them (hand-built vectors may not; a missing term then
    contributes nothing).

    With a ``baseline`` (the person's resting features), each action unit has
    the person's excess rest activation over the population ``rest`` level
    (at most :data:`MAX_BASELINE_SHIFT`) subtracted and is clipped at 0:
    someone whose brows sit low at rest is not read as frowning. Prototype
    terms are then built from the adjusted units. Geometry terms are moved by
    the difference between the person's rest and the population's rest, so a
    naturally wide mouth is not read as a smile.
    """
    units: dict[str, float] = {}
    for unit in MODEL_UNITS:
        value = features.get(unit)
        if baseline is not None:
            excess = baseline.get(unit) - (rest or {}).get(unit, 0.0)
            if excess > 0:
                value = value - min(excess, MAX_BASELINE_SHIFT)
        units[unit] = min(1.0, max(0.0, value))
    values = dict(units)
    for name, members in PROTOTYPES.items():
        product = 1.0
        for unit in members:
            product *= units[unit]
        values[name] = product ** (1.0 / len(members))
    for name in GEOMETRY_TERMS:
        if name not in features.values:
            continue
        value = features.get(name)
        if baseline is not None and name in baseline.values and rest and name in rest:
            value = value - baseline.get(name) + rest[name]
        values[name] = value
    return values


#: Added before the square root so values near 0 do not swing the score: MediaPipe
#: reports 0.00-0.02 for a unit at rest and the bare root would stretch that gap.
TRANSFORM_OFFSET = 0.01


def transform_terms(
    values: Mapping[str, float], terms: Sequence[str], knot: float | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Return the model's inputs for ``terms``: t(x), h(x) and which are present.

    ``t`` is ``sqrt(x + offset)`` for unit and prototype terms and the identity
    for geometry ratios; ``h`` is ``max(0, t(x) - t(knot))`` for unit and
    prototype terms and 0 for geometry (all 0 when ``knot`` is None). Each
    array has one entry per term, in order; a term missing from ``values`` is 0
    in both and False in the third.
    """
    present = np.array([t in values for t in terms])
    is_geometry = _geometry_mask(tuple(terms))
    raw = np.array([values.get(t, 0.0) for t in terms], dtype=np.float64)
    line = np.where(is_geometry, raw, np.sqrt(np.maximum(raw, 0.0) + TRANSFORM_OFFSET))
    past = np.zeros(len(terms))
    if knot is not None:
        bent = np.maximum(line - math.sqrt(knot + TRANSFORM_OFFSET), 0.0)
        past = np.where(is_geometry, 0.0, bent)
    return np.where(present, line, 0.0), np.where(present, past, 0.0), present


@functools.cache
def _geometry_mask(terms: tuple[str, ...]) -> npt.NDArray[np.bool_]:
    """Return which of ``terms`` are geometry ratios (built once per term list)."""
    return np.array([t in GEOMETRY_TERMS for t in terms])


@dataclass(frozen=True)
class EmotionParams:
    """Fitted parameters of the additive model (see the module docstring).

    ``weights[c][term]`` act on ``t(value) - center[term]`` and
    ``bends[c][term]`` on ``h(value) - bend_center[term]``, the part past
    ``knot`` (no bends when ``knot`` is None, as in files of format 1);
    ``rest[unit]`` is the population's typical resting activation (median over
    neutral faces), used with a per-person baseline. ``meta`` records how they
    were fitted.
    """

    classes: tuple[str, ...]
    terms: tuple[str, ...]
    center: Mapping[str, float]
    weights: Mapping[str, Mapping[str, float]]
    bias: Mapping[str, float]
    temperature: float
    rest: Mapping[str, float]
    meta: Mapping[str, Any]
    knot: float | None = None
    bend_center: Mapping[str, float] = field(default_factory=dict)
    bends: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmotionParams:
        """Validate and build parameters from their JSON form.

        Raises:
            ConfigError: a class or term is missing or a value is not a number.
        """
        try:
            classes = tuple(str(c) for c in data["classes"])
            terms = tuple(str(t) for t in data["terms"])
            if set(classes) != set(EMOTIONS):
                raise ConfigError(
                    f"emotion parameters: classes {classes} do not match {EMOTIONS}"
                )
            unknown = [t for t in terms if t not in TERMS]
            if unknown:
                raise ConfigError(f"emotion parameters: unknown terms {unknown}")
            center = {t: float(data["center"][t]) for t in terms}
            weights = {
                c: {t: float(data["weights"][c].get(t, 0.0)) for t in terms}
                for c in classes
            }
            bias = {c: float(data["bias"][c]) for c in classes}
            temperature = float(data["temperature"])
            rest = {u: float(v) for u, v in data.get("rest", {}).items()}
            knot: float | None = None
            bend_center: dict[str, float] = {}
            bends: dict[str, dict[str, float]] = {}
            bend = data.get("bend")
            if bend is not None:
                knot = float(bend["knot"])
                bend_center = {t: float(bend["center"][t]) for t in terms}
                bends = {
                    c: {t: float(bend["weights"][c].get(t, 0.0)) for t in terms}
                    for c in classes
                }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"emotion parameters: missing or invalid entry ({exc})"
            ) from exc
        if not temperature > 0:
            raise ConfigError(
                f"emotion parameters: temperature must be > 0, got {temperature}"
            )
        if knot is not None and not 0.0 < knot < 1.0:
            raise ConfigError(
                f"emotion parameters: bend knot must be in (0, 1), got {knot}"
            )
        return cls(
            classes,
            terms,
            center,
            weights,
            bias,
            temperature,
            rest,
            dict(data.get("meta", {})),
            knot,
            bend_center,
            bends,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (rounded to 6 decimals so files diff cleanly)."""

        def r(value: float) -> float:
            return round(float(value), 6)

        data: dict[str, Any] = {
            "format": "airctrl-emotion-params/2",
            "classes": list(self.classes),
            "terms": list(self.terms),
            "transform": f"sqrt(x+{TRANSFORM_OFFSET}); geo_* as is",
            "center": {t: r(self.center[t]) for t in self.terms},
            "weights": {
                c: {t: r(self.weights[c][t]) for t in self.terms} for c in self.classes
            },
            "bias": {c: r(self.bias[c]) for c in self.classes},
            "temperature": r(self.temperature),
            "rest": {u: r(v) for u, v in self.rest.items()},
        }
        if self.knot is not None:
            data["bend"] = {
                "knot": r(self.knot),
                "center": {t: r(self.bend_center[t]) for t in self.terms},
                "weights": {
                    c: {t: r(self.bends[c][t]) for t in self.terms}
                    for c in self.classes
                },
            }
        data["meta"] = dict(self.meta)
        return data


def _deep_merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_params(
    path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> EmotionParams:
    """Load parameters from ``path`` (default: the shipped file), then apply overrides.

    ``overrides`` is merged key by key into the JSON form, e.g.
    ``{"temperature": 1.5}`` or ``{"bias": {"neutral": 0.3}}``.

    Raises:
        ConfigError: the file is missing, not JSON, or the result is invalid.
    """
    try:
        if path is None:
            resource = resources.files("airctrl").joinpath("data", _PARAMS_RESOURCE)
            text = resource.read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError(f"emotion parameter file {path} not found") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"emotion parameter file {path} is unreadable: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"emotion parameter file {path}: expected a JSON object")
    if overrides:
        data = _deep_merge(data, overrides)
    return EmotionParams.from_dict(data)


class EmotionClassifier:
    """Score every emotion class from features and explain the choice.

    Limitation: the model sees one still face; it cannot tell a posed from a
    felt expression, and labels in its training photos were noisy (the dev
    set's annotators agreed on about half of the crowd-labelled photos), so
    confidences above ~0.8 are rare by design rather than a fault.
    """

    def __init__(
        self,
        params: EmotionParams,
        *,
        extreme_yaw_deg: float = 35.0,
        extreme_pitch_deg: float = 30.0,
        low_confidence: float = 0.5,
    ) -> None:
        self.params = params
        self.extreme_yaw_deg = extreme_yaw_deg
        self.extreme_pitch_deg = extreme_pitch_deg
        self.low_confidence = low_confidence

        # The parameters as arrays (classes x terms), so a frame is scored with
        # a few vector operations instead of a loop per class and term.
        terms = params.terms
        self._center = np.array([params.center[t] for t in terms])
        self._weights = np.array(
            [[params.weights[c][t] for t in terms] for c in params.classes]
        )
        self._bias = np.array([params.bias[c] for c in params.classes])
        self._bends: npt.NDArray[np.float64] | None = None
        if params.knot is not None:
            self._bend_center = np.array([params.bend_center[t] for t in terms])
            self._bends = np.array(
                [[params.bends[c][t] for t in terms] for c in params.classes]
            )

    @classmethod
    def from_settings(cls, settings: EmotionSettings) -> EmotionClassifier:
        """Build the classifier from the emotion settings (parameter file, overrides).

        Raises:
            ConfigError: the parameter file or the overrides are invalid.
        """
        params = load_params(settings.params_path, settings.overrides)
        logger.debug(
            "Emotion parameters loaded (%s)", params.meta.get("fitted_on", "?")
        )
        return cls(
            params,
            extreme_yaw_deg=settings.extreme_yaw_deg,
            extreme_pitch_deg=settings.extreme_pitch_deg,
            low_confidence=settings.low_confidence,
        )

    def _term_arrays(
        self, features: Features, baseline: Features | None
    ) -> tuple[
        dict[str, float],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.bool_],
    ]:
        """Return term values, contributions, scores and which terms are above centre.

        Contributions are (classes, terms), following ``params.classes`` and
        ``params.terms``; a term missing from ``features`` contributes 0 and is
        not above the centre.
        """
        p = self.params
        values = term_values(features, baseline, p.rest)
        line, past, present = transform_terms(values, p.terms, p.knot)
        parts = self._weights * np.where(present, line - self._center, 0.0)
        if self._bends is not None:
            parts += self._bends * np.where(present, past - self._bend_center, 0.0)
        scores = self._bias + parts.sum(axis=1)
        return values, parts, scores, present & (line > self._center)

    def contributions(
        self, features: Features, baseline: Features | None = None
    ) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, float]]:
        """Return (term values, per-class contributions, per-class scores).

        For inspecting one face term by term; :meth:`classify` scores with the
        same arrays without building these dictionaries.
        """
        p = self.params
        values, parts, scores, _ = self._term_arrays(features, baseline)
        by_class = {
            c: {t: float(parts[k, j]) for j, t in enumerate(p.terms)}
            for k, c in enumerate(p.classes)
        }
        return values, by_class, {c: float(scores[k]) for k, c in enumerate(p.classes)}

    def probabilities(self, scores: Mapping[str, float]) -> dict[str, float]:
        """Return calibrated probabilities (softmax of scores / temperature)."""
        t = self.params.temperature
        top = max(scores.values())
        exps = {c: math.exp((scores[c] - top) / t) for c in EMOTIONS}
        total = sum(exps.values())
        return {c: exps[c] / total for c in EMOTIONS}

    def classify(
        self,
        features: Features,
        baseline: Features | None = None,
        face: FaceLandmarks | None = None,
    ) -> EmotionEstimate:
        """Return probabilities for every class, a confidence and the evidence.

        ``evidence`` names the terms that raised the chosen class's score the
        most, with their raw values (0..1): first the movements present
        ("lip-corner pull 0.81"); when none pushed the class up (typically
        neutral), the movements whose absence did ("lip-corner pull 0.00").
        """
        p = self.params
        values, parts, score_array, above = self._term_arrays(features, baseline)
        probs = self.probabilities(
            {c: float(score_array[k]) for k, c in enumerate(p.classes)}
        )
        label = max(EMOTIONS, key=lambda c: probs[c])

        # Prefer what the face does (a term above the average face, pushing up);
        # fall back to what it does not do (a term below it), as for neutral.
        row = parts[p.classes.index(label)]
        pushes = sorted(
            ((j, float(row[j])) for j in range(len(p.terms)) if row[j] > 0),
            key=lambda item: item[1],
            reverse=True,
        )
        present = [(p.terms[j], v) for j, v in pushes if above[j]]
        absent = [(p.terms[j], v) for j, v in pushes if not above[j]]
        chosen = (present or absent)[:MAX_EVIDENCE]
        evidence = tuple(
            (term_label(term), round(values[term], 4)) for term, _ in chosen
        )

        flags: list[str] = []
        if face is not None:
            if face.is_partial:
                flags.append("partial_face")
            if (
                abs(face.pose.yaw_deg) > self.extreme_yaw_deg
                or abs(face.pose.pitch_deg) > self.extreme_pitch_deg
            ):
                flags.append("extreme_pose")
        if probs[label] < self.low_confidence:
            flags.append("low_confidence")
        if baseline is not None:
            flags.append("baseline_adjusted")
        return EmotionEstimate(label, probs, probs[label], evidence, tuple(flags))
