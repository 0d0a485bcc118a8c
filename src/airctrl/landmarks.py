"""Face landmarks with the MediaPipe Tasks Face Landmarker.

The only module that imports MediaPipe. It turns MediaPipe results into our
own frozen values once: 478 points, 52 blendshapes, head pose and a pixel box
per face, and an empty tuple when a frame holds no face.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from airctrl.errors import AssetError, ImageTooSmallError
from airctrl.types import BoundingBox, Detection, FaceLandmarks, Frame, HeadPose

__all__ = ["LandmarkerOptions", "LandmarkDetector", "pose_from_matrix", "box_from_points"]

logger = logging.getLogger(__name__)

#: A face box whose width is under this share of the image's long side marks the
#: image as a group or wide shot worth a tiled second pass (BlazeFace sees the
#: whole frame at 128 px, so faces under ~15% of it are often missed).
SMALL_FACE_SHARE = 0.15
#: Overlap between neighbouring tiles, as a share of the tile side, so a face cut
#: by one tile border lies whole inside the next tile.
TILE_OVERLAP = 0.3
#: Two detections overlapping more than this (intersection over union) are one face.
DUPLICATE_IOU = 0.35
#: Share of each side added as border on the padded retry (tight crops cut at chin
#: and forehead are found once the detector sees some context around them).
PAD_SHARE = 0.25


@dataclass(frozen=True)
class LandmarkerOptions:
    """Options shared by the IMAGE and VIDEO landmarkers."""

    max_faces: int = 5
    min_detection_confidence: float = 0.3
    min_presence_confidence: float = 0.3
    min_tracking_confidence: float = 0.3
    max_image_side: int = 1920
    min_image_side: int = 32
    pad_retry: bool = True
    tile_retry: bool = True


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
    is_partial = x0 < -margin or y0 < -margin or x1 > width + margin or y1 > height + margin

    cx0 = int(max(0, math.floor(x0)))
    cy0 = int(max(0, math.floor(y0)))
    cx1 = int(min(width, math.ceil(x1)))
    cy1 = int(min(height, math.ceil(y1)))
    return BoundingBox(cx0, cy0, max(0, cx1 - cx0), max(0, cy1 - cy0)), is_partial


def _iou(a: BoundingBox, b: BoundingBox) -> float:
    ix = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


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
        self._landmarker = self._create()
        self._last_timestamp_ms = -1

    def _create(self) -> Any:
        import mediapipe as mp  # noqa: F401  (imported here so only this module needs it)
        from mediapipe.tasks import python as mp_tasks
        from mediapipe.tasks.python import vision

        if not self._model_path.is_file():
            raise AssetError(f"model file {self._model_path} is missing; run 'airctrl assets fetch'")
        running_mode = (
            vision.RunningMode.VIDEO if self.mode == "video" else vision.RunningMode.IMAGE
        )
        opts = vision.FaceLandmarkerOptions(
            base_options=mp_tasks.BaseOptions(model_asset_path=str(self._model_path)),
            running_mode=running_mode,
            num_faces=self.options.max_faces,
            min_face_detection_confidence=self.options.min_detection_confidence,
            min_face_presence_confidence=self.options.min_presence_confidence,
            min_tracking_confidence=self.options.min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        logger.debug("Creating %s-mode face landmarker", self.mode)
        with _native_stderr_silenced():
            return vision.FaceLandmarker.create_from_options(opts)

    def __enter__(self) -> LandmarkDetector:
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

    def _run(self, image: npt.NDArray[np.uint8], timestamp_ms: int) -> Any:
        import mediapipe as mp

        if self._landmarker is None:
            raise RuntimeError("LandmarkDetector is closed")
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        if self.mode == "video":
            return self._landmarker.detect_for_video(mp_image, timestamp_ms)
        return self._landmarker.detect(mp_image)

    def _next_timestamp(self, timestamp_ms: int) -> int:
        stamp = max(int(timestamp_ms), self._last_timestamp_ms + 1)
        if stamp != timestamp_ms:
            logger.debug("Timestamp %d adjusted to %d to stay increasing", timestamp_ms, stamp)
        self._last_timestamp_ms = stamp
        return stamp

    @staticmethod
    def _faces_from_result(
        result: Any, window: _Window, full_width: int, full_height: int
    ) -> list[FaceLandmarks]:
        faces: list[FaceLandmarks] = []
        for index, landmark_list in enumerate(result.face_landmarks):
            raw = np.array([(p.x, p.y, p.z) for p in landmark_list], dtype=np.float32)
            points = raw.copy()
            points[:, 0] = (raw[:, 0] * window.width * window.scale + window.x0) / full_width
            points[:, 1] = (raw[:, 1] * window.height * window.scale + window.y0) / full_height
            points[:, 2] = raw[:, 2] * window.width * window.scale / full_width

            blendshapes: dict[str, float] = {}
            if result.face_blendshapes and index < len(result.face_blendshapes):
                for category in result.face_blendshapes[index]:
                    if category.category_name != "_neutral":
                        blendshapes[category.category_name] = float(category.score)

            if result.facial_transformation_matrixes and index < len(
                result.facial_transformation_matrixes
            ):
                pose = pose_from_matrix(result.facial_transformation_matrixes[index])
            else:
                pose = HeadPose(0.0, 0.0, 0.0)

            box, is_partial = box_from_points(points, full_width, full_height)
            if box.width < 2 or box.height < 2:
                continue
            faces.append(FaceLandmarks(points, blendshapes, pose, box, is_partial))
        return faces

    # -- public API ------------------------------------------------------------

    def detect(self, frame: Frame) -> Detection:
        """Find faces in ``frame``.

        Image mode scales very large frames down for the first pass, then retries
        with a padded border when nothing was found and with overlapping tiles when
        the frame looks like a wide or group shot. Video mode runs one pass.

        Raises:
            ImageTooSmallError: the frame's shorter side is under
                ``options.min_image_side`` pixels.
            ValueError: ``frame.image`` is not HxWx3 uint8.
        """
        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"frame.image: expected HxWx3 uint8, got shape {image.shape} dtype {image.dtype}"
            )
        height, width = image.shape[:2]
        if min(height, width) < self.options.min_image_side:
            raise ImageTooSmallError(
                f"image is {width}x{height} pixels; faces need at least "
                f"{self.options.min_image_side} pixels on the shorter side"
            )

        flags: list[str] = []
        if self.mode == "video":
            stamp = self._next_timestamp(frame.timestamp_ms)
            result = self._run(image, stamp)
            faces = self._faces_from_result(result, _Window(0, 0, 1.0, width, height), width, height)
        else:
            faces = self._detect_still(image, flags)

        faces = faces[: self.options.max_faces]
        if len(faces) == self.options.max_faces and self.mode == "image":
            flags.append("max_faces_reached")
        return Detection(frame.index, frame.timestamp_ms, width, height, tuple(faces), tuple(flags))

    def _detect_still(self, image: npt.NDArray[np.uint8], flags: list[str]) -> list[FaceLandmarks]:
        height, width = image.shape[:2]
        long_side = max(height, width)
        scale = 1.0
        work = image
        if long_side > self.options.max_image_side:
            scale = long_side / self.options.max_image_side
            work = cv2.resize(
                image,
                (round(width / scale), round(height / scale)),
                interpolation=cv2.INTER_AREA,
            )
            flags.append("downscaled")
        faces = self._faces_from_result(
            self._run(work, 0), _Window(0, 0, scale, work.shape[1], work.shape[0]), width, height
        )

        if not faces and self.options.pad_retry:
            faces = self._detect_padded(work, scale, width, height)

        smallest = min((f.box.width for f in faces), default=0)
        wants_tiles = not faces or smallest < SMALL_FACE_SHARE * long_side
        if self.options.tile_retry and wants_tiles and long_side >= 480:
            tiled = self._detect_tiled(image)
            faces = self._merge(faces, tiled)
        return faces

    def _detect_padded(
        self, work: npt.NDArray[np.uint8], scale: float, width: int, height: int
    ) -> list[FaceLandmarks]:
        h, w = work.shape[:2]
        pad_y, pad_x = int(h * PAD_SHARE), int(w * PAD_SHARE)
        fill = [int(v) for v in work.reshape(-1, 3).mean(axis=0)]
        padded = cv2.copyMakeBorder(work, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_CONSTANT, value=fill)
        window = _Window(-pad_x * scale, -pad_y * scale, scale, padded.shape[1], padded.shape[0])
        return self._faces_from_result(self._run(padded, 0), window, width, height)

    def _detect_tiled(self, image: npt.NDArray[np.uint8]) -> list[FaceLandmarks]:
        height, width = image.shape[:2]
        tile = max(320, min(1024, max(height, width) // 2))
        step = max(1, int(tile * (1 - TILE_OVERLAP)))
        faces: list[FaceLandmarks] = []
        ys = list(range(0, max(1, height - tile) + 1, step)) or [0]
        xs = list(range(0, max(1, width - tile) + 1, step)) or [0]
        if ys[-1] + tile < height:
            ys.append(height - tile)
        if xs[-1] + tile < width:
            xs.append(width - tile)
        for y0 in ys:
            for x0 in xs:
                crop = image[max(0, y0) : y0 + tile, max(0, x0) : x0 + tile]
                window = _Window(max(0, x0), max(0, y0), 1.0, crop.shape[1], crop.shape[0])
                found = self._faces_from_result(self._run(crop, 0), window, width, height)
                faces = self._merge(faces, found)
        return faces

    @staticmethod
    def _merge(first: list[FaceLandmarks], second: list[FaceLandmarks]) -> list[FaceLandmarks]:
        merged = list(first)
        for face in second:
            clash = [i for i, kept in enumerate(merged) if _iou(kept.box, face.box) > DUPLICATE_IOU]
            if not clash:
                merged.append(face)
                continue
            i = clash[0]
            kept = merged[i]
            # Keep the larger, less cut view of the same face.
            if (kept.box.width * kept.box.height) < (face.box.width * face.box.height) * 0.9:
                merged[i] = face
        return merged
