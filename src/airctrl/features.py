"""Features for the emotion model: blendshapes, geometry and head pose of one face."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from airctrl.types import FaceLandmarks

__all__ = ["Features", "extract_features"]


@dataclass(frozen=True)
class Features:
    """Named scalar features of one face (blendshape scores are 0..1)."""

    values: Mapping[str, float]


def extract_features(face: FaceLandmarks) -> Features:
    """Return the features of ``face``: its blendshapes plus head pose in degrees."""
    values = dict(face.blendshapes)
    values["head_yaw_deg"] = face.pose.yaw_deg
    values["head_pitch_deg"] = face.pose.pitch_deg
    values["head_roll_deg"] = face.pose.roll_deg
    return Features(values)
