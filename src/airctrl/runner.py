"""The ``airctrl run`` loop: one worker per source, sinks, HUD, progress, stop.

Each source gets its own thread, :class:`Pipeline` (video mode), tracks, sinks
and metrics label. The calling thread shows the HUD window when there is one,
reports progress and turns Ctrl-C or ``q`` into a clean stop: every worker
finishes its current frame, closes its video and event files and reports.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from airctrl import metrics
from airctrl.capture import open_source
from airctrl.config import Settings, SourceSettings
from airctrl.overlay import HudRenderer, HudStatus, LightModeSwitch
from airctrl.pipeline import FrameResult, Pipeline
from airctrl.sinks import (
    CsvEventSink,
    EventSink,
    JsonlEventSink,
    VideoSink,
    frame_events,
    status_event,
)
from airctrl.types import Frame

__all__ = [
    "LoadGovernor",
    "RunOptions",
    "RunSummary",
    "SourceSummary",
    "SourceWorker",
    "run",
]

logger = logging.getLogger(__name__)

#: Weight of the newest frame in the FPS moving average (about a 10-frame memory).
FPS_EMA_ALPHA = 0.1
#: Frame rate assumed for the output video when the source does not say.
DEFAULT_VIDEO_FPS = 25.0
#: Source kinds that deliver in real time, where falling behind means skipping.
LIVE_KINDS = frozenset({"camera", "stream", "live"})
#: Frames analysed before load decisions start (the first inferences are slow
#: while MediaPipe warms up, and would switch light mode on for nothing).
WARMUP_FRAMES = 10


class LoadGovernor:
    """Decide light HUD mode and frame skipping from measured work per frame.

    ``capacity_fps`` is what the machine could sustain: one over the moving
    average of the time spent on an analysed frame (pipeline, HUD, writing).
    Light mode follows it with hysteresis (see :class:`LightModeSwitch`). When
    light mode is on and the work still takes longer than the source's frame
    interval, ``stride`` says to analyse only every n-th frame (up to
    ``max_stride``); both go back by themselves when the load eases.
    """

    def __init__(
        self,
        *,
        light_below_fps: float,
        light_recover_fps: float,
        max_stride: int,
        skip_enabled: bool = True,
        alpha: float = FPS_EMA_ALPHA,
        warmup_frames: int = WARMUP_FRAMES,
    ) -> None:
        if max_stride < 1:
            raise ValueError(f"max_stride: expected >= 1, got {max_stride}")
        self._switch = LightModeSwitch(
            below_fps=light_below_fps, recover_fps=light_recover_fps
        )
        self.max_stride = max_stride
        self.skip_enabled = skip_enabled
        self.alpha = alpha
        self.warmup_frames = warmup_frames
        self.work_seconds = 0.0
        self.stride = 1
        self._seen = 0

    @property
    def light_mode(self) -> bool:
        """True while the light HUD is on."""
        return self._switch.is_on

    @property
    def capacity_fps(self) -> float:
        """Frames per second the measured work allows (0 before the first frame)."""
        return 1.0 / self.work_seconds if self.work_seconds > 0 else 0.0

    def update(self, work_seconds: float, frame_interval_s: float) -> None:
        """Fold in the time one analysed frame took; recompute mode and stride."""
        self._seen += 1
        if self.work_seconds == 0.0:
            self.work_seconds = work_seconds
        else:
            self.work_seconds += self.alpha * (work_seconds - self.work_seconds)
        if self._seen <= self.warmup_frames:
            return

        light = self._switch.update(self.capacity_fps)
        if light and self.skip_enabled and self.work_seconds > frame_interval_s > 0:
            needed = math.ceil(self.work_seconds / frame_interval_s)
            self.stride = max(1, min(self.max_stride, needed))
        else:
            self.stride = 1


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves, beyond the settings file."""

    output_dir: Path
    show_window: bool = False
    max_frames: int | None = None
    write_video: bool = True
    write_jsonl: bool = True
    write_csv: bool = False
    draw_hud: bool = True


@dataclass
class SourceSummary:
    """What one source produced; updated live by its worker."""

    source_id: str
    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    skipped_frames: int = 0
    outages: int = 0
    emotions: Counter[str] = field(default_factory=Counter)
    fps: float = 0.0
    seconds: float = 0.0
    state: str = "starting"
    light_mode: bool = False
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None

    def emotion_shares(self) -> dict[str, float]:
        """Share of face observations per emotion (sums to 1 when there were faces)."""
        total = sum(self.emotions.values())
        return {k: v / total for k, v in self.emotions.most_common()} if total else {}


@dataclass
class RunSummary:
    """Every source's summary plus how the run ended."""

    sources: list[SourceSummary]
    #: True when Ctrl-C, SIGTERM (via ``stop_event``) or "q" ended the run,
    #: rather than every source running out.
    stopped: bool = False
    seconds: float = 0.0


def _source_id(index: int, source: SourceSettings) -> str:
    return source.name or (f"cam{index}" if index else "main")


def _describe(exc: BaseException) -> str:
    """One plain line for an exception: ``path: reason`` for OS errors."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class SourceWorker(threading.Thread):
    """Read one source, run the pipeline, draw the HUD and feed the sinks."""

    def __init__(
        self,
        source_id: str,
        source_settings: SourceSettings,
        settings: Settings,
        options: RunOptions,
        stop_event: threading.Event,
        *,
        model_path: Path | None = None,
        source_factory: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(name=f"airctrl-source-{source_id}", daemon=True)
        self.source_id = source_id
        self.source_settings = source_settings
        self.settings = settings
        self.options = options
        self.stop_event = stop_event
        self.model_path = model_path
        self.source_factory = source_factory
        self.summary = SourceSummary(source_id)
        # The source gets its own stop event: closing a source sets it, and one
        # source ending must not stop the others. ``run`` forwards a global stop.
        self.source_stop = threading.Event()
        self.latest_frame_bgr: npt.NDArray[np.uint8] | None = None
        self._sinks: list[EventSink] = []
        self._sinks_lock = threading.Lock()
        self._hud = HudRenderer(font_scale=settings.hud.font_scale)
        self._governor = LoadGovernor(
            light_below_fps=settings.hud.light_mode_below_fps,
            light_recover_fps=max(
                settings.hud.light_mode_recover_fps, settings.hud.light_mode_below_fps
            ),
            max_stride=settings.output.max_lag_frames,
            skip_enabled=settings.output.skip_frames_when_behind,
        )

    # -- outputs ------------------------------------------------------------------

    def _open_sinks(self) -> tuple[list[EventSink], Path]:
        folder = self.options.output_dir
        if len(self.settings.sources) > 1:
            folder = folder / self.source_id
        folder.mkdir(parents=True, exist_ok=True)

        opener: Callable[[Path], Any] | None = None
        suffix = ""
        if self.settings.output.encrypt:
            from airctrl.secure import load_cipher, open_encrypted_writer

            cipher = load_cipher(self.settings.output.encryption_key_file)
            opener = lambda path: open_encrypted_writer(path, cipher)
            suffix = ".enc"

        sinks: list[EventSink] = []
        if self.options.write_jsonl:
            jsonl = JsonlEventSink(folder / f"events.jsonl{suffix}", opener=opener)
            sinks.append(jsonl)
            self.summary.outputs.append(jsonl.path)
        if self.options.write_csv:
            table = CsvEventSink(folder / f"events.csv{suffix}", opener=opener)
            sinks.append(table)
            self.summary.outputs.append(table.path)
        return sinks, folder

    def _set_state(self, state: str, sinks: list[EventSink]) -> None:
        if state == self.summary.state:
            return
        if state in ("lost", "reconnecting") and self.summary.state == "connected":
            self.summary.outages += 1
            logger.warning("Source %s %s: no frames", self.source_id, state)
        elif state == "connected" and self.summary.state in ("lost", "reconnecting"):
            logger.info("Source %s reconnected", self.source_id)
        self.summary.state = state
        if state in metrics.CAMERA_STATES:
            metrics.set_camera_state(self.source_id, state)
        event = status_event(self.source_id, state, int(time.time() * 1000))
        for sink in sinks:
            sink.write([event])

    # -- main loop ----------------------------------------------------------------

    def run(self) -> None:
        """Thread body: never raises; failures end up in ``summary.error``."""
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - reported to the caller, not swallowed
            self.summary.error = _describe(exc)
            self.summary.state = "failed"
            if len(self.settings.sources) > 1:
                # Other sources keep running; say so now rather than at the end.
                logger.error(
                    "Source %s stopped: %s", self.source_id, self.summary.error
                )

    def _open_source(self) -> Any:
        if self.source_factory is not None:
            return self.source_factory(
                self.source_settings, self.source_stop, self._on_status
            )
        return open_source(
            self.source_settings.source,
            self.source_settings,
            self.source_stop,
            on_status=self._on_status,
            on_decode_failure=self._on_decode_failure,
        )

    def _on_status(self, source_id: str, status: str) -> None:
        """Record a source status change (called from the capture code)."""
        with self._sinks_lock:
            self._set_state(status, self._sinks)

    def _on_decode_failure(self, source_id: str, reason: str) -> None:
        """Count a file or frame the source skipped as undecodable (capture logs it)."""
        metrics.record_decode_failure(self.source_id)

    def _run(self) -> None:
        source = self._open_source()  # first, so a bad source leaves no empty files
        started = time.perf_counter()
        sinks: list[EventSink] = []
        video: VideoSink | None = None
        try:
            sinks, folder = self._open_sinks()
            with self._sinks_lock:
                self._sinks = sinks
                if self.summary.state != "starting":
                    event = status_event(
                        self.source_id, self.summary.state, int(time.time() * 1000)
                    )
                    for sink in sinks:
                        sink.write([event])
            with Pipeline(
                self.settings,
                mode="video",
                model_path=self.model_path,
                source_id=self.source_id,
            ) as pipeline:
                self._set_state("connected", sinks)
                video = self._loop(source, pipeline, sinks, folder)
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
            if video is not None:
                video.close()
            for sink in sinks:
                sink.close()
            self.summary.seconds = time.perf_counter() - started
            if self.summary.state != "failed":
                self.summary.state = "stopped"

    def _loop(
        self, source: Any, pipeline: Pipeline, sinks: list[EventSink], folder: Path
    ) -> VideoSink | None:
        video: VideoSink | None = None
        fps_ema = 0.0
        last_tick = time.perf_counter()
        last_result: FrameResult | None = None
        since_analysis = 0
        is_live = getattr(source, "kind", "") in LIVE_KINDS
        source_fps = float(getattr(source, "fps", 0.0) or 0.0) or DEFAULT_VIDEO_FPS
        multi = len(self.settings.sources) > 1

        for frame in source:
            if self.stop_event.is_set():
                break

            # Files are never skipped: every frame of a video is analysed.
            stride = self._governor.stride if is_live else 1
            analyse = since_analysis + 1 >= stride
            work_started = time.perf_counter()
            if analyse:
                last_result = pipeline.process(frame)
                self._record(last_result, sinks)
                since_analysis = 0
                if self.settings.output.store_frames:
                    self._store_frame(frame, folder)
            else:
                since_analysis += 1
                self.summary.skipped_frames += 1
                metrics.record_skip(self.source_id, 1)

            if self.options.draw_hud or self.options.write_video:
                image_bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
                if self.options.draw_hud:
                    label = self.source_id if multi else ""
                    status = HudStatus(
                        fps_ema, self._governor.light_mode, self.summary.state, label
                    )
                    self._hud.draw(image_bgr, last_result, status)
                if self.options.write_video:
                    if video is None:
                        video = VideoSink(
                            folder / "annotated.mp4",
                            fps=source_fps,
                            codec=self.settings.output.video_codec,
                        )
                        self.summary.outputs.insert(0, video.path)
                    video.write(image_bgr)
                self.latest_frame_bgr = image_bgr

            now = time.perf_counter()
            if analyse:
                self._update_load(now - work_started, 1.0 / source_fps)
            instant = 1.0 / max(now - last_tick, 1e-6)
            fps_ema = (
                instant
                if fps_ema == 0
                else fps_ema + FPS_EMA_ALPHA * (instant - fps_ema)
            )
            last_tick = now
            self.summary.fps = fps_ema

            handled = self.summary.frames + self.summary.skipped_frames
            if (
                self.options.max_frames is not None
                and handled >= self.options.max_frames
            ):
                break
        return video

    def _store_frame(self, frame: Frame, folder: Path) -> None:
        """Keep the raw frame as JPEG (only when ``output.store_frames`` opts in)."""
        frames_dir = folder / "frames"
        frames_dir.mkdir(exist_ok=True)
        bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(frames_dir / f"{frame.index:08d}.jpg"), bgr)

    def _update_load(self, work_seconds: float, frame_interval_s: float) -> None:
        was_light = self._governor.light_mode
        self._governor.update(work_seconds, frame_interval_s)
        light = self._governor.light_mode
        if light != was_light:
            logger.info(
                "Source %s light HUD %s (capacity %.1f FPS)",
                self.source_id,
                "on" if light else "off",
                self._governor.capacity_fps,
            )
            metrics.set_light_hud(self.source_id, light)
        self.summary.light_mode = light

    def _record(self, result: FrameResult, sinks: list[EventSink]) -> None:
        self.summary.frames += 1
        if result.faces:
            self.summary.frames_with_faces += 1
        self.summary.faces += len(result.faces)
        for face in result.faces:
            self.summary.emotions[face.emotion.label] += 1
        events = frame_events(result)
        with self._sinks_lock:
            for sink in sinks:
                sink.write(events)
        metrics.record_frame(
            self.source_id, result, processing_seconds=result.latency_ms / 1000
        )


def _window_title(source_id: str) -> str:
    return f"AIRCTRL {source_id}"


def run(
    settings: Settings,
    options: RunOptions,
    *,
    stop_event: threading.Event | None = None,
    on_progress: Callable[[list[SourceSummary]], None] | None = None,
    progress_interval_s: float = 1.0,
    model_path: Path | None = None,
    source_factory: Callable[..., Any] | None = None,
) -> RunSummary:
    """Run every configured source until they end, ``q`` is pressed or Ctrl-C.

    Ctrl-C (KeyboardInterrupt in this thread) and ``stop_event`` stop all workers
    cleanly; outputs written so far are closed properly.
    """
    stop = stop_event or threading.Event()
    workers = [
        SourceWorker(
            _source_id(i, s),
            s,
            settings,
            options,
            stop,
            model_path=model_path,
            source_factory=source_factory,
        )
        for i, s in enumerate(settings.sources)
    ]
    if options.show_window:
        # Create the windows here, before the workers load MediaPipe: a window
        # first made by imshow while the workers start up was sometimes never
        # shown (about 1 start in 6 under Xvfb with the Qt backend).
        for worker in workers:
            cv2.namedWindow(_window_title(worker.source_id), cv2.WINDOW_AUTOSIZE)
        cv2.waitKey(1)
    started = time.perf_counter()
    for worker in workers:
        worker.start()

    interrupted = False
    last_progress = time.perf_counter()
    try:
        while any(w.is_alive() for w in workers):
            if stop.is_set():
                for worker in workers:
                    worker.source_stop.set()
            if options.show_window:
                for worker in workers:
                    if worker.latest_frame_bgr is not None:
                        cv2.imshow(
                            _window_title(worker.source_id), worker.latest_frame_bgr
                        )
                if cv2.waitKey(15) & 0xFF in (ord("q"), 27):
                    logger.info("Quit requested from the window")
                    stop.set()
            else:
                time.sleep(0.05)
            if (
                on_progress
                and time.perf_counter() - last_progress >= progress_interval_s
            ):
                on_progress([w.summary for w in workers])
                last_progress = time.perf_counter()
    except KeyboardInterrupt:
        interrupted = True
        logger.info("Interrupted; stopping sources")
        stop.set()
    finally:
        for worker in workers:
            if stop.is_set():
                worker.source_stop.set()
            worker.join()
        if options.show_window:
            cv2.destroyAllWindows()
    stopped = interrupted or stop.is_set()
    return RunSummary(
        [w.summary for w in workers], stopped, time.perf_counter() - started
    )
