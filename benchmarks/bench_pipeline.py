"""Pipeline speed against the raw model, on the same decoded frames.

Prints, in one run: raw MediaPipe Face Landmarker VIDEO-mode frames per second,
the AIRCTRL pipeline headless without HUD, and with HUD drawing plus annotated
video writing, each with its ratio to raw. Frames are decoded once up front so
decoding cost is the same (zero) for every row.

Usage: python benchmarks/bench_pipeline.py [--video PATH] [--frames N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from airctrl.assets import resolve_model, resolve_sample
from airctrl.capture import VideoFileSource
from airctrl.config import Settings
from airctrl.overlay import HudRenderer, HudStatus
from airctrl.pipeline import Pipeline
from airctrl.sinks import VideoSink
from airctrl.types import Frame


def load_frames(path: Path, limit: int) -> list[Frame]:
    """Decode up to ``limit`` frames into memory."""
    frames: list[Frame] = []
    with VideoFileSource(path) as source:
        for frame in source:
            frames.append(frame)
            if len(frames) >= limit:
                break
    return frames


def time_raw(model: Path, frames: list[Frame], max_faces: int) -> float:
    """Seconds for raw MediaPipe VIDEO mode over ``frames`` (model built beforehand)."""
    import mediapipe as mp
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    options = vision.FaceLandmarkerOptions(
        base_options=mp_tasks.BaseOptions(model_asset_path=str(model)),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=max_faces,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    landmarker = vision.FaceLandmarker.create_from_options(options)
    try:
        # Wrapping each frame in an mp.Image is part of any real integration,
        # so it is inside the timed loop, as it is for the pipeline.
        started = time.perf_counter()
        for i, frame in enumerate(frames):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=frame.image)
            landmarker.detect_for_video(image, i * 33)
        return time.perf_counter() - started
    finally:
        landmarker.close()


def time_pipeline(
    settings: Settings, model: Path, frames: list[Frame], *, with_hud: bool
) -> float:
    """Seconds for the AIRCTRL pipeline over ``frames``; optionally HUD + video."""
    hud = HudRenderer()
    with (
        tempfile.TemporaryDirectory() as tmp,
        Pipeline(settings, mode="video", model_path=model) as pipeline,
    ):
        video = VideoSink(Path(tmp) / "bench.mp4", fps=30.0) if with_hud else None
        started = time.perf_counter()
        for i, frame in enumerate(frames):
            result = pipeline.process(Frame(frame.image, i * 33, i))
            if video is not None:
                bgr: npt.NDArray[np.uint8] = cv2.cvtColor(
                    frame.image, cv2.COLOR_RGB2BGR
                )
                hud.draw(bgr, result, HudStatus(fps=30.0))
                video.write(bgr)
        elapsed = time.perf_counter() - started
        if video is not None:
            video.close()
    return elapsed


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video",
        type=Path,
        default=None,
        help="default: WolfgangLanger_Pexels.mp4 sample",
    )
    parser.add_argument("--frames", type=int, default=472)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    settings = Settings()
    model = resolve_model()
    video = args.video or resolve_sample("WolfgangLanger_Pexels.mp4")
    frames = load_frames(video, args.frames)
    n = len(frames)
    print(
        f"video: {video.name}, {n} frames {frames[0].width}x{frames[0].height}, "
        f"median of {args.repeats} runs"
    )

    # Interleave the three measurements so machine load drifts hit all alike.
    timings: dict[str, list[float]] = {"raw": [], "bare": [], "full": []}
    for _ in range(args.repeats):
        timings["raw"].append(time_raw(model, frames, settings.detection.max_faces))
        timings["bare"].append(time_pipeline(settings, model, frames, with_hud=False))
        timings["full"].append(time_pipeline(settings, model, frames, with_hud=True))
    raw, bare, full = (statistics.median(timings[k]) for k in ("raw", "bare", "full"))

    rows = [
        ("raw MediaPipe VIDEO mode", raw),
        ("AIRCTRL pipeline, headless, no HUD", bare),
        ("AIRCTRL pipeline + HUD + video writing", full),
    ]
    print(f"{'stage':42s} {'fps':>8s} {'ratio to raw':>13s}")
    for name, seconds in rows:
        print(f"{name:42s} {n / seconds:8.1f} {raw / seconds:13.2f}")
    print("target: pipeline without HUD >= 0.90 of raw")


if __name__ == "__main__":
    main()
