"""The hard-case table (shared cases README) through ``airctrl analyze``, in process.

Each input is rebuilt from single_face.jpg / single_face.mp4 by tests/media.py
(one family per row), then analysed by the real CLI with the real model. The
assertions are the README's "what AIRCTRL should do" column.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import media
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from airctrl.cli import main

Array = npt.NDArray[np.uint8]
Builder = Callable[[Path, Array, Path], Path]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    """Run ``airctrl analyze`` in process; return exit code, parsed JSON, stderr."""
    code = main(["analyze", "--no-progress", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` and return the path."""
    path.write_bytes(data)
    return path


# Still-image builders: (folder, photo RGB, sample clip) -> file.
STILLS: dict[str, Builder] = {
    "rgba-transparent-bg": lambda d, p, v: write(
        d / "c01.png", media.rgba_transparent_background(p)[0]
    ),
    "grayscale-1ch": lambda d, p, v: write(
        d / "c02.png", media.png(Image.fromarray(cv2.cvtColor(p, cv2.COLOR_RGB2GRAY)))
    ),
    "rgb-16bit": lambda d, p, v: write(d / "c03.png", media.rgb48_png(p)),
    "cmyk": lambda d, p, v: write(d / "c04.jpg", media.cmyk_jpeg(p)),
    "exif-orientation-6": lambda d, p, v: write(
        d / "c05.jpg", media.exif_oriented_jpeg(p, 6)
    ),
    "huge-24mp-small-face": lambda d, p, v: write(
        d / "c06.jpg", media.jpeg(media.small_face_on_huge_canvas(p)[0], quality=80)
    ),
    "animated-webp": lambda d, p, v: write(
        d / "c12.webp", media.animated([p, 255 - p, np.zeros_like(p)], "WEBP")
    ),
    "heic": lambda d, p, v: write(d / "c13.heic", media.heic(p)),
    "roll-45": lambda d, p, v: write(d / "c20.jpg", media.jpeg(media.rotated(p, 45))),
    "closeup-fills-frame": lambda d, p, v: write(
        d / "c22.jpg",
        media.jpeg(cv2.resize(p[180:400, 190:375], (720, 856), cv2.INTER_CUBIC)),
    ),
    "very-dark": lambda d, p, v: write(d / "c23.jpg", media.jpeg(media.darkened(p))),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every rebuilt case input of this module."""
    return tmp_path_factory.mktemp("cases")


@pytest.fixture(scope="module")
def clip_path(sample_path: Callable[[str], Path]) -> Path:
    """single_face.mp4."""
    return sample_path("single_face.mp4")


@pytest.mark.parametrize("case", list(STILLS), ids=list(STILLS))
def test_happy_photo_in_any_format_gives_one_happy_face(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    happy_face_rgb: Array,
    clip_path: Path,
    case: str,
) -> None:
    path = STILLS[case](folder, happy_face_rgb, clip_path)

    code, data, err = run_cli(capsys, str(path))

    assert code == 0, err
    faces = data["results"][0]["faces"]
    assert len(faces) == 1
    assert faces[0]["emotion"] == "happy"


def test_exif_rotated_photo_box_is_in_upright_coordinates(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    happy_face_rgb: Array,
    clip_path: Path,
) -> None:
    path = STILLS["exif-orientation-6"](folder, happy_face_rgb, clip_path)

    _, data, _ = run_cli(capsys, str(path))

    x, y, w, h = data["results"][0]["faces"][0]["box"]
    cx, cy = media.FACE_CENTER_XY
    assert (data["results"][0]["width"], data["results"][0]["height"]) == (572, 562)
    assert x <= cx <= x + w and y <= cy <= y + h


def test_animated_image_result_says_first_frame(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    happy_face_rgb: Array,
    clip_path: Path,
) -> None:
    path = STILLS["animated-webp"](folder, happy_face_rgb, clip_path)

    _, data, _ = run_cli(capsys, str(path))

    assert "animated: first frame analysed" in data["results"][0]["flags"]


REJECTED: dict[str, tuple[Callable[[Array], bytes], str]] = {
    "truncated-baseline": (lambda p: media.truncated(media.jpeg(p)), "truncated"),
    "empty": (lambda p: b"", "empty file"),
    "html-named-jpg": (lambda p: media.HTML_PAGE, "HTML"),
    "tiny-8x8": (
        lambda p: media.png(cv2.resize(p, (8, 8), interpolation=cv2.INTER_AREA)),
        "8x8",
    ),
}


@pytest.mark.parametrize("case", list(REJECTED), ids=list(REJECTED))
def test_unusable_input_is_one_line_and_nonzero_exit(
    capsys: pytest.CaptureFixture[str], folder: Path, happy_face_rgb: Array, case: str
) -> None:
    make, words = REJECTED[case]
    path = write(folder / f"{case}.jpg", make(happy_face_rgb))

    code, data, err = run_cli(capsys, str(path))

    assert code == 2
    assert data["results"] == []
    assert len(err.strip().splitlines()) == 1 and words in err
    assert "Traceback" not in err


def test_bad_file_does_not_stop_the_good_ones(
    capsys: pytest.CaptureFixture[str], folder: Path, happy_face_rgb: Array
) -> None:
    good = write(folder / "good.jpg", media.jpeg(happy_face_rgb))
    bad = write(folder / "bad.jpg", media.HTML_PAGE)

    code, data, err = run_cli(capsys, str(bad), str(good))

    assert code == 2
    assert [r["path"] for r in data["results"]] == [str(good)]
    assert data["results"][0]["faces"][0]["emotion"] == "happy"
    assert len(err.strip().splitlines()) == 1


def test_half_face_at_the_edge_is_partial_or_absent(
    capsys: pytest.CaptureFixture[str], folder: Path, happy_face_rgb: Array
) -> None:
    path = write(
        folder / "c18.jpg", media.jpeg(media.left_half_cut(happy_face_rgb[:, :460]))
    )

    code, data, _ = run_cli(capsys, str(path))

    faces = data["results"][0]["faces"]
    assert code == 0 and len(faces) <= 1
    for face in faces:
        assert face["partial"] is True
        assert face["box"][0] == 0


def test_turned_face_is_never_a_confident_wrong_emotion(
    capsys: pytest.CaptureFixture[str], folder: Path, happy_face_rgb: Array
) -> None:
    squeezed = cv2.resize(happy_face_rgb, (314, 562), interpolation=cv2.INTER_AREA)
    path = write(folder / "c19.jpg", media.jpeg(squeezed))

    code, data, _ = run_cli(capsys, str(path))

    assert code == 0
    # The face is found (tests/test_landmarks.py); a missing one must fail here.
    (face,) = data["results"][0]["faces"]
    wrong = face["emotion"] != "happy"
    assert not (wrong and face["confidence"] >= 0.5), face
    if wrong:
        assert {"extreme_pose", "low_confidence"} & set(face["flags"]), face


def test_landscape_without_a_face_has_no_emotion(
    capsys: pytest.CaptureFixture[str], sample_path: Callable[[str], Path]
) -> None:
    code, data, _ = run_cli(capsys, str(sample_path("free-mountain-vector-01.jpg")))

    assert code == 0
    assert data["results"][0]["faces"] == []
    assert "emotion" not in json.dumps(data["results"][0])


@pytest.mark.parametrize(
    ("max_faces", "count", "capped"),
    [("12", 12, False), ("5", 5, True)],
    ids=["room-for-12", "capped-at-5"],
)
def test_twelve_face_grid(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    happy_face_rgb: Array,
    max_faces: str,
    count: int,
    capped: bool,
) -> None:
    path = write(folder / "c21.jpg", media.jpeg(media.grid(happy_face_rgb, 3, 4)))

    code, data, _ = run_cli(capsys, "--max-faces", max_faces, str(path))

    faces = data["results"][0]["faces"]
    assert code == 0 and len(faces) == count
    assert sum(face["emotion"] == "happy" for face in faces) >= count - 2
    assert ("max_faces_reached" in data["results"][0]["flags"]) is capped


# -- videos ---------------------------------------------------------------------------


def happy_share(frames: list[dict[str, Any]], first: int, last: int) -> float:
    """Share of frames first..last (inclusive) whose first face is happy."""
    chosen = [f for f in frames if first <= f["frame"] <= last]
    happy = sum(1 for f in chosen if f["faces"] and f["faces"][0]["emotion"] == "happy")
    return happy / len(chosen)


VIDEOS: dict[str, Callable[[Path, Path], Path]] = {
    "rotate-metadata": lambda src, d: media.rotated_mp4(src, d / "c14.mp4"),
    "duplicate-ms-timestamps": lambda src, d: media.duplicate_timestamp_mp4(
        src, d / "c15.mp4"
    ),
    "webm-no-duration": lambda src, d: media.webm_without_duration(src, d / "c17.webm"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(VIDEOS), ids=list(VIDEOS))
def test_awkward_video_gives_all_frames_upright_neutral_then_happy(
    capsys: pytest.CaptureFixture[str], folder: Path, clip_path: Path, case: str
) -> None:
    path = VIDEOS[case](clip_path, folder)

    code, data, err = run_cli(capsys, str(path))

    assert code == 0, err
    result = data["results"][0]
    frames = result["frames"]
    stamps = [f["timestamp_ms"] for f in frames]
    assert result["frame_count"] == 72 and len(frames) == 72
    assert all(b > a for a, b in itertools.pairwise(stamps))
    assert result["frames_with_faces"] >= 70
    for frame in frames:
        assert (frame["width"], frame["height"]) == (320, 180)
        for face in frame["faces"]:
            x, y, w, h = face["box"]
            assert x + w <= 320 and y + h <= 180
    assert happy_share(frames, 30, 55) > 0.5
    assert happy_share(frames, 0, 12) < 0.5


def without_ids(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames with each face's track id removed."""
    return [
        {**frame, "faces": [{**f, "face_id": None} for f in frame["faces"]]}
        for frame in frames
    ]


@pytest.mark.slow
def test_two_clips_in_one_run_carry_no_state_between_them(
    capsys: pytest.CaptureFixture[str], folder: Path, clip_path: Path
) -> None:
    first = media.clip(clip_path, folder / "c16a.mp4", 0, 36)
    second = media.clip(clip_path, folder / "c16b.mp4", 36, 36)

    code_both, both, _ = run_cli(capsys, str(first), str(second))
    code_alone, alone, _ = run_cli(capsys, str(second))

    assert code_both == 0 and code_alone == 0
    assert [r["frame_count"] for r in both["results"]] == [36, 36]
    assert both["results"][1]["frames_with_faces"] >= 35
    # Track ids keep counting across files (unique within a run); everything
    # else about the second clip must match analysing it on its own.
    assert without_ids(both["results"][1]["frames"]) == without_ids(
        alone["results"][0]["frames"]
    )
