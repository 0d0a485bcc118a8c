"""Face landmarks with the MediaPipe Tasks Face Landmarker.

The only module that imports MediaPipe. It turns MediaPipe results into our
own frozen values once: 478 points, 52 blendshapes, head pose and a pixel box
per face, and an empty tuple when a frame holds no face.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import cv2
import numpy as np
import numpy.typing as npt

from airctrl.errors import AssetError, ImageTooSmallError
from airctrl.types import BoundingBox, Detection, FaceLandmarks, Frame, HeadPose

__all__ = [
    "LandmarkDetector",
    "LandmarkerOptions",
    "apparent_yaw_deg",
    "box_from_points",
    "box_iou",
    "brighten",
    "is_low_light",
    "pad_image",
    "pose_from_matrix",
    "tile_origins",
    "tile_sides",
]

logger = logging.getLogger(__name__)

#: A face box whose width is under this share of the image's long side marks the
#: image as a group or wide shot worth a tiled second pass (BlazeFace sees the
#: whole frame at 128 px, so faces under ~15% of it are often missed).
SMALL_FACE_SHARE = 0.15
#: Overlap between neighbouring tiles, as a share of the tile side, so a face cut
#: by one tile border lies whole inside the next tile.
TILE_OVERLAP = 0.3
#: Smallest tile side in pixels of the full image. The detector needs a face to
#: fill roughly an eighth of its input, so 320 px tiles reach faces of ~40 px.
MIN_TILE_SIDE = 320
#: Tiles larger than this are scaled down before detection; the detector works
#: at 128 px anyway, so this only bounds the cost of converting the tile.
TILE_INPUT_SIDE = 640
#: Most detector runs one tiled search may make (about 1.5 ms each on an empty
#: tile, on one core). A 24-megapixel photo needs ~450 for 320 px tiles; beyond
#: the budget the finest tiles are dropped and the result says so.
MAX_TILE_RUNS = 600
#: A tile whose green channel varies less than this (standard deviation, 0-255)
#: is flat sky, wall or border and cannot hold a face; it is skipped. A face
#: crop, even a dim one after brightening, varies by 20 or more.
FLAT_TILE_STD = 6.0
#: Two detections overlapping more than this (intersection over union) are one face.
DUPLICATE_IOU = 0.35
#: Share of each side added as border on the padded retry (tight crops cut at chin
#: and forehead are found once the detector sees some context around them).
PAD_SHARE = 0.25
#: The verification crop around a candidate face is this many times its box side,
#: and is resized to ``VERIFY_SIDE`` pixels before the re-run.
VERIFY_CONTEXT = 2.0
VERIFY_SIDE = 256
#: A candidate is a face when the re-run on its own crop finds a face whose box
#: overlaps it at least this much (IoU). Measured on multi_face.jpg: real faces
#: re-detect at 0.49-0.98 (the 0.49 one was a misaligned first mesh that the
#: re-run corrects); the false mesh between two faces re-detects onto its
#: neighbour, which the duplicate filter then removes.
VERIFY_IOU = 0.3
#: With ``LandmarkerOptions.trust_large_faces``, a face from a still's first
#: whole-image pass whose box side is at least this share of the image's long
#: side is kept without the confirming re-run, which would repeat the landmarker
#: pass on a crop about its own size. The false and misaligned first meshes the
#: re-run exists for come from small faces in group shots and from tiles; the
#: re-centred mesh still reads expressions better (see README).
TRUSTED_FACE_SHARE = 0.3
#: Mean luma (0-255) under which a frame is flagged "low_light": an unlit room
#: shot by a webcam averages 10-30; ordinary indoor footage is above 60.
LOW_LIGHT_MEAN_LUMA = 40.0
#: Brightness the retry on a dark image stretches its 99th percentile to; the
#: gain is capped so sensor noise is not blown up into texture.
BRIGHTEN_TARGET = 220.0
MAX_BRIGHTEN_GAIN = 8.0
#: Cheek-to-cheek width (points 234-454) over forehead-to-nose-base height
#: (points 10-2) of a frontal face. Both spans are rigid (no jaw), so only a
#: turn or a distorted picture changes the ratio. Measured on the sample media:
#: 1.36-1.64 on frontal stills, 1.26-1.63 (median 1.43) over both sample videos.
FRONTAL_WIDTH_TO_HEIGHT = 1.45
#: Frame flags this module sets.
FLAG_CAPPED = "max_faces_reached"
FLAG_LOW_LIGHT = "low_light"
FLAG_EXTREME_POSE = "extreme_pose"
FLAG_SMALL_FACES = "faces_may_be_too_small"
FLAG_DOWNSCALED = "downscaled"


@dataclass(frozen=True)
class LandmarkerOptions:
    """Options shared by the IMAGE and VIDEO landmarkers.

    ``extreme_yaw_deg``/``extreme_pitch_deg`` mark a frame "extreme_pose" when a
    face is turned further than that (the defaults match EmotionSettings).
    """

    max_faces: int = 5
    min_detection_confidence: float = 0.3
    min_presence_confidence: float = 0.3
    min_tracking_confidence: float = 0.3
    max_image_side: int = 1920
    min_image_side: int = 32
    pad_retry: bool = True
    tile_retry: bool = True
    extreme_yaw_deg: float = 35.0
    extreme_pitch_deg: float = 30.0
    #: Keep large faces of a still's first pass without the confirming re-run
    #: (see :data:`TRUSTED_FACE_SHARE`).
    trust_large_faces: bool = False


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while MediaPipe builds its graph.

    MediaPipe's C++ start-up prints half a dozen glog/TFLite lines straight to
    fd 2 (environment switches do not reach them), which would break the CLI's
    one-line error promise and clutter piped output.

    Limitation: anything another thread writes to stderr during the ~50 ms of
    graph creation is lost too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def pose_from_matrix(matrix: npt.NDArray[np.float64]) -> HeadPose:
    """Return yaw, pitch and roll in degrees from a 4x4 face transformation matrix.

    The matrix maps the canonical face model into camera space; a frontal face
    gives (0, 0, 0). Positive yaw turns the face towards image right.
    """
    rotation = np.asarray(matrix, dtype=np.float64)[:3, :3]
    scale = np.linalg.norm(rotation, axis=0)
    rotation = rotation / np.where(scale == 0, 1.0, scale)
    sy = math.hypot(rotation[0, 0], rotation[1, 0])
    if sy > 1e-6:
        pitch = math.atan2(rotation[2, 1], rotation[2, 2])
        yaw = math.atan2(-rotation[2, 0], sy)
        roll = math.atan2(rotation[1, 0], rotation[0, 0])
    else:
        pitch = math.atan2(-rotation[1, 2], rotation[1, 1])
        yaw = math.atan2(-rotation[2, 0], sy)
        roll = 0.0
    return HeadPose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))


def box_from_points(
    points: npt.NDArray[np.float32], width: int, height: int
) -> tuple[BoundingBox, bool]:
    """Return the clamped pixel box around normalised ``points`` and whether it was cut.

    ``points`` is (N, 2+) with x, y normalised to the image. The second value is
    True when the unclamped box reaches past the image border (a partial face).
    """
    xs = points[:, 0] * width
    ys = points[:, 1] * height
    x0, x1 = float(xs.min()), float(xs.max())
    y0, y1 = float(ys.min()), float(ys.max())
    margin = 1.0
    is_partial = (
        x0 < -margin or y0 < -margin or x1 > width + margin or y1 > height + margin
    )

    cx0 = int(max(0, math.floor(x0)))
    cy0 = int(max(0, math.floor(y0)))
    cx1 = int(min(width, math.ceil(x1)))
    cy1 = int(min(height, math.ceil(y1)))
    return BoundingBox(cx0, cy0, max(0, cx1 - cx0), max(0, cy1 - cy0)), is_partial


def box_iou(a: BoundingBox, b: BoundingBox) -> float:
    """Return the intersection over union of two pixel boxes (0 when both are empty)."""
    ix = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class _RawFace:
    """One face as the landmarker returned it, before any coordinate mapping.

    ``points`` is (n, 3) float32 in the input image's normalised coordinates;
    ``matrix`` is the 4x4 facial transformation matrix, None when absent.
    """

    points: npt.NDArray[np.float32]
    blendshapes: dict[str, float]
    matrix: npt.NDArray[np.float64] | None


class _ResultReader:
    """Run a MediaPipe FaceLandmarker and read its result into :class:`_RawFace`.

    MediaPipe's own ``detect`` turns each of the 478 points into a Python
    object before we turn them into an array again: about 1 ms a call, 5-8%
    of a landmarker pass. When the installed MediaPipe has the C result layout
    this module was written against (checked once per process, and by the
    tests against the public API on photos and video), the result is read
    straight into NumPy instead; otherwise, or when the landmarker lacks the
    handles this needs, the public API is used. Both give identical values.
    """

    def __init__(self) -> None:
        self._direct = _direct_reader_types()

    def detect(
        self, landmarker: Any, image: Any, timestamp_ms: int | None
    ) -> list[_RawFace]:
        """Return the faces of one IMAGE (``timestamp_ms`` None) or VIDEO call."""
        if self._direct is None:
            return _faces_from_public(
                landmarker.detect(image)
                if timestamp_ms is None
                else landmarker.detect_for_video(image, timestamp_ms)
            )

        lib = getattr(landmarker, "_lib", None)
        handle = getattr(landmarker, "_handle", None)
        pointer = getattr(image, "_image_ptr", None)
        if lib is None or handle is None or pointer is None:
            logger.debug("MediaPipe internals differ; using its public API")
            self._direct = None
            return self.detect(landmarker, image, timestamp_ms)

        result_type, landmark_type = self._direct
        result = result_type()
        if timestamp_ms is None:
            lib.MpFaceLandmarkerDetectImage(handle, pointer, None, ctypes.byref(result))
        else:
            lib.MpFaceLandmarkerDetectForVideo(
                handle, pointer, None, timestamp_ms, ctypes.byref(result)
            )

        try:
            return _faces_from_c(result, landmark_type)
        finally:
            lib.MpFaceLandmarkerCloseResult(ctypes.byref(result))


@functools.cache
def _direct_reader_types() -> tuple[Any, Any] | None:
    """Return MediaPipe's C result and landmark types, or None.

    None when this MediaPipe lacks them or lays them out differently from the
    fields :func:`_faces_from_c` reads.
    """
    try:
        from mediapipe.tasks.python.components.containers.category_c import (
            MpCategoryC,
        )
        from mediapipe.tasks.python.components.containers.landmark_c import (
            MpNormalizedLandmarkC,
        )
        from mediapipe.tasks.python.vision import face_landmarker
    except ImportError:
        return None
    result_type = getattr(face_landmarker, "MpFaceLandmarkerResultC", None)
    landmark_fields = [name for name, _ in MpNormalizedLandmarkC._fields_[:3]]
    category_fields = [name for name, _ in MpCategoryC._fields_[:3]]
    expected = (
        landmark_fields == ["x", "y", "z"]
        and category_fields == ["index", "score", "category_name"]
        and result_type is not None
        and [name for name, _ in result_type._fields_]
        == [
            "face_landmarks",
            "face_landmarks_count",
            "face_blendshapes",
            "face_blendshapes_count",
            "facial_transformation_matrixes",
            "facial_transformation_matrixes_count",
        ]
        and hasattr(face_landmarker.FaceLandmarker, "detect")
    )
    if not expected:
        logger.debug("MediaPipe result layout differs; using its public API")
        return None
    return result_type, MpNormalizedLandmarkC


def _c_array(pointer: Any, item_type: Any, dtype: np.dtype[Any], count: int) -> Any:
    """View ``count`` C structs at ``pointer`` as a NumPy array of ``dtype``."""
    address = ctypes.cast(pointer, ctypes.c_void_p).value
    if not address or count <= 0:
        return np.zeros(0, dtype=dtype)
    size = ctypes.sizeof(item_type) * count
    buffer = (ctypes.c_char * size).from_address(address)
    return np.frombuffer(memoryview(buffer), dtype=dtype, count=count)


@functools.cache
def _point_dtype(landmark_type: Any) -> np.dtype[Any]:
    return np.dtype(
        {
            "names": ["x", "y", "z"],
            "formats": ["<f4"] * 3,
            "offsets": [
                landmark_type.x.offset,
                landmark_type.y.offset,
                landmark_type.z.offset,
            ],
            "itemsize": ctypes.sizeof(landmark_type),
        }
    )


def _faces_from_c(result: Any, landmark_type: Any) -> list[_RawFace]:
    """Copy every face out of a C result (before MediaPipe frees it)."""
    point_dtype = _point_dtype(landmark_type)
    faces = []
    for i in range(result.face_landmarks_count):
        marks = result.face_landmarks[i]
        if marks.landmarks_count == 0:
            continue
        raw = _c_array(
            marks.landmarks, landmark_type, point_dtype, marks.landmarks_count
        )
        points = np.stack([raw["x"], raw["y"], raw["z"]], axis=1)  # float32
        shapes: dict[str, float] = {}
        if i < result.face_blendshapes_count:
            categories = result.face_blendshapes[i]
            items = categories.categories
            for j in range(categories.categories_count):
                name = items[j].category_name
                shapes[name.decode() if name else ""] = float(items[j].score)
        matrix = None
        if i < result.facial_transformation_matrixes_count:
            matrix = np.asarray(
                result.facial_transformation_matrixes[i].to_numpy(), dtype=np.float64
            )
        faces.append(_RawFace(points, shapes, matrix))
    return faces


def _faces_from_public(result: Any) -> list[_RawFace]:
    """Convert a public ``FaceLandmarkerResult`` into :class:`_RawFace` values."""
    faces = []
    for index, landmark_list in enumerate(result.face_landmarks):
        # One list per axis converts about twice as fast as a tuple per point.
        points = np.array(
            [
                [p.x for p in landmark_list],
                [p.y for p in landmark_list],
                [p.z for p in landmark_list],
            ],
            dtype=np.float32,
        ).T.copy()
        shapes: dict[str, float] = {}
        if result.face_blendshapes and index < len(result.face_blendshapes):
            for category in result.face_blendshapes[index]:
                shapes[category.category_name] = float(category.score)
        matrix = None
        if result.facial_transformation_matrixes and index < len(
            result.facial_transformation_matrixes
        ):
            matrix = np.asarray(
                result.facial_transformation_matrixes[index], np.float64
            )
        faces.append(_RawFace(points, shapes, matrix))
    return faces


@dataclass(frozen=True)
class _Window:
    """Where a detector input came from: offset and scale back to the full image."""

    x0: float
    y0: float
    scale: float
    width: int
    height: int


class LandmarkDetector:
    """Find faces and their landmarks in frames.

    ``mode="image"`` treats every call independently (photos; padded and tiled
    retries are available). ``mode="video"`` tracks faces between calls and needs
    strictly increasing timestamps; this class enforces that itself, so a source
    with repeated or backwards timestamps never reaches MediaPipe with them.

    Use one instance per stream; :meth:`close` (or a ``with`` block) frees it.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        mode: Literal["image", "video"] = "image",
        options: LandmarkerOptions | None = None,
    ) -> None:
        if mode not in ("image", "video"):
            raise ValueError(f"mode: expected 'image' or 'video', got {mode!r}")
        self.mode = mode
        self.options = options or LandmarkerOptions()
        self._model_path = Path(model_path)
        self._reader = _ResultReader()
        self._landmarker = self._create()
        self._last_timestamp_ms = -1

    def _create(self) -> Any:
        # Imported here so only this module needs MediaPipe.
        from mediapipe.tasks import python as mp_tasks
        from mediapipe.tasks.python import vision

        if not self._model_path.is_file():
            raise AssetError(
                f"model file {self._model_path} is missing; run 'airctrl assets fetch'"
            )
        running_mode = (
            vision.RunningMode.VIDEO
            if self.mode == "video"
            else vision.RunningMode.IMAGE
        )
        opts = vision.FaceLandmarkerOptions(
            base_options=mp_tasks.BaseOptions(model_asset_path=str(self._model_path)),
            running_mode=running_mode,
            # Image mode asks for one face more than allowed, so a capped result
            # is known to be capped rather than guessed from an exact count.
            num_faces=self.options.max_faces + (1 if self.mode == "image" else 0),
            min_face_detection_confidence=self.options.min_detection_confidence,
            min_face_presence_confidence=self.options.min_presence_confidence,
            min_tracking_confidence=self.options.min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        logger.debug("Creating %s-mode face landmarker", self.mode)
        with _native_stderr_silenced():
            return vision.FaceLandmarker.create_from_options(opts)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the MediaPipe graph; the detector cannot be used afterwards."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def reset(self) -> None:
        """Start a new stream: drop tracking state and the timestamp history."""
        self.close()
        self._landmarker = self._create()
        self._last_timestamp_ms = -1

    # -- core call -------------------------------------------------------------

    def _run(self, image: npt.NDArray[np.uint8], timestamp_ms: int) -> list[_RawFace]:
        import mediapipe as mp

        if self._landmarker is None:
            raise RuntimeError("LandmarkDetector is closed")
        mp_image = mp.Image(
            image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)
        )
        stamp = timestamp_ms if self.mode == "video" else None
        return self._reader.detect(self._landmarker, mp_image, stamp)

    def _next_timestamp(self, timestamp_ms: int) -> int:
        stamp = max(int(timestamp_ms), self._last_timestamp_ms + 1)
        if stamp != timestamp_ms:
            logger.debug(
                "Timestamp %d adjusted to %d to stay increasing", timestamp_ms, stamp
            )
        self._last_timestamp_ms = stamp
        return stamp

    @staticmethod
    def _faces_from_result(
        result: list[_RawFace], window: _Window, full_width: int, full_height: int
    ) -> list[FaceLandmarks]:
        faces: list[FaceLandmarks] = []
        for found in result:
            raw = found.points
            points = np.empty_like(raw)
            points[:, 0] = (
                raw[:, 0] * window.width * window.scale + window.x0
            ) / full_width
            points[:, 1] = (
                raw[:, 1] * window.height * window.scale + window.y0
            ) / full_height
            points[:, 2] = raw[:, 2] * window.width * window.scale / full_width
            if found.matrix is not None:
                pose = pose_from_matrix(found.matrix)
            else:
                pose = HeadPose(0.0, 0.0, 0.0)

            box, is_partial = box_from_points(points, full_width, full_height)
            if box.width < 2 or box.height < 2:
                continue
            faces.append(
                FaceLandmarks(points, found.blendshapes, pose, box, is_partial)
            )
        return faces

    # -- public API ------------------------------------------------------------

    def detect(self, frame: Frame) -> Detection:
        """Find faces in ``frame``.

        Video mode runs one pass per frame (tracking keeps it fast). Image mode
        searches harder: a downscaled full pass, a padded retry when nothing was
        found, a brightened retry on dark images, and overlapping tiles at
        several sizes when faces are small or absent; every candidate is then
        confirmed by a re-run on a crop around it, which also re-centres its
        mesh, and duplicates are dropped.

        Frame flags: ``"max_faces_reached"`` (more faces than
        ``options.max_faces``; in video mode, exactly that many), ``"low_light"``,
        ``"extreme_pose"``, ``"downscaled"`` and ``"faces_may_be_too_small"``
        (a large image where nothing was found, or the tiled search hit its
        budget).

        Raises:
            ImageTooSmallError: the frame's shorter side is under
                ``options.min_image_side`` pixels.
            ValueError: ``frame.image`` is not HxWx3 uint8.
        """
        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                "frame.image: expected HxWx3 uint8, got shape "
                f"{image.shape} dtype {image.dtype}"
            )
        height, width = image.shape[:2]
        if min(height, width) < self.options.min_image_side:
            raise ImageTooSmallError(
                f"image is {width}x{height} pixels; faces need at least "
                f"{self.options.min_image_side} pixels on the shorter side"
            )

        flags: list[str] = []
        dark = is_low_light(image)
        if dark:
            flags.append(FLAG_LOW_LIGHT)
        if self.mode == "video":
            stamp = self._next_timestamp(frame.timestamp_ms)
            result = self._run(image, stamp)
            whole = _Window(0, 0, 1.0, width, height)
            faces = self._faces_from_result(result, whole, width, height)
            if len(faces) >= self.options.max_faces:
                flags.append(FLAG_CAPPED)
        else:
            faces = self._detect_still(image, flags, dark=dark)
            if len(faces) > self.options.max_faces:
                flags.append(FLAG_CAPPED)
                faces = _largest(faces, self.options.max_faces)

        faces = [self._with_apparent_yaw(face, width, height) for face in faces]
        if any(self._is_extreme(face.pose) for face in faces):
            flags.append(FLAG_EXTREME_POSE)
        return Detection(
            frame.index, frame.timestamp_ms, width, height, tuple(faces), tuple(flags)
        )

    def _with_apparent_yaw(
        self, face: FaceLandmarks, width: int, height: int
    ) -> FaceLandmarks:
        """Raise the yaw of a face whose mesh is foreshortened beyond the pose limit.

        The fitted transform under-reports turns when a face is strongly turned
        or the picture is squeezed (it reports ~5 degrees on a face squeezed to
        55% width). The cheek-width to upper-face-height ratio tells the turn
        without that bias; when it implies more than ``extreme_yaw_deg`` and
        more than the fitted yaw, the yaw is replaced so the face is flagged.

        Limitation: faces within the limit keep the fitted yaw unchanged; a
        naturally very narrow face may read as turned by up to ~30 degrees.
        """
        apparent = apparent_yaw_deg(face.points, width, height)
        limit = self.options.extreme_yaw_deg
        if apparent <= limit or apparent <= abs(face.pose.yaw_deg):
            return face
        yaw = math.copysign(apparent, face.pose.yaw_deg or 1.0)
        pose = HeadPose(yaw, face.pose.pitch_deg, face.pose.roll_deg)
        return dataclasses.replace(face, pose=pose)

    def _is_extreme(self, pose: HeadPose) -> bool:
        return (
            abs(pose.yaw_deg) > self.options.extreme_yaw_deg
            or abs(pose.pitch_deg) > self.options.extreme_pitch_deg
        )

    # -- still images -----------------------------------------------------------

    def _detect_still(
        self, image: npt.NDArray[np.uint8], flags: list[str], *, dark: bool
    ) -> list[FaceLandmarks]:
        height, width = image.shape[:2]
        long_side = max(height, width)
        work, scale = _downscale(image, self.options.max_image_side)
        if scale > 1.0:
            flags.append(FLAG_DOWNSCALED)
        whole = _Window(0, 0, scale, work.shape[1], work.shape[0])
        candidates = self._faces_from_result(self._run(work, 0), whole, width, height)
        trusted = (
            [f for f in candidates if _box_side(f) >= TRUSTED_FACE_SHARE * long_side]
            if self.options.trust_large_faces
            else []
        )

        if not candidates and dark:
            brighter = brighten(work)
            found = self._run(brighter, 0)
            candidates = self._faces_from_result(found, whole, width, height)
            if not candidates and self.options.pad_retry:
                candidates = self._detect_padded(brighter, scale, width, height)
        if not candidates and self.options.pad_retry:
            candidates = self._detect_padded(work, scale, width, height)

        smallest = min((f.box.width for f in candidates), default=0)
        wants_tiles = not candidates or smallest < SMALL_FACE_SHARE * long_side
        # Tiles and confirmation both look at the full-size image: brighten it once.
        full = brighten(image) if dark else image
        if self.options.tile_retry and wants_tiles and long_side >= 2 * MIN_TILE_SIDE:
            tiled, complete = self._detect_tiled(full)
            candidates.extend(tiled)
            if not complete:
                flags.append(FLAG_SMALL_FACES)

        faces = self._confirm(full, candidates, trusted)
        if not faces and scale > 1.0 and FLAG_SMALL_FACES not in flags:
            flags.append(FLAG_SMALL_FACES)
        return faces

    def _detect_padded(
        self, work: npt.NDArray[np.uint8], scale: float, width: int, height: int
    ) -> list[FaceLandmarks]:
        padded, pad_x, pad_y = pad_image(work, PAD_SHARE)
        window = _Window(
            -pad_x * scale, -pad_y * scale, scale, padded.shape[1], padded.shape[0]
        )
        return self._faces_from_result(self._run(padded, 0), window, width, height)

    def _detect_tiled(
        self, image: npt.NDArray[np.uint8]
    ) -> tuple[list[FaceLandmarks], bool]:
        """Run the detector on overlapping tiles, coarse to fine.

        Returns the faces found and whether every planned tile size ran within
        :data:`MAX_TILE_RUNS` (False means the finest tiles were skipped).
        """
        height, width = image.shape[:2]
        faces: list[FaceLandmarks] = []
        runs = 0
        for side in tile_sides(width, height):
            origins = tile_origins(width, height, side)
            if runs + len(origins) > MAX_TILE_RUNS:
                logger.debug("Tile budget reached before %d px tiles", side)
                return faces, False
            for x0, y0 in origins:
                crop = image[y0 : y0 + side, x0 : x0 + side]
                if _is_flat(crop):
                    continue
                small, scale = _downscale(crop, TILE_INPUT_SIDE)
                window = _Window(x0, y0, scale, small.shape[1], small.shape[0])
                result = self._run(np.ascontiguousarray(small), 0)
                faces.extend(self._faces_from_result(result, window, width, height))
                runs += 1
        logger.debug("Tiled search: %d runs, %d candidates", runs, len(faces))
        return faces, True

    def _verify(
        self, image: npt.NDArray[np.uint8], face: FaceLandmarks
    ) -> tuple[FaceLandmarks | None, float]:
        """Re-run on a crop centred on ``face``; return the best match and its IoU."""
        height, width = image.shape[:2]
        box = face.box
        side = max(16, round(_box_side(face) * VERIFY_CONTEXT))
        x0 = round(box.x + box.width / 2 - side / 2)
        y0 = round(box.y + box.height / 2 - side / 2)
        crop = _crop_padded(image, x0, y0, side)
        interpolation = cv2.INTER_AREA if side > VERIFY_SIDE else cv2.INTER_LINEAR
        small = np.asarray(
            cv2.resize(crop, (VERIFY_SIDE, VERIFY_SIDE), interpolation=interpolation),
            dtype=np.uint8,
        )
        window = _Window(x0, y0, side / VERIFY_SIDE, VERIFY_SIDE, VERIFY_SIDE)
        found = self._faces_from_result(self._run(small, 0), window, width, height)
        if not found:
            return None, 0.0
        best = max(found, key=lambda other: box_iou(other.box, box))
        return best, box_iou(best.box, box)

    def _confirm(
        self,
        image: npt.NDArray[np.uint8],
        candidates: list[FaceLandmarks],
        trusted: list[FaceLandmarks],
    ) -> list[FaceLandmarks]:
        """Keep candidates that re-detect on their own crop; drop duplicates.

        Each kept face is the re-run's version (its mesh centred on the face),
        except ``trusted`` candidates, which are kept as found without a re-run
        (counted as full agreement). Of overlapping faces, the one whose re-run
        agreed best is kept.
        """
        trusted_ids = {id(face) for face in trusted}
        confirmed: list[tuple[float, FaceLandmarks]] = []
        for candidate in _unique(candidates):
            if id(candidate) in trusted_ids:
                confirmed.append((1.0, candidate))
                continue
            refined, agreement = self._verify(image, candidate)
            if refined is None or agreement < VERIFY_IOU:
                logger.debug(
                    "Dropped unconfirmed face at %s (IoU %.2f)",
                    candidate.box.to_list(),
                    agreement,
                )
                continue
            confirmed.append((agreement, refined))

        kept: list[FaceLandmarks] = []
        for _, face in sorted(confirmed, key=lambda item: -item[0]):
            if not any(_same_face(face.box, other.box) for other in kept):
                kept.append(face)
        return sorted(kept, key=lambda f: (f.box.x, f.box.y))


def apparent_yaw_deg(points: npt.NDArray[np.float32], width: int, height: int) -> float:
    """Return the head turn in degrees implied by how narrow the face looks.

    ``points`` is the (478, 3) mesh normalised to a ``width`` x ``height``
    image. A turn of ``t`` shrinks the cheek-to-cheek span by about cos(t)
    while the forehead-to-nose height stays; 0 for a face as wide as a
    frontal one (see FRONTAL_WIDTH_TO_HEIGHT) or wider.
    """
    scale = np.array([width, height], dtype=np.float64)
    xy = points[:, :2].astype(np.float64) * scale
    span = float(np.linalg.norm(xy[234] - xy[454]))
    rise = float(np.linalg.norm(xy[10] - xy[2]))
    if rise <= 0:
        return 0.0
    ratio = min(1.0, span / rise / FRONTAL_WIDTH_TO_HEIGHT)
    return math.degrees(math.acos(ratio))


def is_low_light(image: npt.NDArray[np.uint8]) -> bool:
    """True when the mean luma of ``image`` (HxWx3 RGB) is under LOW_LIGHT_MEAN_LUMA."""
    sample = _sample(image).astype(np.float32)
    luma = sample @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return float(luma.mean()) < LOW_LIGHT_MEAN_LUMA


def brighten(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Return ``image`` with a linear gain that lifts its 99th percentile to ~220.

    The gain is between 1 and :data:`MAX_BRIGHTEN_GAIN`; colours keep their ratios.
    """
    top = float(np.percentile(_sample(image), 99))
    gain = min(MAX_BRIGHTEN_GAIN, BRIGHTEN_TARGET / max(top, 1.0))
    if gain <= 1.0:
        return image
    lifted = cv2.convertScaleAbs(image, alpha=gain)
    return np.asarray(lifted, dtype=np.uint8)


def tile_sides(width: int, height: int) -> list[int]:
    """Tile sides for the tiled search: half the long side, halved down to 320 px."""
    sides: list[int] = []
    side = max(width, height) / 2
    while side >= MIN_TILE_SIDE:
        sides.append(min(int(side), width, height))
        side /= 2
    return sorted(set(sides), reverse=True) or [min(width, height)]


def tile_origins(width: int, height: int, side: int) -> list[tuple[int, int]]:
    """Top-left corners of ``side`` x ``side`` tiles covering the image with overlap."""
    step = max(1, int(side * (1 - TILE_OVERLAP)))

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        values = list(range(0, length - side + 1, step))
        if values[-1] + side < length:
            values.append(length - side)
        return values

    return [(x, y) for y in starts(height) for x in starts(width)]


def _downscale(
    image: npt.NDArray[np.uint8], max_side: int
) -> tuple[npt.NDArray[np.uint8], float]:
    """Return ``image`` shrunk to a long side of at most ``max_side``, and the scale."""
    height, width = image.shape[:2]
    long_side = max(height, width)
    if long_side <= max_side:
        return image, 1.0
    scale = long_side / max_side
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.uint8), scale


def pad_image(
    image: npt.NDArray[np.uint8], share: float = PAD_SHARE
) -> tuple[npt.NDArray[np.uint8], int, int]:
    """Return ``image`` with a border of its mean colour, and the (x, y) border.

    Each side grows by ``share`` of the image's width (left/right) or height
    (top/bottom).
    """
    height, width = image.shape[:2]
    pad_x, pad_y = int(width * share), int(height * share)
    # OpenCV's mean and border fill: about 20x faster than NumPy's float mean
    # over every pixel of a photo.
    fill = [int(value) for value in cv2.mean(image)[: image.shape[2]]]
    padded = cv2.copyMakeBorder(
        image, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=fill
    )
    return np.asarray(padded, dtype=np.uint8), pad_x, pad_y


def _crop_padded(
    image: npt.NDArray[np.uint8], x0: int, y0: int, side: int
) -> npt.NDArray[np.uint8]:
    """Return the ``side`` x ``side`` square at (x0, y0); outside the image is grey."""
    height, width = image.shape[:2]
    out = np.full((side, side, 3), 128, dtype=np.uint8)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(width, x0 + side), min(height, y0 + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def _is_flat(crop: npt.NDArray[np.uint8]) -> bool:
    """True when ``crop`` has too little texture to hold a face (see FLAT_TILE_STD)."""
    return float(_sample(crop)[:, :, 1].std()) < FLAT_TILE_STD


def _sample(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Return a strided view of ``image`` with about 64 pixels along its long side.

    Enough to estimate brightness and texture statistics to well under one grey
    level, at a fraction of the cost of a full-size pass on every frame.
    """
    step = max(1, max(image.shape[:2]) // 64)
    return image[::step, ::step]


def _same_face(a: BoundingBox, b: BoundingBox) -> bool:
    """True when two boxes overlap enough, or one's centre lies in the other."""
    if box_iou(a, b) > DUPLICATE_IOU:
        return True
    for inner, outer in ((a, b), (b, a)):
        cx, cy = inner.x + inner.width / 2, inner.y + inner.height / 2
        inside_x = outer.x <= cx <= outer.x + outer.width
        if inside_x and outer.y <= cy <= outer.y + outer.height:
            return True
    return False


def _box_side(face: FaceLandmarks) -> int:
    """Return the longer side of ``face``'s box in pixels."""
    return max(face.box.width, face.box.height)


def _unique(faces: list[FaceLandmarks]) -> list[FaceLandmarks]:
    """Drop near-identical candidates (IoU > 0.8) before the costlier verification."""
    kept: list[FaceLandmarks] = []
    for face in faces:
        if not any(box_iou(face.box, other.box) > 0.8 for other in kept):
            kept.append(face)
    return kept


def _largest(faces: list[FaceLandmarks], count: int) -> list[FaceLandmarks]:
    """Keep the ``count`` largest faces, in their original order."""
    ranked = sorted(faces, key=lambda f: -(f.box.width * f.box.height))[:count]
    return [face for face in faces if any(face is kept for kept in ranked)]
