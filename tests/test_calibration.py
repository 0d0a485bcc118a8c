"""Tests for fitting, the calibrate/evaluate commands and extraction on real photos."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from airctrl.calibration import FitOptions, _folds, fit_params
from airctrl.cli import main
from airctrl.config import AssetSettings, Settings
from airctrl.dataset import (
    ManifestRow,
    Sample,
    extract_samples,
    read_manifest,
)
from airctrl.emotions import EmotionClassifier
from airctrl.features import ACTION_UNITS
from airctrl.types import BoundingBox, FaceLandmarks, HeadPose

HEADER = "path,label,dataset,subject,sex,age_group,ethnicity\n"


def write_manifest(folder: Path, lines: list[str]) -> Path:
    path = folder / "manifest.csv"
    path.write_text(HEADER + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- fitting on synthetic faces ---------------------------------------------------

PATTERNS = {
    "neutral": {},
    "happy": {
        "mouthSmileLeft": 0.7,
        "mouthSmileRight": 0.7,
        "cheekSquintLeft": 0.5,
        "cheekSquintRight": 0.5,
    },
    "surprised": {
        "browInnerUp": 0.6,
        "browOuterUpLeft": 0.6,
        "browOuterUpRight": 0.6,
        "jawOpen": 0.6,
    },
    "sad": {"browInnerUp": 0.5, "mouthFrownLeft": 0.5, "mouthFrownRight": 0.5},
}


def synthetic_samples(per_class: int = 12, seed: int = 1) -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for label, pattern in PATTERNS.items():
        for i in range(per_class):
            shapes = {
                name: float(rng.uniform(0, 0.05))
                for _, (_, srcs) in ACTION_UNITS.items()
                for name in srcs
            }
            shapes.update(
                {k: v + float(rng.normal(0, 0.05)) for k, v in pattern.items()}
            )
            face = FaceLandmarks(
                np.zeros((478, 3), np.float32),
                shapes,
                HeadPose(0, 0, 0),
                BoundingBox(0, 0, 10, 10),
            )
            row = ManifestRow(
                Path(f"{label}{i}.jpg"),
                f"{label}{i}.jpg",
                label,
                {"subject": f"s{i % 6}"},
            )
            samples.append(Sample(row, face))
    return samples


def test_fit_is_reproducible_byte_for_byte() -> None:
    samples = synthetic_samples()
    first = json.dumps(fit_params(samples, FitOptions(folds=3)).to_dict())
    second = json.dumps(fit_params(samples, FitOptions(folds=3)).to_dict())
    assert first == second


def test_fitted_model_separates_clear_synthetic_classes() -> None:
    samples = synthetic_samples()
    classifier = EmotionClassifier(fit_params(samples, FitOptions(folds=3)))
    from airctrl.features import extract_features

    hits = sum(
        classifier.classify(extract_features(s.face)).label == s.row.label
        for s in samples
        if s.face is not None
    )
    assert hits / len(samples) > 0.9


def test_projection_keeps_own_prototype_slopes_non_negative_past_the_knot() -> None:
    from airctrl.calibration import _project_monotone
    from airctrl.types import EMOTIONS

    terms = ("lip_corner_pull", "jaw_drop")
    weights = np.zeros((len(EMOTIONS), 2 * len(terms)))
    happy = EMOTIONS.index("happy")
    weights[happy] = [-0.5, 0.0, -1.0, 0.0]  # smile: line down, bend further down
    sad = EMOTIONS.index("sad")
    weights[sad] = [-0.5, -0.5, -1.0, -1.0]  # not sad's prototype: left alone
    _project_monotone(weights, terms)
    assert list(weights[happy]) == [0.0, 0.0, 0.0, 0.0]
    assert list(weights[sad]) == [-0.5, -0.5, -1.0, -1.0]


def test_projection_lets_a_bend_flatten_but_not_reverse_a_prototype_slope() -> None:
    from airctrl.calibration import _project_monotone
    from airctrl.types import EMOTIONS

    weights = np.zeros((len(EMOTIONS), 2))
    happy = EMOTIONS.index("happy")
    weights[happy] = [2.0, -3.0]
    _project_monotone(weights, ("lip_corner_pull",))
    assert list(weights[happy]) == [2.0, -2.0]


def test_fit_without_a_knot_writes_format_without_bends() -> None:
    params = fit_params(synthetic_samples(), FitOptions(folds=3, knot=None))
    assert params.knot is None
    assert "bend" not in params.to_dict()


def _with_shapes(sample: Sample, shapes: dict[str, float] | None) -> Sample:
    """Return ``sample`` with its face's blendshapes replaced (None: no face)."""
    from dataclasses import replace

    if shapes is None or sample.face is None:
        return Sample(sample.row, None, "no face found")
    return Sample(sample.row, replace(sample.face, blendshapes=shapes))


def test_cross_validation_scores_held_out_photos_from_the_other_search() -> None:
    from airctrl.commands.calibrate import cross_validated_evaluation

    samples = synthetic_samples()
    first = samples[0].face
    assert first is not None
    blank = {name: 0.0 for name in first.blendshapes}
    # The scored search sees every face at rest, so the out-of-fold parameters,
    # fitted on the clear faces, must call (nearly) all of them one class.
    at_rest = [_with_shapes(s, blank) for s in samples]
    options = FitOptions(folds=3)

    own = cross_validated_evaluation(samples, options)
    same = cross_validated_evaluation(samples, options, list(samples))
    other = cross_validated_evaluation(samples, options, at_rest)

    assert own.overall.accuracy > 0.9
    assert same.overall.accuracy == own.overall.accuracy
    assert len(other.rows) == len(samples)
    assert len({row.predicted for row in other.rows}) == 1
    assert other.overall.accuracy == pytest.approx(0.25)


def test_a_face_only_the_other_search_found_is_scored_by_its_subjects_fold() -> None:
    from airctrl.calibration import cross_validated_params
    from airctrl.commands.calibrate import cross_validated_evaluation
    from airctrl.features import extract_features

    samples = synthetic_samples()
    target = 3  # subject s3
    happy = next(s.face for s in samples if s.row.label == "happy")
    assert happy is not None
    # A faint smile: the three folds' parameters give it different confidences.
    faint = {name: 0.3 * value for name, value in happy.blendshapes.items()}
    found = _with_shapes(samples[target], faint)
    fitted = [
        _with_shapes(s, None) if i == target else s for i, s in enumerate(samples)
    ]
    scored = [found if i == target else s for i, s in enumerate(samples)]
    scored[1:3] = [_with_shapes(s, None) for s in samples[1:3]]
    options = FitOptions(folds=3)
    # The fold whose held-out photos include this subject never trained on it.
    subject = samples[target].row.groups["subject"]
    clean = next(
        params
        for held_out, params in cross_validated_params(fitted, options)
        if any(fitted[i].row.groups["subject"] == subject for i in held_out)
    )
    assert found.face is not None
    expected = EmotionClassifier(clean).classify(extract_features(found.face))

    evaluation = cross_validated_evaluation(fitted, options, scored)

    by_path = {row.path: row for row in evaluation.rows}
    assert len(evaluation.rows) == len(samples)
    row = by_path[samples[target].row.relative_path]
    assert row.predicted == expected.label
    assert row.confidence == pytest.approx(expected.confidence, abs=1e-9)
    assert {row.path for row in evaluation.no_face} == {
        s.row.relative_path for s in samples[1:3]
    }


def test_cross_validation_rejects_held_out_samples_of_another_length() -> None:
    from airctrl.commands.calibrate import cross_validated_evaluation

    samples = synthetic_samples()

    with pytest.raises(ValueError, match="held_out_samples"):
        cross_validated_evaluation(samples, FitOptions(folds=3), samples[:-1])


def test_folds_never_split_a_subject() -> None:
    labels = np.array([0, 1] * 20)
    groups = [f"s{i // 4}" for i in range(40)]
    for train, test in _folds(labels, groups, 5, seed=0):
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_fit_without_faces_is_rejected() -> None:
    row = ManifestRow(Path("a.jpg"), "a.jpg", "happy")
    with pytest.raises(ValueError, match="no photo with a face"):
        fit_params([Sample(row, None)])


# -- real photos: cache and commands ---------------------------------------------


@pytest.fixture()
def photo_manifest(
    tmp_path: Path, happy_face_rgb: np.ndarray, sample_path: Callable[[str], Path]
) -> Path:
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    Image.fromarray(happy_face_rgb).save(folder / "img" / "smile.jpg")
    with Image.open(sample_path("free-mountain-vector-01.jpg")) as mountain:
        mountain.convert("RGB").save(folder / "img" / "mountain.jpg")
    return write_manifest(
        folder,
        [
            "img/smile.jpg,happy,d,s1,male,30-39,white",
            "img/mountain.jpg,neutral,d,s2,female,30-39,black",
        ],
    )


def test_photo_without_face_is_kept_with_a_reason_and_cached(
    photo_manifest: Path, tmp_path: Path, model_path: Path
) -> None:
    settings = Settings(assets=AssetSettings(cache_dir=tmp_path / "cache"))
    rows, _ = read_manifest(photo_manifest)
    samples = extract_samples(rows, settings, model_path=model_path)
    assert [s.face is not None for s in samples] == [True, False]
    assert samples[1].error == "no face found"
    assert len(list((tmp_path / "cache" / "features").rglob("*.json"))) == 2

    again = extract_samples(rows, settings, model_path=model_path)
    assert again[0].face is not None
    assert dict(again[0].face.blendshapes) == pytest.approx(
        dict(samples[0].face.blendshapes)
    )


def test_evaluate_command_writes_report_listing_no_face(
    photo_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--manifest",
            str(photo_manifest),
            "--group-by",
            "sex",
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "img/mountain.jpg" in report
    assert "1 with no face" in capsys.readouterr().out


def test_evaluate_with_missing_manifest_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["evaluate", "--manifest", str(tmp_path / "absent.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "not found" in err


def test_evaluate_with_unknown_group_column_fails(photo_manifest: Path) -> None:
    assert (
        main(["evaluate", "--manifest", str(photo_manifest), "--group-by", "shoe_size"])
        == 2
    )


def test_calibrate_command_writes_same_parameter_file_twice(
    tmp_path: Path, happy_face_rgb: np.ndarray, sample_path: Callable[[str], Path]
) -> None:
    import cv2

    capture = cv2.VideoCapture(str(sample_path("single_face.mp4")))
    ok, first = capture.read()
    capture.release()
    assert ok
    still = cv2.cvtColor(first, cv2.COLOR_BGR2RGB)  # frame 0: resting face
    folder = tmp_path / "set"
    folder.mkdir()
    lines = []
    for i, (image, label) in enumerate([(happy_face_rgb, "happy"), (still, "neutral")]):
        for mirrored in (False, True):
            name = f"{label}{int(mirrored)}.png"
            Image.fromarray(image[:, ::-1] if mirrored else image).save(folder / name)
            lines.append(f"{name},{label},d,s{i}{int(mirrored)},u,u,u")
    manifest = write_manifest(folder, lines)

    outputs = []
    for attempt in range(2):
        out = tmp_path / f"params{attempt}.json"
        code = main(
            [
                "calibrate",
                "--manifest",
                str(manifest),
                "--output",
                str(out),
                "--report-dir",
                str(tmp_path / "report"),
                "--folds",
                "2",
                "--knot",
                "0.3",
            ]
        )
        assert code == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    params = json.loads(outputs[0])
    assert params["meta"]["photos"] == 4
    assert params["bend"]["knot"] == 0.3
    assert (tmp_path / "report" / "calibration_report.md").is_file()
