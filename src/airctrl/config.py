"""One validated settings object, built from config.yaml plus environment overrides.

Every tunable lives here. Unknown keys and bad values stop start-up with one
line naming the key and what was expected. Stages receive plain values from the
settings object as arguments; nothing deeper reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from airctrl.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DetectionSettings",
    "EmotionSettings",
    "HudSettings",
    "LivenessSettings",
    "LoggingSettings",
    "MetricsSettings",
    "OutputSettings",
    "ServerSettings",
    "Settings",
    "SmoothingSettings",
    "SourceSettings",
    "StillSearch",
    "StorageSettings",
    "load_settings",
    "with_overrides",
]

#: How hard stills are searched (``DetectionSettings.still_search``).
StillSearch = Literal["fast", "thorough"]

#: config.yaml at the repository root, used when no --config is given.
DEFAULT_CONFIG_PATH = Path("config.yaml")

#: Environment variables read once at start-up, mapped to dotted settings keys.
ENV_OVERRIDES: dict[str, str] = {
    "AIRCTRL_CACHE_DIR": "assets.cache_dir",
    "AIRCTRL_LOG_LEVEL": "logging.level",
    "AIRCTRL_STORAGE_BACKEND": "storage.backend",
    "AIRCTRL_REDIS_URL": "storage.redis_url",
    "AIRCTRL_SQLITE_PATH": "storage.sqlite_path",
    "AIRCTRL_API_KEYS_FILE": "server.api_keys_file",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetSettings(_Section):
    """Where the model and sample media are cached."""

    cache_dir: Path | None = None
    try_official_download: bool = True


class SourceSettings(_Section):
    """One frame source: webcam index, video file, RTSP/HTTP URL, image or folder."""

    source: str = "0"
    name: str | None = None
    width: int | None = Field(default=None, ge=16)
    height: int | None = Field(default=None, ge=16)
    read_timeout_seconds: float = Field(default=5.0, gt=0)
    open_timeout_seconds: float = Field(default=10.0, gt=0)
    reconnect_initial_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    reconnect_jitter: float = Field(default=0.2, ge=0, le=1)
    max_reconnect_attempts: int | None = Field(default=None, ge=0)
    stale_frame_limit: int = Field(default=30, ge=2)
    loop: bool = False


class DetectionSettings(_Section):
    """Face Landmarker options."""

    max_faces: int = Field(default=5, ge=1, le=64)
    min_detection_confidence: float = Field(default=0.3, ge=0, le=1)
    min_presence_confidence: float = Field(default=0.3, ge=0, le=1)
    min_tracking_confidence: float = Field(default=0.3, ge=0, le=1)
    max_image_side: int = Field(default=1920, ge=64)
    min_image_side: int = Field(default=32, ge=8)
    pad_retry: bool = True
    tile_retry: bool = True
    #: How hard stills (photos, uploads) are searched. "fast": one whole-image
    #: landmarker pass; a face at least landmarks.TRUSTED_FACE_SHARE of the
    #: image's long side is kept as found, smaller faces and retries are
    #: confirmed by a re-run on their own crop. "thorough": every face is
    #: confirmed and re-centred on its crop, and the blendshapes are averaged
    #: with a padded second view: four passes for a portrait instead of one,
    #: and a little more accurate (README, "Emotion model"). Video frames
    #: always take one tracked pass.
    still_search: StillSearch = "fast"


class EmotionSettings(_Section):
    """Emotion model: parameter file override and quality gates."""

    params_path: Path | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    extreme_yaw_deg: float = Field(default=35.0, gt=0, le=90)
    extreme_pitch_deg: float = Field(default=30.0, gt=0, le=90)
    low_confidence: float = Field(default=0.5, ge=0, le=1)
    baseline_seconds: float = Field(default=3.0, ge=0)


class SmoothingSettings(_Section):
    """Per-track smoothing of emotion probabilities."""

    ema_alpha: float = Field(default=0.35, gt=0, le=1)
    dwell_frames: int = Field(default=3, ge=1)
    cooldown_frames: int = Field(default=5, ge=0)
    max_track_distance: float = Field(default=0.5, gt=0)
    track_ttl_frames: int = Field(default=15, ge=1)


class LivenessSettings(_Section):
    """Blink counting and head-motion thresholds for the liveness verdict."""

    # Rise of the both-eyes blink score above the track's open-eye level.
    blink_close_threshold: float = Field(default=0.2, gt=0, lt=1)
    blink_open_threshold: float = Field(default=0.1, ge=0, lt=1)
    window_seconds: float = Field(default=10.0, gt=0)
    min_blinks: int = Field(default=1, ge=0)
    min_head_motion_deg: float = Field(default=1.0, ge=0)


class HudSettings(_Section):
    """On-screen display."""

    enabled: bool = True
    window: Literal["auto", "always", "never"] = "auto"
    light_mode_below_fps: float = Field(default=12.0, ge=0)
    light_mode_recover_fps: float = Field(default=18.0, ge=0)
    font_scale: float = Field(default=0.6, gt=0)


class OutputSettings(_Section):
    """Where headless runs write their results."""

    directory: Path = Path("out")
    annotated_video: bool = True
    events_jsonl: bool = True
    events_csv: bool = False
    video_codec: str = "mp4v"
    store_frames: bool = False
    encrypt: bool = False
    encryption_key_file: Path | None = None
    skip_frames_when_behind: bool = True
    max_lag_frames: int = Field(default=5, ge=1)


class ServerSettings(_Section):
    """HTTP service."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    api_keys: list[str] = Field(default_factory=list)
    api_keys_file: Path | None = None
    require_auth: bool = True
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    stream_queue_size: int = Field(default=2, ge=1, le=64)
    #: Image-mode pipelines per worker for /v1/detect (each ~40 MB; one request
    #: uses one at a time because MediaPipe graphs are not thread-safe).
    detect_pipelines: int = Field(default=1, ge=1, le=16)
    max_batch_items: int = Field(default=16, ge=1, le=256)
    #: Open WebSocket sessions per worker; each holds its own video pipeline.
    max_stream_sessions: int = Field(default=8, ge=1, le=256)
    #: Plain-text key the web page at / is given without asking (kiosk use).
    kiosk_key_file: Path | None = None
    #: Longest time a client may take to send one request body; a stalled
    #: upload gets 408 instead of holding a connection forever.
    upload_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)


class StorageSettings(_Section):
    """Per-subject aggregated history."""

    backend: Literal["sqlite", "redis", "none"] = "sqlite"
    sqlite_path: Path = Path("airctrl-history.sqlite3")
    redis_url: str = "redis://127.0.0.1:6379/0"


class MetricsSettings(_Section):
    """Prometheus metrics."""

    enabled: bool = False
    host: str = "127.0.0.1"  # 0.0.0.0 inside a container so Prometheus can scrape
    port: int = Field(default=8000, ge=1, le=65535)
    multiprocess_dir: Path | None = None


class LoggingSettings(_Section):
    """Log format, level, rotation and encryption."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["human", "json"] = "human"
    file: Path | None = None
    # TimedRotatingFileHandler 'when' values; rotation times are UTC.
    rotate_when: Literal[
        "S", "M", "H", "D", "midnight", "W0", "W1", "W2", "W3", "W4", "W5", "W6"
    ] = "midnight"
    backup_count: int = Field(default=14, ge=0)  # rotated files kept; 0 keeps all
    compress: bool = True
    encrypt: bool = False
    encryption_key_file: Path | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class Settings(_Section):
    """Every AIRCTRL setting, validated."""

    assets: AssetSettings = AssetSettings()
    sources: list[SourceSettings] = Field(default_factory=lambda: [SourceSettings()])
    detection: DetectionSettings = DetectionSettings()
    emotion: EmotionSettings = EmotionSettings()
    smoothing: SmoothingSettings = SmoothingSettings()
    liveness: LivenessSettings = LivenessSettings()
    hud: HudSettings = HudSettings()
    output: OutputSettings = OutputSettings()
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parents)}: expected a mapping")
        node = child
    node[leaf] = value


def _format_validation_error(exc: ValidationError, origin: str) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{key}'"
    return f"{origin}: '{key}': {first['msg']} (got {first.get('input')!r})"


def load_settings(
    path: Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate settings.

    Args:
        path: YAML file; ``None`` uses ``config.yaml`` in the working directory if it
            exists, else built-in defaults.
        environ: environment mapping for ``AIRCTRL_*`` overrides (defaults to
            ``os.environ``).
        overrides: dotted-key values applied last (e.g. from CLI flags).

    Raises:
        ConfigError: the file is missing, not YAML, or fails validation. The message
            names the key and what was expected.
    """
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None and not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    chosen = path if path is not None else DEFAULT_CONFIG_PATH
    if chosen.exists():
        origin = str(chosen)
        try:
            loaded = yaml.safe_load(chosen.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{origin}: not valid YAML{where}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{origin}: expected a mapping at the top level")
        data = loaded

    env = os.environ if environ is None else environ
    for variable, dotted in ENV_OVERRIDES.items():
        if env.get(variable):
            _set_dotted(data, dotted, env[variable])
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)

    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from None


def with_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """Return ``settings`` with dotted-key ``overrides`` applied and re-validated.

    Used for command-line flags, so a bad flag value is reported like a bad
    config value, naming the key (``sources`` takes a whole list).

    Raises:
        ConfigError: a value fails validation.
    """
    data = settings.model_dump()
    for dotted, value in overrides.items():
        _set_dotted(data, dotted, value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, "command line")) from None
