"""AIRCTRL: real-time facial emotion recognition, explainable and calibrated."""

from __future__ import annotations

from airctrl.errors import AirctrlError
from airctrl.types import (
    EMOTIONS,
    BoundingBox,
    Detection,
    EmotionEstimate,
    FaceLandmarks,
    Frame,
    HeadPose,
)

__all__ = [
    "EMOTIONS",
    "AirctrlError",
    "BoundingBox",
    "Detection",
    "EmotionEstimate",
    "FaceLandmarks",
    "Frame",
    "HeadPose",
    "__version__",
]

__version__ = "0.1.0"
