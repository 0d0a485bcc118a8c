"""landmarks.py on the hard still-image cases and in video mode, with the real model."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import media
import numpy as np
import numpy.typing as npt
import pytest

from airctrl.capture import VideoFileSource
from airctrl.decode import decode_image, read_image
from airctrl.errors import ImageTooSmallError
from airctrl.landmarks import (
    LandmarkDetector,
    LandmarkerOptions,
    apparent_yaw_deg,
    is_low_light,
    pad_image,
    tile_origins,
    tile_sides,
)
from airctrl.types import BoundingBox, Detection, Frame

Array = npt.NDArray[np.uint8]


def iou(a: BoundingBox, b: BoundingBox) -> float:
    """Intersection over union of two pixel boxes."""
    ix = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    union = a.width * a.height + b.width * b.height - ix * iy
    return ix * iy / union


def contains(box: BoundingBox, x: float, y: float) -> bool:
    """True when the point (x, y) lies inside ``box``."""
    return box.x <= x <= box.x + box.width and box.y <= y <= box.y + box.height


@pytest.fixture()
def detect(model_path: Path) -> Iterator[Callable[..., Detection]]:
    """Run an image-mode detector (options as keywords) on an RGB array."""
    made: list[LandmarkDetector] = []

    def run(image: Array, **options: object) -> Detection:
        detector = LandmarkDetector(
            model_path, mode="image", options=LandmarkerOptions(**options)
        )
        made.append(detector)
        return detector.detect(Frame(np.ascontiguousarray(image), 0, 0))

    yield run
    for detector in made:
        detector.close()


# -- one face, many disguises -------------------------------------------------------


def test_single_face_is_found_where_it_is(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    found = detect(happy_face_rgb)

    assert len(found.faces) == 1
    assert contains(found.faces[0].box, *media.FACE_CENTER_XY)
    assert found.flags == ()


#: The 52 blendshape categories the Face Landmarker model outputs (ARKit's 51
#: face shapes plus ``_neutral``), written out by hand rather than read from
#: our code.
MEDIAPIPE_BLENDSHAPES = {
    "_neutral",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft",
    "noseSneerRight",
}  # fmt: skip


def test_single_face_keeps_478_points_52_blendshapes_and_a_head_pose(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    face = detect(happy_face_rgb).faces[0]

    pose = (face.pose.yaw_deg, face.pose.pitch_deg, face.pose.roll_deg)
    assert len(MEDIAPIPE_BLENDSHAPES) == 52
    assert face.points.shape == (478, 3) and face.points.dtype == np.float32
    assert np.isfinite(face.points).all()
    assert set(face.blendshapes) == MEDIAPIPE_BLENDSHAPES
    assert all(0.0 <= score <= 1.0 for score in face.blendshapes.values())
    assert all(math.isfinite(angle) for angle in pose)
    # A frontal portrait: the pose comes from the model's matrix (the fallback
    # without one is exactly 0, 0, 0) and stays well inside +-25 degrees.
    assert pose != (0.0, 0.0, 0.0)
    assert all(abs(angle) < 25 for angle in pose)


def test_exif_rotated_photo_box_is_in_upright_coordinates(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    upright = detect(happy_face_rgb).faces[0].box
    decoded = decode_image(media.exif_oriented_jpeg(happy_face_rgb, 6))

    found = detect(decoded.image)

    assert len(found.faces) == 1
    assert iou(found.faces[0].box, upright) > 0.85


def test_face_rolled_45_degrees_is_found_with_its_roll(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    found = detect(media.rotated(happy_face_rgb, 45))

    assert len(found.faces) == 1
    assert abs(abs(found.faces[0].pose.roll_deg) - 45) < 15


def test_closeup_filling_the_frame_is_found(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    face = happy_face_rgb[180:400, 190:375]
    closeup = cv2.resize(face, (720, 856), interpolation=cv2.INTER_CUBIC)

    found = detect(closeup)

    assert len(found.faces) == 1
    assert found.faces[0].box.width > 500


def test_half_face_at_left_edge_is_clamped_and_marked_partial(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    half = media.left_half_cut(happy_face_rgb[:, :460])

    found = detect(half)

    assert len(found.faces) == 1
    face = found.faces[0]
    assert face.is_partial
    assert face.box.x == 0
    assert face.box.x + face.box.width <= half.shape[1]


def test_squeezed_face_simulating_yaw_is_flagged_extreme_pose(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    squeezed = cv2.resize(happy_face_rgb, (314, 562), interpolation=cv2.INTER_AREA)

    found = detect(squeezed)

    assert len(found.faces) == 1
    assert abs(found.faces[0].pose.yaw_deg) > 35
    assert "extreme_pose" in found.flags


@pytest.mark.parametrize(
    ("span_px", "expected_deg"),
    [(145.0, 0.0), (200.0, 0.0), (72.5, 60.0), (102.53, 45.0)],
    ids=["frontal", "wider-than-frontal", "half-width", "cos45-width"],
)
def test_apparent_yaw_follows_cheek_span_over_upper_face_height(
    span_px: float, expected_deg: float
) -> None:
    # Upper face 100 px tall; a frontal face is 1.45 times as wide (145 px), and
    # a turn of t shows cos(t) of that width: 72.5 px is 60 deg, 102.53 is 45.
    points = np.zeros((478, 3), dtype=np.float32)
    points[10, :2] = (0.5, 0.2)
    points[2, :2] = (0.5, 0.3)  # 0.1 of 1000 px = 100 px below
    points[234, :2] = (0.5 - span_px / 2000, 0.25)
    points[454, :2] = (0.5 + span_px / 2000, 0.25)

    assert apparent_yaw_deg(points, 1000, 1000) == pytest.approx(expected_deg, abs=0.2)


def test_tiny_image_is_refused_as_too_small(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    tiny = cv2.resize(happy_face_rgb, (8, 8), interpolation=cv2.INTER_AREA)

    with pytest.raises(ImageTooSmallError, match="8x8"):
        detect(tiny)


# -- lighting and pose flags ----------------------------------------------------------


def test_very_dark_photo_still_finds_the_face_and_flags_low_light(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    found = detect(media.darkened(happy_face_rgb, 0.09))

    assert len(found.faces) == 1
    assert "low_light" in found.flags


@pytest.mark.parametrize(
    ("gain", "expected"),
    [(0.09, True), (0.25, True), (0.6, False), (1.0, False)],
    ids=["unlit", "dim", "indoor", "daylight"],
)
def test_low_light_is_judged_by_mean_brightness(
    happy_face_rgb: Array, gain: float, expected: bool
) -> None:
    # The sample photo averages ~96/255, so 0.25 gives ~24 and 0.6 gives ~58.
    assert is_low_light(media.darkened(happy_face_rgb, gain)) is expected


@pytest.mark.parametrize(
    ("limit_deg", "flagged"),
    [(1.0, True), (35.0, False)],
    ids=["strict-limit", "default-limit"],
)
def test_extreme_pose_flag_follows_the_yaw_limit(
    detect: Callable[..., Detection],
    happy_face_rgb: Array,
    limit_deg: float,
    flagged: bool,
) -> None:
    # The man faces the camera with a few degrees of yaw: beyond 1, within 35.
    found = detect(happy_face_rgb, extreme_yaw_deg=limit_deg, extreme_pitch_deg=90.0)

    assert ("extreme_pose" in found.flags) is flagged


# -- many faces, small faces -----------------------------------------------------------


def test_group_photo_gives_one_face_per_person(
    detect: Callable[..., Detection], sample_path: Callable[[str], Path]
) -> None:
    group = read_image(sample_path("multi_face.jpg")).image

    found = detect(group, max_faces=10)

    assert len(found.faces) == 5
    assert "max_faces_reached" not in found.flags
    boxes = [face.box for face in found.faces]
    assert all(iou(a, b) < 0.1 for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_group_photo_meshes_sit_on_the_faces(
    detect: Callable[..., Detection], sample_path: Callable[[str], Path]
) -> None:
    group = read_image(sample_path("multi_face.jpg")).image

    found = detect(group, max_faces=10)

    # By eye: the woman on the far right grins widely. A mesh that slid off her
    # face (as a whole-picture pass produces) reads her smile as about 0.
    rightmost = max(found.faces, key=lambda face: face.box.x)
    smile = (
        rightmost.blendshapes["mouthSmileLeft"]
        + rightmost.blendshapes["mouthSmileRight"]
    ) / 2
    assert smile > 0.5


def test_twelve_face_grid_gives_twelve_with_room_for_them(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    sheet = media.grid(happy_face_rgb, rows=3, cols=4)

    found = detect(sheet, max_faces=12)

    assert len(found.faces) == 12
    assert "max_faces_reached" not in found.flags
    cells = {
        (f.box.x + f.box.width // 2) // 230 + 4 * ((f.box.y + f.box.height // 2) // 230)
        for f in found.faces
    }
    assert cells == set(range(12))  # one face in every cell


def test_twelve_face_grid_capped_at_five_says_so(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    found = detect(media.grid(happy_face_rgb, rows=3, cols=4), max_faces=5)

    assert len(found.faces) == 5
    assert "max_faces_reached" in found.flags


def test_small_face_in_24_megapixel_photo_is_found(
    detect: Callable[..., Detection], happy_face_rgb: Array
) -> None:
    canvas, (x, y, scale) = media.small_face_on_huge_canvas(happy_face_rgb)
    face_x = x + media.FACE_CENTER_XY[0] * scale
    face_y = y + media.FACE_CENTER_XY[1] * scale

    found = detect(canvas)

    assert len(found.faces) == 1
    assert contains(found.faces[0].box, face_x, face_y)
    assert found.faces[0].box.width < 150  # about 183 * 260/572 = 83 px


def test_huge_photo_without_faces_says_faces_may_be_too_small(
    detect: Callable[..., Detection],
) -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 255, size=(2500, 3500, 3), dtype=np.uint8)

    found = detect(noise)

    assert found.faces == ()
    assert "faces_may_be_too_small" in found.flags


def test_landscape_without_a_face_gives_no_face(
    detect: Callable[..., Detection], sample_path: Callable[[str], Path]
) -> None:
    landscape = read_image(sample_path("free-mountain-vector-01.jpg")).image

    assert detect(landscape).faces == ()


# -- tiling geometry (worked out by hand) ---------------------------------------------


@pytest.mark.parametrize(
    ("size", "sides"),
    [((6000, 4000), [3000, 1500, 750, 375]), ((1000, 667), [500]), ((640, 480), [320])],
    ids=["24mp", "group-photo", "vga"],
)
def test_tile_sides_halve_from_half_the_long_side_to_320(
    size: tuple[int, int], sides: list[int]
) -> None:
    assert tile_sides(*size) == sides


def test_tile_origins_overlap_and_reach_every_edge() -> None:
    # 500 px tiles step 350 px (30% overlap); the last tile is pulled in to the edge.
    assert tile_origins(1000, 667, 500) == [
        (0, 0),
        (350, 0),
        (500, 0),
        (0, 167),
        (350, 167),
        (500, 167),
    ]


def test_pad_image_adds_a_mean_coloured_border_around_the_unchanged_image() -> None:
    image = np.zeros((40, 100, 3), dtype=np.uint8)
    image[:, 50:] = 200  # mean colour 100 on every channel
    padded, pad_x, pad_y = pad_image(image, 0.25)
    assert (pad_x, pad_y) == (25, 10)
    assert padded.shape == (60, 150, 3)
    assert np.array_equal(padded[10:50, 25:125], image)
    assert np.all(padded[:10] == 100)
    assert np.all(padded[:, :25] == 100)


# -- video mode ---------------------------------------------------------------------


def test_video_mode_follows_the_face_through_a_clip(
    model_path: Path, sample_path: Callable[[str], Path], tmp_path: Path
) -> None:
    clip = media.small_mp4(sample_path("single_face.mp4"), tmp_path / "small.mp4")

    with LandmarkDetector(model_path, mode="video") as detector:
        counts = [len(detector.detect(frame).faces) for frame in VideoFileSource(clip)]

    assert len(counts) == 72
    assert counts.count(1) >= 70


def test_second_clip_after_reset_is_analysed_from_scratch(
    model_path: Path, sample_path: Callable[[str], Path], tmp_path: Path
) -> None:
    source = sample_path("single_face.mp4")
    first = media.clip(source, tmp_path / "a.mp4", 0, 36)
    second = media.clip(source, tmp_path / "b.mp4", 36, 36)

    with LandmarkDetector(model_path, mode="video") as detector:
        for frame in VideoFileSource(first):
            detector.detect(frame)
        detector.reset()
        results = [detector.detect(frame) for frame in VideoFileSource(second)]

    assert [r.timestamp_ms for r in results][:3] == [0, 33, 67]
    assert sum(len(r.faces) for r in results) >= 35


def test_video_mode_accepts_repeated_timestamps(
    model_path: Path, happy_face_rgb: Array
) -> None:
    with LandmarkDetector(model_path, mode="video") as detector:
        results = [
            detector.detect(Frame(happy_face_rgb, stamp, index))
            for index, stamp in enumerate([0, 33, 33, 20, 66])
        ]

    assert [len(r.faces) for r in results] == [1, 1, 1, 1, 1]


# -- reading MediaPipe's results ------------------------------------------------------


def _mediapipe_landmarker(model_path: Path, video: bool) -> Any:
    """A plain MediaPipe FaceLandmarker with everything this project reads."""
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    mode = vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE
    options = vision.FaceLandmarkerOptions(
        base_options=mp_tasks.BaseOptions(model_asset_path=str(model_path)),
        running_mode=mode,
        num_faces=6,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    return vision.FaceLandmarker.create_from_options(options)


def _assert_same_faces(direct: list[Any], public: list[Any]) -> None:
    assert len(direct) == len(public) >= 1
    for ours, theirs in zip(direct, public):
        assert ours.points.shape == (478, 3)
        assert ours.points.dtype == np.float32
        np.testing.assert_array_equal(ours.points, theirs.points)
        assert ours.blendshapes == theirs.blendshapes
        assert len(ours.blendshapes) == 52
        np.testing.assert_array_equal(ours.matrix, theirs.matrix)


def test_direct_result_reader_is_in_use_with_the_pinned_mediapipe() -> None:
    from airctrl.landmarks import _direct_reader_types

    # Without it every pass converts 478 points through Python objects again.
    assert _direct_reader_types() is not None


def test_direct_result_reader_matches_mediapipes_public_api_on_photos(
    model_path: Path, happy_face_rgb: Array, sample_path: Callable[[str], Path]
) -> None:
    import mediapipe as mp

    from airctrl.landmarks import _faces_from_public, _ResultReader

    group = read_image(sample_path("multi_face.jpg")).image
    reader = _ResultReader()
    landmarker = _mediapipe_landmarker(model_path, video=False)
    try:
        for rgb in (happy_face_rgb, group):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
            direct = reader.detect(landmarker, image, None)
            public = _faces_from_public(landmarker.detect(image))
            _assert_same_faces(direct, public)
    finally:
        landmarker.close()

    assert reader._direct is not None  # the direct path really ran


def test_direct_result_reader_matches_mediapipes_public_api_on_video(
    model_path: Path, sample_path: Callable[[str], Path], tmp_path: Path
) -> None:
    import mediapipe as mp

    from airctrl.landmarks import _faces_from_public, _ResultReader

    clip = media.clip(sample_path("single_face.mp4"), tmp_path / "c.mp4", 0, 8)
    reader = _ResultReader()
    ours = _mediapipe_landmarker(model_path, video=True)
    theirs = _mediapipe_landmarker(model_path, video=True)
    try:
        for frame in VideoFileSource(clip):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=frame.image)
            stamp = frame.timestamp_ms
            direct = reader.detect(ours, image, stamp)
            public = _faces_from_public(theirs.detect_for_video(image, stamp))
            _assert_same_faces(direct, public)
    finally:
        ours.close()
        theirs.close()

    assert reader._direct is not None  # the direct path really ran


def test_detector_falls_back_to_the_public_api_with_the_same_faces(
    model_path: Path, happy_face_rgb: Array, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airctrl import landmarks

    with LandmarkDetector(model_path, mode="image") as detector:
        direct = detector.detect(Frame(happy_face_rgb, 0, 0)).faces
        assert detector._reader._direct is not None
    monkeypatch.setattr(landmarks, "_direct_reader_types", lambda: None)
    with LandmarkDetector(model_path, mode="image") as detector:
        assert detector._reader._direct is None
        public = detector.detect(Frame(happy_face_rgb, 0, 0)).faces

    assert len(direct) == len(public) == 1
    np.testing.assert_array_equal(direct[0].points, public[0].points)
    assert direct[0].blendshapes == public[0].blendshapes
    assert direct[0].pose == public[0].pose
    assert direct[0].box == public[0].box


def test_reader_uses_the_public_api_for_a_landmarker_without_its_c_handles(
    model_path: Path, happy_face_rgb: Array
) -> None:
    import mediapipe as mp

    from airctrl.landmarks import _ResultReader

    class PublicOnly:
        """A landmarker that offers only MediaPipe's public methods."""

        def __init__(self, inner: Any) -> None:
            self.detect = inner.detect

    landmarker = _mediapipe_landmarker(model_path, video=False)
    try:
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=happy_face_rgb)
        reader = _ResultReader()
        direct = reader.detect(landmarker, image, None)
        public = reader.detect(PublicOnly(landmarker), image, None)
    finally:
        landmarker.close()

    assert reader._direct is None  # it stays on the public API from then on
    _assert_same_faces(direct, public)
