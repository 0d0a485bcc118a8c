"""Turn image bytes into one upright 8-bit RGB array, the format read from content.

Every still image that enters AIRCTRL (CLI files, API uploads, folder
sources) goes through :func:`decode_image`, so the CLI and the HTTP API agree
on what a file is and how it looks. The file name is never consulted: an HTML
page named ``photo.jpg`` is rejected as HTML.

What is normalised here: EXIF orientation (all eight values), transparency
(flattened onto a neutral grey), palette, 1-bit, grayscale, 16-bit and float
pixels (scaled, not clipped, to 8 bit), CMYK (through the embedded ICC profile
when there is one), animations (first frame, with a warning) and HEIC/HEIF
(through pillow-heif). Truncated files and decompression bombs are errors.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from airctrl.errors import DecodeError, EmptyInputError, UnsupportedMediaError

__all__ = [
    "ANIMATED_WARNING",
    "HEIF_AVAILABLE",
    "MAX_IMAGE_PIXELS",
    "DecodedImage",
    "decode_image",
    "describe_content",
    "read_image",
    "sniff_kind",
]

logger = logging.getLogger(__name__)

#: Largest image accepted, in pixels. 24-megapixel phone photos (6000x4000) fit
#: with room to spare; decoding this many RGB pixels takes ~150 MB, which bounds
#: the memory one request can claim. Larger images are rejected before decoding.
MAX_IMAGE_PIXELS = 64_000_000
#: Grey the transparent parts of an image are flattened onto: mid-grey keeps
#: contrast with both dark and light skin and hair, unlike black or white.
NEUTRAL_BACKGROUND = (128, 128, 128)
#: Warning attached to the result of an animated GIF, WebP or PNG.
ANIMATED_WARNING = "animated: first frame analysed"
#: Leading bytes :func:`describe_content` checks for text (HTML, XML, JSON, UTF-8)
#: once no image or video magic matched; the magic checks see the first 256.
SNIFF_BYTES = 64

try:  # pillow-heif registers HEIC/HEIF (and AVIF on old Pillow) with Pillow.
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    HEIF_AVAILABLE = False

# ISO base media ("ftyp") brands that hold a still image rather than a movie.
_IMAGE_BRANDS = frozenset(
    {
        b"heic",
        b"heix",
        b"heim",
        b"heis",
        b"hevc",
        b"hevx",
        b"mif1",
        b"msf1",
        b"avif",
        b"avis",
        b"mif2",
        b"miaf",
    }
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})


@dataclass(frozen=True)
class DecodedImage:
    """A decoded still image.

    ``image`` is HxWx3 uint8 RGB, already turned upright. ``warnings`` holds
    notes the result must carry (e.g. :data:`ANIMATED_WARNING`).
    ``source_format`` is Pillow's format name (``"JPEG"``, ``"PNG"``, ``"HEIF"``).
    """

    image: npt.NDArray[np.uint8]
    warnings: tuple[str, ...]
    source_format: str

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.image.shape[0])


# -- content sniffing -----------------------------------------------------------


def _ftyp_brands(head: bytes) -> tuple[bytes, ...] | None:
    """Return the major and compatible brands of an ISO-BMFF file, or None."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[0:4], "big")
    end = min(len(head), max(size, 16))
    brands = [head[8:12]]
    brands.extend(head[i : i + 4] for i in range(16, end - 3, 4))
    return tuple(brands)


def _image_magic(head: bytes) -> str | None:
    """Name the image format ``head`` starts with, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    brands = _ftyp_brands(head)
    if brands is not None and brands[0] in _IMAGE_BRANDS:
        return "HEIF" if brands[0] in _HEIF_BRANDS else "AVIF"
    return None


def _video_magic(head: bytes) -> str | None:
    """Name the video container ``head`` starts with, or None."""
    brands = _ftyp_brands(head)
    if brands is not None and brands[0] not in _IMAGE_BRANDS:
        return "QuickTime" if brands[0] == b"qt  " else "MP4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "QuickTime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "WebM" if b"webm" in head else "Matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head.startswith(b"FLV"):
        return "FLV"
    if head.startswith(b"OggS"):
        return "Ogg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "ASF"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "MPEG-PS"
    if len(head) >= 1 and head[0] == 0x47 and (len(head) < 189 or head[188] == 0x47):
        # MPEG transport stream: a sync byte every 188 bytes.
        return "MPEG-TS" if len(head) >= 189 else None
    return None


def _article(word: str) -> str:
    """Return "an" before names read with a leading vowel sound (MP4, AVI), else "a"."""
    return "an" if word[:1].upper() in "AEFHILMNORSX" else "a"


def describe_content(head: bytes) -> str:
    """Say in a few words what ``head`` (the first bytes of some input) looks like."""
    if not head:
        return "an empty file"
    video = _video_magic(head)
    if video is not None:
        return f"{_article(video)} {video} video"
    image = _image_magic(head)
    if image is not None:
        return f"{_article(image)} {image} image"
    lowered = head[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if lowered.startswith(b"<svg") or (
        lowered.startswith(b"<?xml") and b"<svg" in head
    ):
        return "an SVG drawing (vector images are not supported)"
    if lowered.startswith(b"<?xml"):
        return "an XML document"
    if lowered.startswith((b"{", b"[")):
        return "JSON or other text"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive"
    try:
        head[:SNIFF_BYTES].decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "plain text"


def _read_head(path_or_bytes: str | Path | bytes, size: int) -> bytes | None:
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return bytes(path_or_bytes[:size])
    path = Path(path_or_bytes)
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return handle.read(size)


def sniff_kind(path_or_bytes: str | Path | bytes) -> Literal["image", "video"] | None:
    """Decide from content whether a file or bytes hold a still image or a video.

    Video containers are recognised by their magic (MP4/MOV ``ftyp``, WebM and
    Matroska EBML, AVI ``RIFF``, FLV, Ogg, ASF, MPEG-PS/TS). Images by theirs,
    then by asking Pillow to read the header. Animated GIF/WebP/PNG count as
    images (their first frame is analysed).

    Returns:
        ``"image"``, ``"video"``, or None for a directory, a missing, empty or
        unrecognised file.
    """
    head = _read_head(path_or_bytes, 256)
    if not head:
        return None
    if _image_magic(head) is not None:
        return "image"
    if _video_magic(head) is not None:
        return "video"
    try:
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            opened = Image.open(io.BytesIO(bytes(path_or_bytes)))
        else:
            opened = Image.open(Path(path_or_bytes))
        with opened:
            return "image"
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


# -- pixel conversion -----------------------------------------------------------


def _scale_to_uint8(
    values: npt.NDArray[np.generic], bits: int | None
) -> npt.NDArray[np.uint8]:
    """Map integer or float pixels to 0..255 by scaling, never by clipping.

    ``bits`` is the sample depth when known (16 for ``I;16``); otherwise the
    range is inferred: floats in 0..1 scale by 255, integers up to 255 pass,
    up to 65535 are treated as 16-bit, anything larger scales by the maximum.
    """
    data = values.astype(np.float64)
    if bits is not None:
        top = float(2**bits - 1)
    elif np.issubdtype(values.dtype, np.floating):
        finite = data[np.isfinite(data)]
        peak = float(finite.max()) if finite.size else 1.0
        top = 1.0 if peak <= 1.0 else max(255.0, peak)
        data = np.nan_to_num(data, nan=0.0, posinf=top, neginf=0.0)
    else:
        peak = float(data.max()) if data.size else 0.0
        top = 255.0 if peak <= 255.0 else max(65535.0, peak)
    scaled = np.clip(np.rint(np.clip(data, 0.0, None) * (255.0 / top)), 0, 255)
    return scaled.astype(np.uint8)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an image with transparency onto :data:`NEUTRAL_BACKGROUND`."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*NEUTRAL_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Convert CMYK to sRGB through the embedded ICC profile when present."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            target = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(
                image,
                source,
                target,
                outputMode="RGB",
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
            )
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            logger.debug(
                "CMYK ICC conversion failed (%s); using the plain formula", exc
            )
    return image.convert("RGB")


def _to_rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Return any Pillow image as HxWx3 uint8 RGB (see the module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode.startswith("I;16") or mode in ("I", "F"):
        bits = 16 if mode.startswith("I;16") else None
        gray = _scale_to_uint8(np.asarray(image), bits)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        return np.asarray(_flatten_alpha(image), dtype=np.uint8)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return np.asarray(_flatten_alpha(image), dtype=np.uint8)
    if mode in ("L", "1", "P", "RGBX", "YCbCr", "HSV"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(image), dtype=np.uint8)
    if mode == "LAB":
        converted = ImageCms.applyTransform(
            image,
            ImageCms.buildTransform(
                ImageCms.createProfile("LAB"),
                ImageCms.createProfile("sRGB"),
                "LAB",
                "RGB",
            ),
        )
        if converted is not None:
            return np.asarray(converted, dtype=np.uint8)
    raise UnsupportedMediaError(f"images with pixel mode {mode} are not supported")


# -- public API -----------------------------------------------------------------


def _open(data: bytes) -> Image.Image:
    """Open ``data`` with Pillow, turning every failure into one of our errors."""
    head = data[:256]
    magic = _image_magic(head)
    if magic is None and _video_magic(head) is not None:
        raise UnsupportedMediaError(
            f"input is {describe_content(head)}, not a still image; "
            "analyse it as a video"
        )
    if magic == "HEIF" and not HEIF_AVAILABLE:
        raise UnsupportedMediaError(
            "HEIC/HEIF images need the pillow-heif package; install it or convert "
            "the photo to JPEG or PNG"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if magic is not None:
            raise DecodeError(
                f"{magic} image header is damaged; cannot decode it"
            ) from None
        raise UnsupportedMediaError(
            f"input is not an image: it looks like {describe_content(head)}"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DecodeError(
            f"image is larger than the {MAX_IMAGE_PIXELS // 1_000_000}-megapixel limit"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"cannot decode the image: {exc}") from None


def decode_image(data: bytes) -> DecodedImage:
    """Decode image bytes into an upright HxWx3 uint8 RGB image.

    The format comes from the bytes, never from a file name. Animated images
    give their first frame plus :data:`ANIMATED_WARNING`.

    Raises:
        EmptyInputError: ``data`` is empty ("empty file").
        UnsupportedMediaError: the bytes are not an image (the message says what
            they look like: HTML, a video, text...), or a HEIC file arrives
            without pillow-heif.
        DecodeError: the image is truncated or corrupt, or larger than
            :data:`MAX_IMAGE_PIXELS`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise EmptyInputError("empty file")

    image = _open(data)
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise DecodeError(f"image has no pixels ({width}x{height})")
        if width * height > MAX_IMAGE_PIXELS:
            raise DecodeError(
                f"image is {width}x{height} pixels; the limit is "
                f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels"
            )
        source_format = image.format or "unknown"
        notes: list[str] = []
        if int(getattr(image, "n_frames", 1) or 1) > 1:
            notes.append(ANIMATED_WARNING)
            image.seek(0)

        try:
            image.load()
            upright = ImageOps.exif_transpose(image) or image
            pixels = _to_rgb_array(upright)
        except OSError as exc:
            if "truncated" in str(exc).lower() or "premature" in str(exc).lower():
                # Limitation: a truncated file is refused outright, not analysed in
                # part; the missing rows would be grey fill and could never carry
                # a trustworthy emotion.
                raise DecodeError(
                    "image is truncated; the file is incomplete"
                ) from None
            raise DecodeError(
                f"cannot decode the {source_format} image: {exc}"
            ) from None
        except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DecodeError(
                f"cannot decode the {source_format} image: {exc}"
            ) from None

    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DecodeError(f"decoded image has unexpected shape {pixels.shape}")
    logger.debug(
        "Decoded %s image %dx%d (%s)",
        source_format,
        pixels.shape[1],
        pixels.shape[0],
        ", ".join(notes) or "no notes",
    )
    return DecodedImage(pixels, tuple(notes), source_format)


def read_image(path: str | Path) -> DecodedImage:
    """Read and decode the image file at ``path`` (see :func:`decode_image`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
        plus everything :func:`decode_image` raises.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image file")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    size = path.stat().st_size
    # A compressed image cannot hold more pixels than a few times its size in
    # bytes allows for; this only guards against reading absurd files whole.
    if size > MAX_IMAGE_PIXELS * 4:
        raise DecodeError(
            f"{path.name} is {size // 1_000_000} MB; too large for an image"
        )
    return decode_image(path.read_bytes())
