"""Labelled photo sets: manifest reading and cached face extraction.

A manifest is a CSV with at least ``path`` (relative to the manifest's folder)
and ``label``; ``dataset``, ``subject``, ``sex``, ``age_group`` and
``ethnicity`` are optional grouping columns. Faces found in each photo are
cached as JSON keyed by the file's sha256, the landmarker model's sha256, the
detector's source and the detection options, so fitting
(:mod:`airctrl.calibration`) and evaluation rerun without the landmarker.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from airctrl.assets import default_cache_dir, resolve_model, sha256_of_file
from airctrl.config import Settings
from airctrl.errors import AirctrlError
from airctrl.features import with_padded_view
from airctrl.types import EMOTIONS, BoundingBox, FaceLandmarks, Frame, HeadPose

__all__ = [
    "CONTEMPT_POLICY",
    "FaceCache",
    "ManifestError",
    "ManifestRow",
    "Sample",
    "extract_samples",
    "face_from_record",
    "face_to_record",
    "load_rgb",
    "read_manifest",
]

logger = logging.getLogger(__name__)

#: Contempt is not one of the product's seven classes. Rows labelled contempt are
#: dropped from fitting and from the seven-class metrics (and counted as such in
#: reports): mapping it onto disgust would teach the disgust class a one-sided
#: smirk, which is not what disgust looks like.
CONTEMPT_POLICY = "drop"
_DROPPED_LABELS = frozenset({"contempt"})
_LABEL_ALIASES = {
    "surprise": "surprised",
    "anger": "angry",
    "happiness": "happy",
    "sadness": "sad",
    "fearful": "fear",
    "disgusted": "disgust",
}
#: Bump when the cached record layout or the extraction changes, so stale
#: entries are not read. 2: blendshapes averaged with a padded view.
CACHE_VERSION = 2


class ManifestError(AirctrlError):
    """The manifest CSV is missing, unreadable or lacks required columns."""

    http_status = 400


@dataclass(frozen=True)
class ManifestRow:
    """One labelled photo: its resolved path, label and grouping columns."""

    path: Path
    relative_path: str
    label: str
    groups: Mapping[str, str] = field(default_factory=dict)

    def group(self, column: str) -> str:
        """Return the value of grouping ``column`` ('unknown' when absent or empty)."""
        return self.groups.get(column) or "unknown"


@dataclass(frozen=True)
class Sample:
    """A manifest row with the face found in it (None when no face was found)."""

    row: ManifestRow
    face: FaceLandmarks | None
    error: str | None = None


def read_manifest(path: Path) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Read a manifest CSV and return (rows in the seven classes, dropped rows).

    Labels are lower-cased and common synonyms mapped ("surprise" ->
    "surprised"). Contempt rows are returned in the second list (see
    :data:`CONTEMPT_POLICY`).

    Raises:
        ManifestError: the file is missing, empty, lacks ``path``/``label``
            columns or holds a label outside the known set.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        missing = {"path", "label"} - columns
        if missing:
            raise ManifestError(
                f"manifest {path} lacks column(s) {', '.join(sorted(missing))}; "
                "expected at least path,label"
            )
        raw_rows = list(reader)
    if not raw_rows:
        raise ManifestError(f"manifest {path} has no rows")

    kept: list[ManifestRow] = []
    dropped: list[ManifestRow] = []
    base = path.parent
    for number, raw in enumerate(raw_rows, start=2):
        label = (raw.get("label") or "").strip().lower()
        label = _LABEL_ALIASES.get(label, label)
        relative = (raw.get("path") or "").strip()
        if not relative:
            raise ManifestError(f"manifest {path} line {number}: empty path")
        if label not in EMOTIONS and label not in _DROPPED_LABELS:
            raise ManifestError(
                f"manifest {path} line {number}: label {label!r} is not one of "
                f"{', '.join(EMOTIONS)} (or contempt)"
            )
        groups = {
            k: (v or "").strip()
            for k, v in raw.items()
            if k not in ("path", "label") and k
        }
        row = ManifestRow(base / relative, relative, label, groups)
        (dropped if label in _DROPPED_LABELS else kept).append(row)
    return kept, dropped


def load_rgb(path: Path) -> np.ndarray:
    """Return the photo at ``path`` upright (EXIF applied) as HxWx3 uint8 RGB.

    Raises:
        ValueError: the file is missing or not a readable image.
    """
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            if upright.mode in ("I;16", "I;16B", "I"):
                upright = upright.point(lambda v: v / 256).convert("L")
            return np.asarray(upright.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise ValueError(f"image {path} not found") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image {path} could not be decoded: {exc}") from exc


def face_to_record(face: FaceLandmarks) -> dict[str, object]:
    """Return a JSON-ready record of ``face`` (points rounded to 1e-5)."""
    return {
        "points": np.round(face.points.astype(np.float64), 5).tolist(),
        "blendshapes": dict(face.blendshapes),
        "pose": [face.pose.yaw_deg, face.pose.pitch_deg, face.pose.roll_deg],
        "box": face.box.to_list(),
        "is_partial": face.is_partial,
    }


def face_from_record(record: Mapping[str, object]) -> FaceLandmarks:
    """Rebuild a :class:`FaceLandmarks` from :func:`face_to_record` output."""
    points = np.asarray(record["points"], dtype=np.float32)
    pose = [float(v) for v in record["pose"]]  # type: ignore[attr-defined]
    box = [int(v) for v in record["box"]]  # type: ignore[attr-defined]
    shapes = record["blendshapes"]
    items = shapes.items()  # type: ignore[attr-defined]
    blendshapes = {str(k): float(v) for k, v in items}
    return FaceLandmarks(
        points,
        blendshapes,
        HeadPose(*pose),
        BoundingBox(*box),
        bool(record["is_partial"]),
    )


class FaceCache:
    """On-disk cache of the largest face found in a photo.

    Entries live in ``<cache_dir>/features/<key>/<file sha256>.json`` where
    ``key`` hashes the model sha256, the detector's source and the detection
    options.
    """

    def __init__(self, root: Path, key: str) -> None:
        self.folder = Path(root) / "features" / key
        self.folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_settings(cls, settings: Settings, model_path: Path) -> FaceCache:
        """Return the cache for this model file, detection settings and detector code.

        The key also hashes the source of :mod:`airctrl.landmarks`: a change to
        the face search (crops, retries, verification) changes the faces found,
        and entries from the old code once silently stood in for the new ones.
        """
        import airctrl.landmarks

        model_sha = sha256_of_file(model_path)
        code_sha = sha256_of_file(Path(airctrl.landmarks.__file__))
        options = json.dumps(settings.detection.model_dump(mode="json"), sort_keys=True)
        key = hashlib.sha256(
            f"{CACHE_VERSION}|{model_sha}|{code_sha}|{options}".encode()
        ).hexdigest()[:20]
        root = settings.assets.cache_dir or default_cache_dir()
        return cls(root, key)

    def _entry(self, file_sha: str) -> Path:
        return self.folder / f"{file_sha}.json"

    def get(self, file_sha: str) -> dict[str, object] | None:
        """Return the cached record for a file, or None when not cached."""
        entry = self._entry(file_sha)
        if not entry.is_file():
            return None
        try:
            data: dict[str, object] = json.loads(entry.read_text(encoding="utf-8"))
            return data
        except (OSError, json.JSONDecodeError):
            logger.warning("Ignoring unreadable cache entry %s", entry.name)
            return None

    def put(self, file_sha: str, record: Mapping[str, object]) -> None:
        """Store a record atomically (write then rename)."""
        entry = self._entry(file_sha)
        temporary = entry.with_suffix(".tmp")
        temporary.write_text(json.dumps(record), encoding="utf-8")
        temporary.replace(entry)


def _largest(faces: Iterable[FaceLandmarks]) -> FaceLandmarks | None:
    return max(faces, key=lambda f: f.box.width * f.box.height, default=None)


def extract_samples(
    rows: list[ManifestRow],
    settings: Settings,
    *,
    model_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """Find the largest face in every row's photo, reading and filling the cache.

    The landmarker runs in image mode with its padded retry, so tight crops cut
    at chin and forehead are found, and with ``detection.still_search:
    thorough`` the face's blendshapes are averaged with a second, padded view
    exactly as the pipeline does for stills
    (:func:`airctrl.features.with_padded_view`). A photo that cannot be read
    becomes a sample with ``face=None`` and ``error`` set; it is never dropped.
    """
    from airctrl.landmarks import LandmarkDetector
    from airctrl.pipeline import has_padded_view, landmarker_options

    model_path = model_path or resolve_model(
        settings.assets.cache_dir, try_official=settings.assets.try_official_download
    )
    cache = FaceCache.for_settings(settings, model_path)
    detector: LandmarkDetector | None = None
    samples: list[Sample] = []
    hits = 0
    try:
        for index, row in enumerate(rows):
            if progress is not None:
                progress(index, len(rows))
            if not row.path.is_file():
                samples.append(Sample(row, None, "file not found"))
                continue
            file_sha = sha256_of_file(row.path)
            record = cache.get(file_sha)
            if record is None:
                if detector is None:
                    detector = LandmarkDetector(
                        model_path, mode="image", options=landmarker_options(settings)
                    )
                try:
                    frame = Frame(load_rgb(row.path), 0, index)
                    face = _largest(detector.detect(frame).faces)
                    if face is not None and has_padded_view(settings):
                        # The same two-view averaging as the pipeline's image mode.
                        face = with_padded_view(detector, frame, (face,))[0]
                except (ValueError, AirctrlError) as exc:
                    samples.append(Sample(row, None, str(exc)))
                    continue
                record = {"face": face_to_record(face) if face is not None else None}
                cache.put(file_sha, record)
            else:
                hits += 1
            face_record = record.get("face")
            face = (
                face_from_record(face_record) if isinstance(face_record, dict) else None
            )
            samples.append(
                Sample(row, face, None if face is not None else "no face found")
            )
    finally:
        if detector is not None:
            detector.close()
    logger.info("Faces for %d photos (%d from cache)", len(rows), hits)
    return samples
