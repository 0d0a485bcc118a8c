"""Features for the emotion model: action-unit-like scores, geometry and head pose.

MediaPipe's 52 blendshapes follow FACS action units closely (``browDownLeft``
is AU4 on one side, ``mouthSmileLeft`` AU12, ``cheekSquintLeft`` AU6 ...). This
module folds the left/right pairs into one symmetric score per action, names
each one in plain words for the evidence, and adds a few geometry measures and
the head pose. Everything downstream sees only :class:`Features`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from airctrl.landmarks import box_iou, pad_image
from airctrl.types import BoundingBox, FaceLandmarks, Frame

if TYPE_CHECKING:
    from airctrl.landmarks import LandmarkDetector

__all__ = [
    "ACTION_UNITS",
    "Features",
    "action_units",
    "average_views",
    "extract_features",
    "plain_name",
    "with_padded_view",
]

logger = logging.getLogger(__name__)

#: Symmetric action-unit-like features: name -> (plain words, blendshapes averaged).
#: The FACS unit each one follows is in the comment; the blendshape-to-AU pairing
#: is MediaPipe's ARKit-style naming read against the FACS manual.
ACTION_UNITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "inner_brow_raise": ("inner brow raise", ("browInnerUp",)),  # AU1
    "outer_brow_raise": (
        "outer brow raise",
        ("browOuterUpLeft", "browOuterUpRight"),
    ),  # AU2
    "brow_lower": ("brow lower", ("browDownLeft", "browDownRight")),  # AU4
    "upper_lid_raise": ("upper lid raise", ("eyeWideLeft", "eyeWideRight")),  # AU5
    "cheek_raise": ("cheek raise", ("cheekSquintLeft", "cheekSquintRight")),  # AU6
    "lid_tighten": ("lid tighten", ("eyeSquintLeft", "eyeSquintRight")),  # AU7
    "nose_wrinkle": ("nose wrinkle", ("noseSneerLeft", "noseSneerRight")),  # AU9
    "upper_lip_raise": (
        "upper lip raise",
        ("mouthUpperUpLeft", "mouthUpperUpRight"),
    ),  # AU10
    "lip_corner_pull": (
        "lip-corner pull",
        ("mouthSmileLeft", "mouthSmileRight"),
    ),  # AU12
    "dimple": ("dimple", ("mouthDimpleLeft", "mouthDimpleRight")),  # AU14
    "lip_corner_depress": (
        "lip-corner depress",
        ("mouthFrownLeft", "mouthFrownRight"),
    ),  # AU15
    "lower_lip_depress": (
        "lower lip depress",
        ("mouthLowerDownLeft", "mouthLowerDownRight"),
    ),  # AU16
    "chin_raise": ("chin raise", ("mouthShrugLower",)),  # AU17
    "lip_pucker": ("lip pucker", ("mouthPucker",)),  # AU18
    "lip_stretch": ("lip stretch", ("mouthStretchLeft", "mouthStretchRight")),  # AU20
    "lip_funnel": ("lip funnel", ("mouthFunnel",)),  # AU22
    "lip_press": ("lip press", ("mouthPressLeft", "mouthPressRight")),  # AU24
    "lip_roll": ("lip roll", ("mouthRollLower", "mouthRollUpper")),  # AU28
    "jaw_drop": ("jaw drop", ("jawOpen",)),  # AU26/27
    "mouth_close": ("mouth close", ("mouthClose",)),
    "upper_lip_shrug": ("upper lip shrug", ("mouthShrugUpper",)),
    "eye_close": ("eye close", ("eyeBlinkLeft", "eyeBlinkRight")),  # AU43/45
}

#: Geometry features: name -> plain words. Each is a ratio of two lengths of the
#: upright face, so it does not depend on face size: mouth width is divided by
#: the distance between the outer eye corners, and the distances between points
#: above one another (lids, brows, lips) by the height of the nose base below
#: the eyes. A turned head or a squeezed image shortens horizontal lengths, so
#: it moves these mostly vertical measures only a little.
GEOMETRY: dict[str, str] = {
    "geo_mouth_open": "mouth opening",
    "geo_mouth_width": "mouth width",
    "geo_corner_lift": "lip-corner height",
    "geo_brow_height": "brow height",
    "geo_eye_open": "eye opening",
    "geo_brow_tilt": "inner-brow lift over outer",
    "geo_lip_nose": "upper-lip to nose distance",
}

POSE: dict[str, str] = {
    "head_yaw_deg": "head yaw",
    "head_pitch_deg": "head pitch",
    "head_roll_deg": "head roll",
}

# Landmark indices in MediaPipe's 478-point face mesh (canonical topology).
_EYE_OUTER = (33, 263)
_LIP_INNER = (13, 14)
_MOUTH_CORNERS = (61, 291)
_BROW_MID = (105, 334)
_UPPER_LID = (159, 386)
_LOWER_LID = (145, 374)
# Brow heads and tails above the inner and outer eye corners: AU1 without AU2
# (sadness, fear) lifts the heads more than the tails.
_BROW_INNER = (55, 285)
_EYE_INNER = (133, 362)
_BROW_OUTER = (46, 276)
# Top of the upper lip and the base of the nose: AU9/AU10 (disgust) shorten the
# gap. MediaPipe's own nose-sneer and cheek-squint blendshapes stay near 0 on
# most photos, so these distances stand in for them.
_UPPER_LIP_TOP = 0
_NOSE_BASE = 2


@dataclass(frozen=True)
class Features:
    """Named scalar features of one face.

    ``values`` maps feature names to floats: the raw blendshape names (0..1),
    the symmetric action-unit names of :data:`ACTION_UNITS` (0..1), the
    ``geo_*`` geometry ratios and ``head_*_deg`` pose angles in degrees.
    Missing names read as 0.
    """

    values: Mapping[str, float]

    def get(self, name: str) -> float:
        """Return feature ``name``, 0.0 when absent."""
        return float(self.values.get(name, 0.0))


def plain_name(name: str) -> str:
    """Return the plain-words name of feature ``name`` (the name itself if unknown)."""
    if name in ACTION_UNITS:
        return ACTION_UNITS[name][0]
    return GEOMETRY.get(name) or POSE.get(name) or name


def action_units(blendshapes: Mapping[str, float]) -> dict[str, float]:
    """Return the symmetric action-unit scores (0..1) from MediaPipe blendshapes."""
    units: dict[str, float] = {}
    for name, (_, sources) in ACTION_UNITS.items():
        scores = [float(blendshapes.get(source, 0.0)) for source in sources]
        units[name] = min(1.0, max(0.0, sum(scores) / len(scores)))
    return units


def _upright_points(
    points: npt.NDArray[np.float32], aspect: float
) -> npt.NDArray[np.float64]:
    """Return (N, 2) points in a square, roll-corrected frame (x to the right eye)."""
    xy = np.asarray(points[:, :2], dtype=np.float64).copy()
    xy[:, 0] *= aspect
    left, right = xy[_EYE_OUTER[0]], xy[_EYE_OUTER[1]]
    angle = math.atan2(right[1] - left[1], right[0] - left[0])
    cos, sin = math.cos(-angle), math.sin(-angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    upright: npt.NDArray[np.float64] = (xy - xy.mean(axis=0)) @ rotation.T
    return upright


def geometry(points: npt.NDArray[np.float32], aspect: float = 1.0) -> dict[str, float]:
    """Return the ``geo_*`` ratios for one face.

    Args:
        points: (478, 3) landmarks, x and y normalised to the image.
        aspect: image width divided by height, so x and y share one scale.

    Returns:
        Mouth width divided by the outer-eye-corner distance, the other
        (vertical) measures by the height of the nose base below the line
        between the outer eye corners; every value is 0.0 when the points are
        degenerate (eye corners or nose base on top of each other).
    """
    names = list(GEOMETRY)
    if points.shape[0] < 468:
        return {name: 0.0 for name in names}
    xy = _upright_points(points, aspect)
    eye_distance = float(np.linalg.norm(xy[_EYE_OUTER[1]] - xy[_EYE_OUTER[0]]))
    eye_line_y = (xy[_EYE_OUTER[0], 1] + xy[_EYE_OUTER[1], 1]) / 2
    nose_height = float(xy[_NOSE_BASE, 1] - eye_line_y)
    if eye_distance < 1e-6 or nose_height < 1e-6:
        return {name: 0.0 for name in names}

    def per_nose_height(a: int, b: int) -> float:
        return float(np.linalg.norm(xy[a] - xy[b])) / nose_height

    mouth_mid_y = (xy[_LIP_INNER[0], 1] + xy[_LIP_INNER[1], 1]) / 2
    corners_y = (xy[_MOUTH_CORNERS[0], 1] + xy[_MOUTH_CORNERS[1], 1]) / 2
    brow = sum(per_nose_height(b, e) for b, e in zip(_BROW_MID, _UPPER_LID)) / 2
    eye = sum(per_nose_height(u, d) for u, d in zip(_UPPER_LID, _LOWER_LID)) / 2
    inner = sum(per_nose_height(b, e) for b, e in zip(_BROW_INNER, _EYE_INNER)) / 2
    outer = sum(per_nose_height(b, e) for b, e in zip(_BROW_OUTER, _EYE_OUTER)) / 2
    mouth_width = float(np.linalg.norm(xy[_MOUTH_CORNERS[1]] - xy[_MOUTH_CORNERS[0]]))
    return {
        "geo_mouth_open": per_nose_height(*_LIP_INNER),
        "geo_mouth_width": mouth_width / eye_distance,
        # Image y grows downwards: corners above the lip centre give a positive lift.
        "geo_corner_lift": float(mouth_mid_y - corners_y) / nose_height,
        "geo_brow_height": brow,
        "geo_eye_open": eye,
        "geo_brow_tilt": inner - outer,
        "geo_lip_nose": per_nose_height(_UPPER_LIP_TOP, _NOSE_BASE),
    }


def _aspect_of(face: FaceLandmarks) -> float:
    """Estimate image width / height from the pixel box and the normalised points."""
    xs, ys = face.points[:, 0], face.points[:, 1]
    span_x = float(min(xs.max(), 1.0) - max(xs.min(), 0.0))
    span_y = float(min(ys.max(), 1.0) - max(ys.min(), 0.0))
    if span_x <= 1e-6 or span_y <= 1e-6 or face.box.width <= 0 or face.box.height <= 0:
        return 1.0
    image_width = face.box.width / span_x
    image_height = face.box.height / span_y
    return image_width / image_height


def extract_features(face: FaceLandmarks) -> Features:
    """Return every feature of ``face``: blendshapes, action units, geometry, pose.

    Limitation: geometry ratios are measured in the image plane after undoing
    roll only; strong yaw or pitch foreshortens them. The emotion model leans on
    the blendshapes, which MediaPipe estimates pose-invariantly.
    """
    values: dict[str, float] = {k: float(v) for k, v in face.blendshapes.items()}
    values.update(action_units(face.blendshapes))
    values.update(geometry(face.points, _aspect_of(face)))
    values["head_yaw_deg"] = float(face.pose.yaw_deg)
    values["head_pitch_deg"] = float(face.pose.pitch_deg)
    values["head_roll_deg"] = float(face.pose.roll_deg)
    logger.debug("Extracted %d features", len(values))
    return Features(values)


# -- a second, padded view of a still ------------------------------------------

#: Share of each side added as a border for the second view of a still photo.
VIEW_PAD_SHARE = 0.25
#: A face in the padded view is the same face as an original one when their
#: boxes (in the original image's pixels) overlap at least this much (IoU).
VIEW_MATCH_IOU = 0.35


def average_views(
    faces: Sequence[FaceLandmarks],
    padded_faces: Sequence[FaceLandmarks],
    pad_x: int,
    pad_y: int,
) -> tuple[FaceLandmarks, ...]:
    """Return ``faces`` with blendshapes averaged over their padded-view match.

    ``padded_faces`` were found in the image padded by ``pad_x``/``pad_y``
    pixels (see :func:`airctrl.landmarks.pad_image`); each original face takes
    the padded face whose box, moved back by the border, overlaps it most (at
    least :data:`VIEW_MATCH_IOU`) and averages the two blendshape scores.
    Points, pose and box stay those of the original view; a face without a
    match is returned unchanged.
    """
    result = []
    for face in faces:
        best, best_iou = None, VIEW_MATCH_IOU
        for other in padded_faces:
            moved = BoundingBox(
                other.box.x - pad_x,
                other.box.y - pad_y,
                other.box.width,
                other.box.height,
            )
            overlap = box_iou(face.box, moved)
            if overlap >= best_iou:
                best, best_iou = other, overlap
        if best is None:
            result.append(face)
            continue
        shapes = {
            name: (float(value) + float(best.blendshapes.get(name, value))) / 2
            for name, value in face.blendshapes.items()
        }
        result.append(replace(face, blendshapes=shapes))
    return tuple(result)


def with_padded_view(
    detector: LandmarkDetector, frame: Frame, faces: Sequence[FaceLandmarks]
) -> tuple[FaceLandmarks, ...]:
    """Return ``faces`` of a still with blendshapes averaged over a padded view.

    Runs ``detector`` (image mode) once more on the frame padded by
    :data:`VIEW_PAD_SHARE` and averages each face's blendshapes with its match
    (:func:`average_views`). The face mesh places the face differently in the
    two views, so their blendshape errors partly cancel: on the dev photos this
    raised subject-disjoint cross-validated macro-F1 by about 0.01 (0.458 to
    0.468, mean of three fold seeds, measured with the model before its
    bends; sad gained most). The emotion parameters are fitted on faces
    averaged this way.

    Limitation: it doubles the landmarker time of a still, so only the
    thorough still search uses it. Video frames (where the tracker's smoothing
    plays the same role) and stills searched ``fast`` use one view, so their
    blendshapes are a little noisier than the ones the model was fitted on.
    """
    if not faces:
        return tuple(faces)
    padded, pad_x, pad_y = pad_image(frame.image, VIEW_PAD_SHARE)
    view = detector.detect(
        Frame(padded, frame.timestamp_ms, frame.index, frame.source_id)
    )
    return average_views(faces, view.faces, pad_x, pad_y)
