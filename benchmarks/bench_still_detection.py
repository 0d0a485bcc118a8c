"""Still-image face search cost against one raw MediaPipe pass, per kind of photo.

For each input it prints the median time of one raw IMAGE-mode call on the
image downscaled to 1920 px (what a plain integration does), the median time
of ``LandmarkDetector.detect`` with the options of ``detection.still_search``
(verification, tiling, retries; the thorough search's padded second view
belongs to the pipeline and is not timed here), their ratio, the faces each
found, and the peak Python-side memory the search allocated (tracemalloc sees
numpy buffers, not MediaPipe's native ones).

Usage: python benchmarks/bench_still_detection.py [--repeats R] [--search S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import cv2
import numpy as np
import numpy.typing as npt

from airctrl.assets import resolve_model, resolve_sample
from airctrl.config import Settings, StillSearch
from airctrl.decode import read_image
from airctrl.landmarks import LandmarkDetector
from airctrl.pipeline import landmarker_options
from airctrl.types import Frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import media  # the tests' case builders

Array = npt.NDArray[np.uint8]


def inputs() -> dict[str, Array]:
    """The photos to time, built from the sample media."""
    face = read_image(resolve_sample("single_face.jpg")).image
    group = read_image(resolve_sample("multi_face.jpg")).image
    landscape = read_image(resolve_sample("free-mountain-vector-01.jpg")).image
    return {
        "single face 572x562": face,
        "group of 5 1000x667": group,
        "12-face grid 920x690": media.grid(face, 3, 4),
        "24 MP, one small face": media.small_face_on_huge_canvas(face)[0],
        "24 MP landscape, no face": np.ascontiguousarray(
            cv2.resize(landscape, (6000, 3375), interpolation=cv2.INTER_CUBIC)
        ),
    }


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``call`` over ``repeats`` runs after one warm-up."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print one row per input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--search", choices=get_args(StillSearch), default="fast")
    args = parser.parse_args()

    model = resolve_model()
    settings = Settings.model_validate(
        {"detection": {"max_faces": 12, "still_search": args.search}}
    )
    options = landmarker_options(settings)
    searcher = LandmarkDetector(model, mode="image", options=options)
    raw = LandmarkDetector(model, mode="image", options=options)
    print(f"detection.still_search: {args.search}")
    print(
        f"{'input':28} {'raw s':>7} {'search s':>9} {'ratio':>6} "
        f"{'raw faces':>9} {'faces':>6} {'peak MB':>8}"
    )
    for name, image in inputs().items():
        frame = Frame(image, 0, 0)
        small = image
        if max(image.shape[:2]) > 1920:
            factor = 1920 / max(image.shape[:2])
            small = cv2.resize(
                image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA
            )
        small = np.ascontiguousarray(small)
        raw_s = median_seconds(lambda small=small: raw._run(small, 0), args.repeats)
        raw_faces = len(raw._run(small, 0))
        search_s = median_seconds(
            lambda frame=frame: searcher.detect(frame), args.repeats
        )

        tracemalloc.start()
        found = searcher.detect(frame)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"{name:28} {raw_s:7.3f} {search_s:9.3f} {search_s / raw_s:6.1f} "
            f"{raw_faces:9d} {len(found.faces):6d} {peak / 1e6:8.1f}"
        )
    searcher.close()
    raw.close()


if __name__ == "__main__":
    main()
