"""Response bodies of the HTTP API, as pydantic models (they drive /openapi.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from airctrl.pipeline import FaceResult, FrameResult
from airctrl.storage import SubjectHistory
from airctrl.types import EMOTIONS

__all__ = [
    "BatchItem",
    "BatchResponse",
    "DetectResponse",
    "ErrorBody",
    "Evidence",
    "Face",
    "HealthResponse",
    "Pose",
    "ReadyResponse",
    "SessionStats",
    "SubjectDeleted",
    "SubjectHistoryResponse",
    "face_to_schema",
    "frame_to_schema",
    "history_to_schema",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Model):
    """Every 4xx/5xx answer: one short reason, no traceback, no path."""

    detail: str = Field(examples=["empty file"])


class Evidence(_Model):
    """One feature that drove the decision, in plain words, with its value."""

    feature: str
    value: float


class Pose(_Model):
    """Head rotation in degrees."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float


class Face(_Model):
    """One face: where it is and what it shows.

    ``box`` is ``[x, y, width, height]`` in pixels of the upright image.
    ``id`` is the face's index in the image (uploads) or its track id (stream).
    """

    id: int
    box: list[int] = Field(min_length=4, max_length=4)
    emotion: str = Field(examples=list(EMOTIONS))
    confidence: float = Field(ge=0, le=1)
    probabilities: dict[str, float]
    evidence: list[Evidence]
    quality_flags: list[str]
    pose: Pose
    partial: bool
    liveness: str | None = None
    calibrating: bool = False


class DetectResponse(_Model):
    """All faces found in one image, plus image-level warnings."""

    width: int
    height: int
    face_count: int
    faces: list[Face]
    warnings: list[str]
    source_format: str | None = None
    latency_ms: float


class BatchItem(_Model):
    """One image of a batch: its result or its error."""

    index: int
    filename: str | None = None
    status: int
    result: DetectResponse | None = None
    error: str | None = None


class BatchResponse(_Model):
    """Per-item results of ``POST /v1/detect/batch``, in upload order."""

    items: list[BatchItem]


class SessionStats(_Model):
    """Aggregated stats of one session (times are Unix seconds)."""

    session_id: str
    frames: int
    counts: dict[str, int]
    mean_confidence: dict[str, float]
    first_seen: float
    last_seen: float


class SubjectHistoryResponse(_Model):
    """A subject's stored history: aggregates only, never frames."""

    subject_id: str
    consent_at: float
    frames: int
    counts: dict[str, int]
    sessions: list[SessionStats]


class SubjectDeleted(_Model):
    """Answer to an erasure request."""

    subject_id: str
    deleted: bool


class HealthResponse(_Model):
    """Liveness answer."""

    status: Literal["ok"]


class ReadyResponse(_Model):
    """Readiness answer: model loaded and history store reachable."""

    status: Literal["ready", "not ready"]
    model_loaded: bool
    store_reachable: bool


def face_to_schema(face: FaceResult) -> Face:
    """Convert a pipeline face into its API shape (values rounded to 4 places)."""
    pose = face.pose
    return Face(
        id=face.face_id,
        box=face.box.to_list(),
        emotion=face.emotion.label,
        confidence=round(float(face.emotion.confidence), 4),
        probabilities={
            k: round(float(v), 4) for k, v in face.emotion.probabilities.items()
        },
        evidence=[
            Evidence(feature=n, value=round(float(v), 4))
            for n, v in face.emotion.evidence
        ],
        quality_flags=list(face.emotion.flags)
        + (
            ["partial_face"]
            if face.is_partial and "partial_face" not in face.emotion.flags
            else []
        ),
        pose=Pose(
            yaw_deg=round(pose.yaw_deg, 1),
            pitch_deg=round(pose.pitch_deg, 1),
            roll_deg=round(pose.roll_deg, 1),
        ),
        partial=face.is_partial,
        liveness=face.liveness,
        calibrating=face.calibrating,
    )


#: Added when a large image had to be scaled down and no face was found.
SMALL_FACES_WARNING = (
    "no face found; faces smaller than about 2% of a large image may be missed"
)


def frame_to_schema(
    result: FrameResult, *, source_format: str | None
) -> DetectResponse:
    """Convert a pipeline frame result into the ``/v1/detect`` answer."""
    warnings = list(dict.fromkeys(result.flags))
    if not result.faces and "downscaled" in warnings:
        warnings.append(SMALL_FACES_WARNING)
    return DetectResponse(
        width=result.width,
        height=result.height,
        face_count=len(result.faces),
        faces=[face_to_schema(face) for face in result.faces],
        warnings=warnings,
        source_format=source_format,
        latency_ms=round(result.latency_ms, 2),
    )


def history_to_schema(history: SubjectHistory) -> SubjectHistoryResponse:
    """Convert stored history into its API shape (fields are read by name)."""
    return SubjectHistoryResponse.model_validate(history, from_attributes=True)
