"""Manifest reading, the face cache and face extraction on labelled photos."""

from __future__ import annotations

from pathlib import Path

import pytest

from airctrl.config import AssetSettings, Settings
from airctrl.dataset import FaceCache, ManifestError, extract_samples, read_manifest

HEADER = "path,label,dataset,subject,sex,age_group,ethnicity\n"


def write_manifest(folder: Path, lines: list[str]) -> Path:
    path = folder / "manifest.csv"
    path.write_text(HEADER + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_manifest_paths_resolve_against_its_folder_and_contempt_is_dropped(
    tmp_path: Path,
) -> None:
    path = write_manifest(
        tmp_path,
        [
            "img/a.jpg,Happy,d,s1,f,18-29,white",
            "img/b.jpg,contempt,d,s2,m,18-29,black",
            "img/c.jpg,surprise,d,s3,m,18-29,black",
        ],
    )
    kept, dropped = read_manifest(path)
    assert [r.label for r in kept] == ["happy", "surprised"]
    assert kept[0].path == tmp_path / "img" / "a.jpg"
    assert kept[0].group("ethnicity") == "white"
    assert [r.label for r in dropped] == ["contempt"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("path,subject\na.jpg,s\n", "lacks column", id="no-label-column"),
        pytest.param("path,label\na.jpg,bored\n", "not one of", id="unknown-label"),
        pytest.param("path,label\n", "no rows", id="empty"),
    ],
)
def test_bad_manifest_raises_manifest_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "m.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_missing_and_undecodable_photos_are_kept_with_reasons(
    tmp_path: Path, model_path: Path
) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    manifest = write_manifest(
        folder, ["gone.jpg,happy,d,s1,u,u,u", "broken.jpg,sad,d,s2,u,u,u"]
    )
    rows, _ = read_manifest(manifest)
    settings = Settings(assets=AssetSettings(cache_dir=tmp_path / "cache"))
    samples = extract_samples(rows, settings, model_path=model_path)
    assert [s.face for s in samples] == [None, None]
    assert samples[0].error == "file not found"
    assert samples[1].error is not None and "could not be decoded" in samples[1].error


def test_face_cache_key_changes_when_the_detector_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airctrl.landmarks

    model = tmp_path / "model.task"
    model.write_bytes(b"same model bytes")
    settings = Settings(assets=AssetSettings(cache_dir=tmp_path / "cache"))
    source = tmp_path / "landmarks.py"
    source.write_text("# face search, first version\n", encoding="utf-8")
    monkeypatch.setattr(airctrl.landmarks, "__file__", str(source))
    first = FaceCache.for_settings(settings, model).folder
    again = FaceCache.for_settings(settings, model).folder
    source.write_text("# face search, changed crops\n", encoding="utf-8")
    changed = FaceCache.for_settings(settings, model).folder
    assert first == again
    assert changed != first
