"""The per-frame pipeline: landmarks -> features -> emotion -> tracking and smoothing.

One :class:`Pipeline` owns a landmarker and the per-face state. The CLI, batch
analysis and the API all drive this object, so a frame gets the same emotion
whichever door it came through.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from airctrl.assets import resolve_model
from airctrl.baseline import NeutralBaseline
from airctrl.config import Settings
from airctrl.emotions import EmotionClassifier
from airctrl.features import Features, extract_features, with_padded_view
from airctrl.landmarks import LandmarkDetector, LandmarkerOptions
from airctrl.liveness import LivenessMonitor
from airctrl.smoothing import EmotionSmoother
from airctrl.tracking import FaceTracker
from airctrl.types import (
    EMOTIONS,
    BoundingBox,
    EmotionEstimate,
    FaceLandmarks,
    Frame,
    HeadPose,
)

__all__ = [
    "QUALITY_SHRINK",
    "FaceResult",
    "FrameResult",
    "Pipeline",
    "gate_quality",
    "has_padded_view",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceResult:
    """Everything reported for one face in one frame.

    ``face_id`` is the track id in video mode and the face's index in the frame
    in image mode. ``emotion`` is smoothed over the track in video mode;
    ``raw_emotion`` is this frame alone.
    """

    face_id: int
    box: BoundingBox
    emotion: EmotionEstimate
    raw_emotion: EmotionEstimate
    pose: HeadPose
    is_partial: bool
    liveness: str | None = None
    blinks: int = 0
    calibrating: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (probabilities rounded to 4 places)."""
        return {
            "face_id": self.face_id,
            "box": self.box.to_list(),
            "emotion": self.emotion.label,
            "confidence": round(self.emotion.confidence, 4),
            "probabilities": {
                k: round(v, 4) for k, v in self.emotion.probabilities.items()
            },
            "evidence": [
                {"feature": name, "value": round(value, 4)}
                for name, value in self.emotion.evidence
            ],
            "flags": list(self.emotion.flags),
            "pose": {
                "yaw_deg": round(self.pose.yaw_deg, 1),
                "pitch_deg": round(self.pose.pitch_deg, 1),
                "roll_deg": round(self.pose.roll_deg, 1),
            },
            "partial": self.is_partial,
            "liveness": self.liveness,
            "blinks": self.blinks,
            "calibrating": self.calibrating,
        }


@dataclass(frozen=True)
class FrameResult:
    """All faces of one frame, with timing and frame-level flags."""

    frame_index: int
    timestamp_ms: int
    width: int
    height: int
    faces: tuple[FaceResult, ...] = ()
    flags: tuple[str, ...] = ()
    latency_ms: float = 0.0
    source_id: str = "0"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "source": self.source_id,
            "frame": self.frame_index,
            "timestamp_ms": self.timestamp_ms,
            "width": self.width,
            "height": self.height,
            "faces": [face.to_dict() for face in self.faces],
            "flags": list(self.flags),
        }


@dataclass
class _TrackState:
    smoother: EmotionSmoother
    liveness: LivenessMonitor
    baseline: NeutralBaseline


#: How far an estimate is pulled towards "no idea" (uniform over the classes)
#: per quality problem. Blendshapes of a head turned past the pose limit or of
#: a face cut by the border are unreliable (the dev set has no such faces to
#: calibrate on), so a confident call there would be overconfident. With 0.6
#: for the pose, even a certain estimate ends at 0.4 + 0.6 / 7 = 0.486, under
#: the default 0.5 low-confidence threshold: a squeezed or turned face whose
#: blendshapes read as a wide-mouthed surprise is never stated confidently.
QUALITY_SHRINK: dict[str, float] = {"extreme_pose": 0.6, "partial_face": 0.3}


def gate_quality(
    estimate: EmotionEstimate, *, low_confidence: float
) -> EmotionEstimate:
    """Lower the confidence of estimates flagged for pose or cropping problems.

    Probabilities are mixed with the uniform distribution by
    :data:`QUALITY_SHRINK` per flag (compounding), so the ranking is kept but
    the stated confidence drops; ``low_confidence`` is added when it ends under
    the threshold. Estimates without such flags are returned unchanged.
    """
    keep = 1.0
    for flag in estimate.flags:
        keep *= 1.0 - QUALITY_SHRINK.get(flag, 0.0)
    if keep == 1.0:
        return estimate

    uniform = 1.0 / len(EMOTIONS)
    probabilities = {
        name: keep * p + (1.0 - keep) * uniform
        for name, p in estimate.probabilities.items()
    }
    confidence = probabilities[estimate.label]
    flags = estimate.flags
    if confidence < low_confidence and "low_confidence" not in flags:
        flags = (*flags, "low_confidence")
    return EmotionEstimate(
        estimate.label, probabilities, confidence, estimate.evidence, flags
    )


def landmarker_options(settings: Settings) -> LandmarkerOptions:
    """Build landmarker options from validated settings."""
    d = settings.detection
    return LandmarkerOptions(
        max_faces=d.max_faces,
        min_detection_confidence=d.min_detection_confidence,
        min_presence_confidence=d.min_presence_confidence,
        min_tracking_confidence=d.min_tracking_confidence,
        max_image_side=d.max_image_side,
        min_image_side=d.min_image_side,
        pad_retry=d.pad_retry,
        tile_retry=d.tile_retry,
        trust_large_faces=d.still_search == "fast",
        extreme_yaw_deg=settings.emotion.extreme_yaw_deg,
        extreme_pitch_deg=settings.emotion.extreme_pitch_deg,
    )


def has_padded_view(settings: Settings) -> bool:
    """True when stills average a second, padded view (see ``with_padded_view``)."""
    return settings.detection.still_search == "thorough"


class Pipeline:
    """Run every stage on frames of one source.

    ``mode="image"`` analyses each frame on its own (photos, API uploads): no
    tracking, no smoothing. ``mode="video"`` keeps per-face tracks, smoothing,
    baselines and liveness between calls; call :meth:`reset` between videos.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        mode: Literal["image", "video"] = "video",
        model_path: Path | None = None,
        classifier: EmotionClassifier | None = None,
        source_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.mode = mode
        self.source_id = source_id
        if model_path is None:
            model_path = resolve_model(
                settings.assets.cache_dir,
                try_official=settings.assets.try_official_download,
            )
        # The classifier first: if its parameters fail to load, no landmarker is
        # left open behind the exception.
        self._classifier = classifier or EmotionClassifier.from_settings(
            settings.emotion
        )
        self._detector = LandmarkDetector(
            model_path, mode=mode, options=landmarker_options(settings)
        )
        self._tracker = self._new_tracker()
        self._tracks: dict[int, _TrackState] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the landmarker."""
        self._detector.close()

    def reset(self) -> None:
        """Start a new stream: new landmarker timeline, no tracks carried over."""
        self._detector.reset()
        self._tracker = self._new_tracker()
        self._tracks.clear()

    def _new_tracker(self) -> FaceTracker:
        return FaceTracker(
            max_distance=self.settings.smoothing.max_track_distance,
            ttl_frames=self.settings.smoothing.track_ttl_frames,
        )

    def _new_track(self) -> _TrackState:
        s = self.settings
        return _TrackState(
            smoother=EmotionSmoother(
                alpha=s.smoothing.ema_alpha,
                dwell_frames=s.smoothing.dwell_frames,
                cooldown_frames=s.smoothing.cooldown_frames,
            ),
            liveness=LivenessMonitor(
                close_threshold=s.liveness.blink_close_threshold,
                open_threshold=s.liveness.blink_open_threshold,
                window_seconds=s.liveness.window_seconds,
                min_blinks=s.liveness.min_blinks,
                min_head_motion_deg=s.liveness.min_head_motion_deg,
            ),
            baseline=NeutralBaseline(
                duration_ms=int(s.emotion.baseline_seconds * 1000)
            ),
        )

    def process(self, frame: Frame) -> FrameResult:
        """Analyse one frame and return every face with its emotion.

        Raises:
            ValueError: the frame image is not HxWx3 uint8.
            ImageTooSmallError: the frame is too small to hold a face.
        """
        started = time.perf_counter()
        detection = self._detector.detect(frame)

        if self.mode == "image":
            faces = self._still_faces(frame, detection.faces)
        else:
            faces = self._tracked_faces(frame, detection.faces)

        latency_ms = (time.perf_counter() - started) * 1000
        logger.debug(
            "Frame %d: %d faces in %.1f ms", frame.index, len(faces), latency_ms
        )
        return FrameResult(
            frame.index,
            frame.timestamp_ms,
            frame.width,
            frame.height,
            faces,
            (*detection.flags, *frame.warnings),
            latency_ms,
            self.source_id or frame.source_id,
        )

    def _classify(
        self, face: FaceLandmarks, features: Features, baseline: Features | None = None
    ) -> EmotionEstimate:
        estimate = self._classifier.classify(features, baseline=baseline, face=face)
        return gate_quality(
            estimate, low_confidence=self.settings.emotion.low_confidence
        )

    def _still_faces(
        self, frame: Frame, found: tuple[FaceLandmarks, ...]
    ) -> tuple[FaceResult, ...]:
        """Faces of a photo, numbered by position; no tracking or smoothing."""
        if has_padded_view(self.settings):
            found = with_padded_view(self._detector, frame, found)

        faces = []
        for index, face in enumerate(found):
            estimate = self._classify(face, extract_features(face))
            faces.append(
                FaceResult(
                    index, face.box, estimate, estimate, face.pose, face.is_partial
                )
            )
        return tuple(faces)

    def _tracked_faces(
        self, frame: Frame, found: tuple[FaceLandmarks, ...]
    ) -> tuple[FaceResult, ...]:
        """Faces of a video frame with track ids, smoothing, baseline and liveness."""
        assignment = self._tracker.update([face.box for face in found])
        for ended in assignment.ended:
            self._tracks.pop(ended, None)

        faces = []
        for track_id, face in zip(assignment.track_ids, found):
            state = self._tracks.get(track_id)
            if state is None:
                state = self._tracks[track_id] = self._new_track()
            features = extract_features(face)
            state.baseline.update(features, frame.timestamp_ms)
            raw = self._classify(face, features, state.baseline.reference())
            smoothed = state.smoother.update(raw)
            live = state.liveness.update(face, frame.timestamp_ms)
            faces.append(
                FaceResult(
                    track_id,
                    face.box,
                    smoothed,
                    raw,
                    face.pose,
                    face.is_partial,
                    live.verdict,
                    live.blinks,
                    state.baseline.is_calibrating,
                )
            )
        return tuple(faces)
