"""Tests for airctrl.config: errors name the key; config.yaml covers every setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from airctrl.config import Settings, load_settings
from airctrl.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("detection:\n  max_face: 3\n", "unknown key 'detection.max_face'"),
        ("colour: red\n", "unknown key 'colour'"),
        ("detection:\n  max_faces: 0\n", "'detection.max_faces'"),
        ("smoothing:\n  ema_alpha: fast\n", "'smoothing.ema_alpha'"),
        ("hud:\n  window: sometimes\n", "'hud.window'"),
        (
            "sources:\n  - source: '0'\n    read_timeout_seconds: -1\n",
            "'sources.0.read_timeout_seconds'",
        ),
        ("- just\n- a list\n", "expected a mapping"),
        ("detection: [\n", "not valid YAML at line"),
    ],
    ids=[
        "typo-in-section",
        "unknown-section",
        "out-of-range",
        "wrong-type",
        "bad-choice",
        "list-item",
        "not-mapping",
        "bad-yaml",
    ],
)
def test_load_settings_names_the_bad_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ={})

    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_load_settings_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "storage:\n  backend: sqlite\n")

    settings = load_settings(
        path, environ={"AIRCTRL_STORAGE_BACKEND": "redis", "AIRCTRL_LOG_LEVEL": "debug"}
    )

    assert settings.storage.backend == "redis"
    assert settings.logging.level == "DEBUG"


def test_environment_override_is_validated_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="storage.backend"):
        load_settings(
            write(tmp_path, "{}\n"), environ={"AIRCTRL_STORAGE_BACKEND": "mongo"}
        )


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        annotation: Any = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if nested:
            keys |= _leaf_keys(nested[0], f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _yaml_keys(data: Any, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(data, list):
        data = data[0] if data else {}
    for name, value in data.items():
        if (
            isinstance(value, (dict, list))
            and value
            and name not in ("overrides", "api_keys")
        ):
            keys |= _yaml_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


@pytest.mark.parametrize("filename", ["config.yaml", "config.prod.yaml"])
def test_shipped_config_files_validate(filename: str) -> None:
    settings = load_settings(REPO_ROOT / filename, environ={})

    assert isinstance(settings, Settings)


def test_config_yaml_lists_every_setting() -> None:
    data = yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))

    missing = _leaf_keys(Settings) - _yaml_keys(data)

    assert not missing, f"config.yaml lacks: {sorted(missing)}"


def test_config_yaml_holds_the_built_in_defaults() -> None:
    assert load_settings(REPO_ROOT / "config.yaml", environ={}) == Settings()
