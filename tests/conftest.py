"""Shared fixtures: the real model, sample media from the cache, and settings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from airctrl.assets import resolve_model, resolve_sample
from airctrl.config import Settings


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The verified Face Landmarker model (fetched by setup)."""
    return resolve_model()


@pytest.fixture(scope="session")
def sample_path() -> Callable[[str], Path]:
    """Return the cached path of a sample media file by name."""
    return resolve_sample


@pytest.fixture(scope="session")
def happy_face_rgb(sample_path: Callable[[str], Path]) -> npt.NDArray[np.uint8]:
    """single_face.jpg (one smiling man) as HxWx3 uint8 RGB."""
    with Image.open(sample_path("single_face.jpg")) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


@pytest.fixture()
def settings() -> Settings:
    """Built-in default settings (no config file)."""
    return Settings()


@pytest.fixture()
def root_logging_restored() -> Iterator[None]:
    """Put back the root logger's handlers and level after an in-process CLI run.

    The CLI configures logging on a stream that capsys closes after the test;
    left in place, that handler would spoil every later test's logging.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
