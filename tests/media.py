"""Build the hard-case inputs of /work/shared/cases from the two sample files.

Every helper derives its output from ``single_face.jpg`` (one smiling man) or
``single_face.mp4`` (72 frames, neutral -> happy -> neutral) with Pillow,
OpenCV, numpy or the ffmpeg command line, so no case file is stored in the
repository. Image helpers return bytes; video helpers write to a path.
"""

from __future__ import annotations

import io
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

Array = npt.NDArray[np.uint8]

#: Where the face sits in single_face.jpg (572x562): found by running the
#: landmarker once by hand; the mesh box is about [191, 176, 183, 224].
FACE_CENTER_XY = (282, 288)


# -- still images ---------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """Return ``image`` saved as ``fmt`` (a Pillow format name) in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(rgb: Array, quality: int = 95, **options: object) -> bytes:
    """Return an RGB array as JPEG bytes."""
    return encode(Image.fromarray(rgb), "JPEG", quality=quality, **options)


def png(image: Array | Image.Image) -> bytes:
    """Return an array or Pillow image as PNG bytes."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return encode(image, "PNG")


#: For each EXIF orientation, how to turn the upright picture into the pixels a
#: camera stores (the inverse of what a viewer applies), written with numpy
#: from the EXIF 2.3 definitions rather than with Pillow's transpose table.
_STORE_FOR_ORIENTATION = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: np.transpose(a, (1, 0, 2)),
    6: lambda a: np.rot90(a, k=1),
    7: lambda a: np.rot90(a, k=2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=-1),
}


def exif_oriented_jpeg(upright: Array, orientation: int) -> bytes:
    """Return a JPEG whose pixels need EXIF ``orientation`` to look like ``upright``."""
    stored = np.ascontiguousarray(_STORE_FOR_ORIENTATION[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(stored, exif=exif.tobytes())


def cmyk_jpeg(rgb: Array) -> bytes:
    """Return the picture as a CMYK JPEG (as print workflows export it)."""
    return encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)


def rgb48_png(rgb: Array) -> bytes:
    """Return a 16-bit-per-channel RGB PNG whose high bytes equal ``rgb``."""
    wide = rgb.astype(np.uint16) * 257
    ok, data = cv2.imencode(".png", cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("cv2 could not write a 16-bit PNG")
    return bytes(data)


def gray16_png(gray: npt.NDArray[np.uint8]) -> bytes:
    """Return a 16-bit single-channel PNG whose high bytes equal ``gray``."""
    ok, data = cv2.imencode(".png", gray.astype(np.uint16) * 257)
    if not ok:
        raise RuntimeError("cv2 could not write a 16-bit PNG")
    return bytes(data)


def face_mask(
    shape: tuple[int, ...], radius_share: float = 0.3
) -> npt.NDArray[np.bool_]:
    """Return a boolean ellipse around :data:`FACE_CENTER_XY` covering the face."""
    height, width = shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = FACE_CENTER_XY
    ry, rx = height * radius_share * 1.2, width * radius_share
    inside: npt.NDArray[np.bool_] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return inside


def rgba_transparent_background(rgb: Array) -> tuple[bytes, npt.NDArray[np.bool_]]:
    """Return an RGBA PNG: face opaque, background transparent with black RGB.

    Black under the transparency is the nasty case: a decoder that drops alpha
    shows a black frame around the face instead of the neutral fill.
    """
    mask = face_mask(rgb.shape)
    rgba = np.zeros((*rgb.shape[:2], 4), dtype=np.uint8)
    rgba[..., :3] = np.where(mask[..., None], rgb, 0)
    rgba[..., 3] = np.where(mask, 255, 0)
    return png(Image.fromarray(rgba, "RGBA")), mask


def animated(frames: list[Array], fmt: str) -> bytes:
    """Return an animation (``"WEBP"``, ``"GIF"`` or ``"PNG"`` for APNG)."""
    images = [Image.fromarray(f) for f in frames]
    options: dict[str, object] = {"save_all": True, "append_images": images[1:]}
    options.update({"duration": 100, "loop": 0})
    if fmt == "WEBP":
        options["lossless"] = True
    return encode(images[0], fmt, **options)


def heic(rgb: Array) -> bytes:
    """Return the picture as HEIC, encoded by pillow-heif."""
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(rgb)).save(buffer, quality=90)
    return buffer.getvalue()


def truncated(data: bytes, keep_share: float = 0.5) -> bytes:
    """Return the first ``keep_share`` of ``data`` (a download cut short)."""
    return data[: int(len(data) * keep_share)]


def png_header_only(width: int, height: int) -> bytes:
    """Return a tiny PNG that claims ``width`` x ``height`` pixels (a bomb header).

    The pixel data is one compressed empty row, so decoding it would expand to
    the claimed size only if a reader trusted the header and went ahead.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
    b"<body><h1>Not Found</h1></body></html>\n"
)


def small_face_on_huge_canvas(
    rgb: Array, size: tuple[int, int] = (6000, 4000), face_width: int = 260
) -> tuple[Array, tuple[int, int, float]]:
    """Paste the photo, scaled so it is ``face_width`` wide, on a big grey canvas.

    Returns the canvas (HxWx3) and (x, y, scale) of the pasted photo, so the
    face's expected position is known without running any detector.
    """
    width, height = size
    canvas = np.full((height, width, 3), 118, dtype=np.uint8)
    scale = face_width / rgb.shape[1]
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x, y = int(width * 0.62), int(height * 0.55)
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas, (x, y, scale)


def grid(rgb: Array, rows: int, cols: int, cell: int = 230) -> Array:
    """Return ``rows`` x ``cols`` copies of the photo, each squeezed into a cell."""
    tile = cv2.resize(rgb, (cell, cell), interpolation=cv2.INTER_AREA)
    out = np.zeros((rows * cell, cols * cell, 3), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            out[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = tile
    return out


def rotated(rgb: Array, degrees: float) -> Array:
    """Return the photo rotated by ``degrees`` about its centre, grey corners."""
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    out = cv2.warpAffine(
        rgb,
        matrix,
        (width, height),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(128, 128, 128),
    )
    return np.asarray(out, dtype=np.uint8)


def darkened(rgb: Array, gain: float = 0.09) -> Array:
    """Return the photo at ``gain`` of its brightness (an unlit room)."""
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def left_half_cut(rgb: Array) -> Array:
    """Return the photo cut through the middle of the face: left edge at the nose."""
    return np.ascontiguousarray(rgb[:, FACE_CENTER_XY[0] :])


# -- videos ---------------------------------------------------------------------


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; raise with its stderr when it fails."""
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace')}")


_SMALL = ["-an", "-vf", "scale=320:180"]
_H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-pix_fmt", "yuv420p"]


def small_mp4(source: Path, target: Path) -> Path:
    """Write a 320x180 H.264 copy of ``source`` (same 72 frames)."""
    ffmpeg("-i", str(source), *_SMALL, *_H264, str(target))
    return target


def rotated_mp4(source: Path, target: Path) -> Path:
    """Write a phone-style clip: frames stored sideways plus a rotate tag.

    The frames are turned 90 degrees counter-clockwise and tagged ``rotate=270``
    so a player that honours the display matrix shows them upright (320x180).
    """
    sideways = target.with_name(target.stem + "-stored.mp4")
    ffmpeg(
        "-i",
        str(source),
        "-an",
        "-vf",
        "scale=320:180,transpose=2",
        *_H264[:-2],
        str(sideways),
    )
    ffmpeg(
        "-i", str(sideways), "-c", "copy", "-metadata:s:v:0", "rotate=270", str(target)
    )
    sideways.unlink()
    return target


def duplicate_timestamp_mp4(source: Path, target: Path) -> Path:
    """Write a clip whose frames 4 and 5 are 1/90000 s apart (the same millisecond)."""
    ffmpeg(
        "-i",
        str(source),
        *_SMALL,
        *_H264,
        "-video_track_timescale",
        "90000",
        "-bsf:v",
        r"setts=ts=if(eq(N\,5)\,PTS-2999\,PTS)",
        str(target),
    )
    return target


def webm_without_duration(source: Path, target: Path) -> Path:
    """Write a VP8 WebM through a pipe, so it carries no duration or index."""
    command = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(source),
        *_SMALL,
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "300k",
        "-f",
        "webm",
        "pipe:1",
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.decode(errors='replace')}")
    target.write_bytes(done.stdout)
    return target


def clip(source: Path, target: Path, first_frame: int, frame_count: int) -> Path:
    """Write ``frame_count`` frames of ``source`` from ``first_frame`` on."""
    ffmpeg(
        "-i",
        str(source),
        "-an",
        "-vf",
        f"select=between(n\\,{first_frame}\\,{first_frame + frame_count - 1}),"
        "setpts=N/30/TB,scale=320:180",
        "-r",
        "30",
        *_H264,
        str(target),
    )
    return target


def container(source: Path, target: Path, fmt: str) -> Path:
    """Write a few frames of ``source`` in container ``fmt`` (avi, matroska, mov...)."""
    ffmpeg(
        "-i",
        str(source),
        "-an",
        "-frames:v",
        "5",
        "-vf",
        "scale=160:90",
        "-c:v",
        "mjpeg",
        "-f",
        fmt,
        str(target),
    )
    return target
