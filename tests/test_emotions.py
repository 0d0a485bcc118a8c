"""Tests for the shipped explainable emotion model on hand-built feature vectors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from airctrl.config import EmotionSettings
from airctrl.emotions import MODEL_UNITS, EmotionClassifier, load_params
from airctrl.errors import ConfigError
from airctrl.features import Features
from airctrl.types import EMOTIONS, BoundingBox, FaceLandmarks, HeadPose

#: Units not named in a case sit at a still face's 0.02.
STILL = 0.02


def face(**units: float) -> Features:
    values = {unit: STILL for unit in MODEL_UNITS}
    values.update(units)
    return Features(values)


@pytest.fixture(scope="module")
def classifier() -> EmotionClassifier:
    return EmotionClassifier.from_settings(EmotionSettings())


# The right answers are the EMFACS prototypes, known without running the model.
CASES = [
    pytest.param(
        {"lip_corner_pull": 0.8, "cheek_raise": 0.6},
        "happy",
        id="smile-with-cheek-raise",
    ),
    pytest.param(
        {"inner_brow_raise": 0.7, "outer_brow_raise": 0.7, "jaw_drop": 0.7},
        "surprised",
        id="brow-raise-jaw-drop-no-smile",
    ),
    pytest.param(
        {"brow_lower": 0.7, "lid_tighten": 0.7, "lip_press": 0.7},
        "angry",
        id="brow-lower-lid-tighten-lip-press",
    ),
    pytest.param(
        {"inner_brow_raise": 0.7, "lip_corner_depress": 0.7},
        "sad",
        id="inner-brow-raise-lip-corner-depress",
    ),
    pytest.param(
        {"nose_wrinkle": 0.7, "upper_lip_raise": 0.7},
        "disgust",
        id="nose-wrinkle-upper-lip-raise",
    ),
    pytest.param(
        {
            "inner_brow_raise": 0.6,
            "outer_brow_raise": 0.6,
            "brow_lower": 0.6,
            "upper_lid_raise": 0.6,
            "lip_stretch": 0.6,
        },
        "fear",
        id="brow-raise-and-lower-lid-raise-lip-stretch",
    ),
    pytest.param({}, "neutral", id="all-near-zero"),
]


@pytest.mark.parametrize(("units", "expected"), CASES)
def test_shipped_model_gives_textbook_label(
    classifier: EmotionClassifier, units: dict[str, float], expected: str
) -> None:
    estimate = classifier.classify(face(**units))
    assert estimate.label == expected


def test_probabilities_cover_every_class_and_sum_to_one(
    classifier: EmotionClassifier,
) -> None:
    estimate = classifier.classify(face(lip_corner_pull=0.5))
    assert set(estimate.probabilities) == set(EMOTIONS)
    assert math.isclose(sum(estimate.probabilities.values()), 1.0, abs_tol=1e-9)
    assert estimate.confidence == max(estimate.probabilities.values())


def test_evidence_names_the_smile_in_plain_words(classifier: EmotionClassifier) -> None:
    estimate = classifier.classify(face(lip_corner_pull=0.81, cheek_raise=0.62))
    names = [name for name, _ in estimate.evidence]
    assert "lip-corner pull" in names
    assert ("lip-corner pull", 0.81) in estimate.evidence


def test_evidence_for_angry_names_brow_lowering(classifier: EmotionClassifier) -> None:
    estimate = classifier.classify(face(brow_lower=0.7, lid_tighten=0.7, lip_press=0.7))
    text = " ".join(name for name, _ in estimate.evidence)
    assert "brow lower" in text or "lid tighten" in text


def test_scores_are_sum_of_contributions(classifier: EmotionClassifier) -> None:
    _, parts, scores = classifier.contributions(face(jaw_drop=0.4))
    for cls in EMOTIONS:
        expected = classifier.params.bias[cls] + sum(parts[cls].values())
        assert math.isclose(scores[cls], expected, rel_tol=1e-12)


def test_baseline_removes_a_persons_resting_frown(
    classifier: EmotionClassifier,
) -> None:
    frowner_rest = face(brow_lower=0.45)
    later = face(brow_lower=0.45)
    without = classifier.classify(later)
    with_baseline = classifier.classify(later, baseline=frowner_rest)
    assert with_baseline.probabilities["angry"] < without.probabilities["angry"]
    assert with_baseline.label == "neutral"


def test_baseline_keeps_most_of_a_smile_seen_during_calibration(
    classifier: EmotionClassifier,
) -> None:
    smiling_rest = face(lip_corner_pull=0.8, cheek_raise=0.6)
    assert classifier.classify(smiling_rest, baseline=smiling_rest).label == "happy"


def test_temperature_override_flattens_probabilities() -> None:
    sharp = EmotionClassifier.from_settings(EmotionSettings())
    flat = EmotionClassifier.from_settings(
        EmotionSettings(overrides={"temperature": 50.0})
    )
    smile = face(lip_corner_pull=0.8, cheek_raise=0.6)
    assert flat.classify(smile).confidence < sharp.classify(smile).confidence
    assert flat.classify(smile).confidence < 0.25


def test_params_path_replaces_shipped_file(tmp_path: Path) -> None:
    data = load_params().to_dict()
    data["bias"]["disgust"] = 100.0
    path = tmp_path / "params.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    classifier = EmotionClassifier.from_settings(EmotionSettings(params_path=path))
    assert (
        classifier.classify(face(lip_corner_pull=0.8, cheek_raise=0.6)).label
        == "disgust"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("not json", "unreadable", id="not-json"),
        pytest.param(
            '{"classes": ["happy"]}', "emotion parameters", id="missing-entries"
        ),
    ],
)
def test_bad_params_file_raises_config_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "params.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_params(path)


def test_missing_params_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "absent.json")


def test_extreme_pose_and_partial_face_are_flagged(
    classifier: EmotionClassifier,
) -> None:
    turned = FaceLandmarks(
        np.zeros((478, 3), np.float32),
        {},
        HeadPose(60.0, 0.0, 0.0),
        BoundingBox(0, 0, 10, 10),
        is_partial=True,
    )
    flags = classifier.classify(face(), face=turned).flags
    assert "extreme_pose" in flags
    assert "partial_face" in flags


def test_missing_geometry_contributes_nothing(classifier: EmotionClassifier) -> None:
    _, parts, _ = classifier.contributions(face())
    for cls in EMOTIONS:
        assert parts[cls].get("geo_mouth_width", 0.0) == 0.0


def test_baseline_makes_geometry_relative_to_the_person(
    classifier: EmotionClassifier,
) -> None:
    # A naturally wide mouth (0.15 wider than the population's resting width)
    # stops counting once the person's rest is known.
    rest_width = classifier.params.rest["geo_mouth_width"]
    wide = dict(face().values, geo_mouth_width=rest_width + 0.15)
    values, _, _ = classifier.contributions(Features(wide), baseline=Features(wide))
    assert values["geo_mouth_width"] == pytest.approx(rest_width)


def test_shipped_parameters_were_fitted_by_calibrate() -> None:
    params = load_params()
    assert params.meta["fitted_by"] == "airctrl calibrate"
    assert params.meta["contempt"] == "drop"
    assert 0.3 < params.temperature < 3.0


@pytest.mark.parametrize("label", [c for c in EMOTIONS if c != "neutral"])
def test_shipped_weights_never_penalise_a_class_for_its_own_prototype(
    label: str,
) -> None:
    from airctrl.calibration import prototype_units

    weights = load_params().weights[label]
    assert prototype_units(label)
    assert all(weights.get(unit, 0.0) >= 0.0 for unit in prototype_units(label))


def _one_term_params(knot: float | None) -> dict[str, object]:
    """Parameters where only happy reads lip-corner pull: weight 2, bend 3."""
    data: dict[str, object] = {
        "classes": list(EMOTIONS),
        "terms": ["lip_corner_pull"],
        "center": {"lip_corner_pull": 0.3},
        "weights": {
            c: {"lip_corner_pull": 2.0 if c == "happy" else 0.0} for c in EMOTIONS
        },
        "bias": {c: 0.0 for c in EMOTIONS},
        "temperature": 1.0,
    }
    if knot is not None:
        data["bend"] = {
            "knot": knot,
            "center": {"lip_corner_pull": 0.1},
            "weights": {
                c: {"lip_corner_pull": 3.0 if c == "happy" else 0.0} for c in EMOTIONS
            },
        }
    return data


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Below the knot 0.24 only the line counts: 2 * (sqrt(0.15) - 0.3) + 3 * -0.1.
        pytest.param(0.14, 2 * (math.sqrt(0.15) - 0.3) - 0.3, id="below-knot"),
        # Past it the bend adds 3 * (sqrt(0.65) - sqrt(0.25) - 0.1).
        pytest.param(
            0.64,
            2 * (math.sqrt(0.65) - 0.3) + 3 * (math.sqrt(0.65) - 0.5 - 0.1),
            id="past-knot",
        ),
    ],
)
def test_contribution_bends_at_the_knot(value: float, expected: float) -> None:
    from airctrl.emotions import EmotionParams

    classifier = EmotionClassifier(EmotionParams.from_dict(_one_term_params(0.24)))
    _, parts, scores = classifier.contributions(Features({"lip_corner_pull": value}))
    assert parts["happy"]["lip_corner_pull"] == pytest.approx(expected)
    assert scores["happy"] == pytest.approx(expected)
    assert scores["sad"] == 0.0


def test_parameters_without_a_bend_score_straight_lines() -> None:
    from airctrl.emotions import EmotionParams

    params = EmotionParams.from_dict(_one_term_params(None))
    _, parts, _ = EmotionClassifier(params).contributions(
        Features({"lip_corner_pull": 0.64})
    )
    assert params.knot is None
    assert parts["happy"]["lip_corner_pull"] == pytest.approx(
        2 * (math.sqrt(0.65) - 0.3)
    )


def test_bend_knot_outside_zero_one_is_rejected() -> None:
    from airctrl.emotions import EmotionParams

    with pytest.raises(ConfigError, match="knot"):
        EmotionParams.from_dict(_one_term_params(1.5))


def test_parameter_file_round_trips_with_its_bends() -> None:
    from airctrl.emotions import EmotionParams

    params = load_params()
    again = EmotionParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again.knot == params.knot
    assert again.bends == params.bends


@pytest.mark.parametrize("label", [c for c in EMOTIONS if c != "neutral"])
def test_shipped_slope_past_the_knot_never_penalises_a_class_for_its_prototype(
    label: str,
) -> None:
    from airctrl.calibration import prototype_units

    params = load_params()
    units = prototype_units(label)
    assert params.knot is not None
    assert units
    for unit in units:
        assert params.weights[label][unit] + params.bends[label][unit] >= 0.0, unit
