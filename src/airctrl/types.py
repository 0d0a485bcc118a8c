"""Small frozen values the pipeline stages hand each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "EMOTIONS",
    "BoundingBox",
    "Detection",
    "EmotionEstimate",
    "FaceLandmarks",
    "Frame",
    "HeadPose",
]

#: The classes every prediction carries a probability for, in a fixed order.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "surprised",
    "fear",
    "disgust",
)


@dataclass(frozen=True)
class BoundingBox:
    """Axis-aligned box in pixels of the upright image, clamped to the image."""

    x: int
    y: int
    width: int
    height: int

    def to_list(self) -> list[int]:
        """Return ``[x, y, width, height]``."""
        return [self.x, self.y, self.width, self.height]


@dataclass(frozen=True)
class HeadPose:
    """Head rotation in degrees: yaw (left/right), pitch (up/down), roll (tilt)."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float


@dataclass(frozen=True)
class Frame:
    """One upright RGB image with its time.

    ``image`` is HxWx3 uint8 RGB. ``timestamp_ms`` is strictly increasing within
    one source. ``warnings`` carries decode notes (e.g. "first frame of an
    animation") that travel with the result.
    """

    image: npt.NDArray[np.uint8]
    timestamp_ms: int
    index: int
    source_id: str = "0"
    warnings: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.image.shape[0])


@dataclass(frozen=True)
class FaceLandmarks:
    """What the landmarker saw of one face.

    ``points`` is (478, 3) float32: x and y normalised to the image width and
    height (0..1, may fall slightly outside for faces cut by the border), z in
    roughly the same scale as x. ``blendshapes`` maps MediaPipe's 52 blendshape
    names (ARKit's 51 plus ``_neutral``) to scores in 0..1; empty when the model
    gave none. ``is_partial`` is true when the face runs off the image edge.
    """

    points: npt.NDArray[np.float32]
    blendshapes: Mapping[str, float]
    pose: HeadPose
    box: BoundingBox
    is_partial: bool = False


@dataclass(frozen=True)
class Detection:
    """All faces found in one frame; an empty ``faces`` means no face."""

    frame_index: int
    timestamp_ms: int
    image_width: int
    image_height: int
    faces: tuple[FaceLandmarks, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def has_faces(self) -> bool:
        """True when at least one face was found."""
        return len(self.faces) > 0


@dataclass(frozen=True)
class EmotionEstimate:
    """An emotion decision for one face.

    ``probabilities`` holds every class in :data:`EMOTIONS` and sums to 1.
    ``confidence`` is the calibrated probability of ``label``. ``evidence`` lists
    (plain-words feature name, value) pairs that drove the decision, strongest
    first. ``flags`` carries quality notes ("partial_face", "extreme_pose",
    "low_light").
    """

    label: str
    probabilities: Mapping[str, float]
    confidence: float
    evidence: tuple[tuple[str, float], ...] = ()
    flags: tuple[str, ...] = field(default_factory=tuple)
