"""decode.py: every awkward still becomes an upright RGB array or a clear error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import media
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from airctrl import decode
from airctrl.decode import (
    ANIMATED_WARNING,
    decode_image,
    read_image,
    sniff_kind,
)
from airctrl.errors import DecodeError, EmptyInputError, UnsupportedMediaError

Array = npt.NDArray[np.uint8]


def mean_abs_diff(a: Array, b: Array) -> float:
    """Mean absolute difference per channel value, as a float."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def photo(happy_face_rgb: Array) -> Array:
    """A non-square crop of the sample photo, so a missed rotation changes the shape."""
    return np.ascontiguousarray(happy_face_rgb[40:540, 60:460])


# -- orientation -----------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9), ids=lambda o: f"exif-{o}")
def test_exif_orientation_is_applied(photo: Array, orientation: int) -> None:
    decoded = decode_image(media.exif_oriented_jpeg(photo, orientation))

    assert decoded.image.shape == photo.shape
    assert mean_abs_diff(decoded.image, photo) < 4.0


def test_exif_orientation_6_sideways_phone_photo_is_upright_in_width_and_height(
    photo: Array,
) -> None:
    stored = np.rot90(photo, k=1)  # what the phone writes: 500 wide, 400 tall
    decoded = decode_image(media.exif_oriented_jpeg(photo, 6))

    assert stored.shape[:2] == (400, 500)
    assert (decoded.height, decoded.width) == (500, 400)


# -- pixel formats -----------------------------------------------------------------


def test_cmyk_jpeg_keeps_its_colours(photo: Array) -> None:
    decoded = decode_image(media.cmyk_jpeg(photo))

    assert decoded.source_format == "JPEG"
    assert mean_abs_diff(decoded.image, photo) < 6.0


def test_rgb_48_bit_png_is_scaled_not_clipped(photo: Array) -> None:
    decoded = decode_image(media.rgb48_png(photo))

    # High bytes survive exactly; clipping would turn nearly everything to 255.
    assert np.array_equal(decoded.image, photo)


def test_gray_16_bit_png_is_scaled_not_clipped(photo: Array) -> None:
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    decoded = decode_image(media.gray16_png(gray))

    assert decoded.image.shape == (*gray.shape, 3)
    assert np.array_equal(decoded.image[..., 0], gray)
    assert np.array_equal(decoded.image[..., 2], gray)


def test_grayscale_8_bit_is_expanded_to_three_equal_channels(photo: Array) -> None:
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    decoded = decode_image(media.png(Image.fromarray(gray, "L")))

    assert decoded.image.shape == (*gray.shape, 3)
    assert np.array_equal(decoded.image[..., 1], gray)


def test_one_bit_image_becomes_black_and_white_rgb() -> None:
    bits = Image.new("1", (40, 30), 0)
    bits.paste(1, (0, 0, 20, 30))
    decoded = decode_image(media.png(bits))

    assert decoded.image[5, 5].tolist() == [255, 255, 255]
    assert decoded.image[5, 30].tolist() == [0, 0, 0]


def test_transparent_background_is_flattened_to_neutral_grey(
    happy_face_rgb: Array,
) -> None:
    data, mask = media.rgba_transparent_background(happy_face_rgb)
    decoded = decode_image(data)

    assert decoded.image.shape == happy_face_rgb.shape
    assert decoded.image[2, 2].tolist() == [128, 128, 128]
    assert np.array_equal(decoded.image[mask], happy_face_rgb[mask])


def test_palette_image_with_transparent_index_is_flattened() -> None:
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    palette.paste(1, (10, 0, 20, 20))
    palette.info["transparency"] = 0
    decoded = decode_image(media.png(palette))

    assert decoded.image[5, 5].tolist() == [128, 128, 128]
    assert decoded.image[5, 15].tolist() == [200, 30, 30]


def test_gray_with_alpha_is_flattened() -> None:
    la = Image.new("LA", (10, 10), (255, 0))
    la.paste((40, 255), (0, 0, 5, 10))
    decoded = decode_image(media.png(la))

    assert decoded.image[0, 0].tolist() == [40, 40, 40]
    assert decoded.image[0, 9].tolist() == [128, 128, 128]


# -- animations and HEIC ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "PNG"], ids=["webp", "gif", "apng"])
def test_animation_gives_first_frame_with_warning(photo: Array, fmt: str) -> None:
    frames = [photo, 255 - photo, np.zeros_like(photo)]
    decoded = decode_image(media.animated(frames, fmt))

    assert decoded.warnings == (ANIMATED_WARNING,)
    # GIF quantises to 256 colours, so compare loosely; the other frames are far.
    assert mean_abs_diff(decoded.image, photo) < 12.0


def test_still_image_has_no_warnings(photo: Array) -> None:
    assert decode_image(media.png(photo)).warnings == ()


def test_heic_photo_is_decoded(photo: Array) -> None:
    decoded = decode_image(media.heic(photo))

    assert decoded.source_format == "HEIF"
    assert decoded.image.shape == photo.shape
    assert mean_abs_diff(decoded.image, photo) < 6.0


def test_heic_without_the_plugin_is_a_fast_415_with_advice(
    photo: Array, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decode, "HEIF_AVAILABLE", False)

    with pytest.raises(UnsupportedMediaError, match="pillow-heif") as caught:
        decode_image(media.heic(photo))
    assert caught.value.http_status == 415
    assert "JPEG or PNG" in str(caught.value)


# -- broken and wrong input ------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda p: media.truncated(media.jpeg(p)),
        lambda p: media.truncated(media.jpeg(p, progressive=True)),
        lambda p: media.truncated(media.png(p)),
    ],
    ids=["baseline-jpeg", "progressive-jpeg", "png"],
)
def test_truncated_file_is_a_decode_error_not_grey_fill(
    photo: Array, make: Callable[[Array], bytes]
) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        decode_image(make(photo))


def test_empty_bytes_say_empty_file() -> None:
    with pytest.raises(EmptyInputError, match="^empty file$"):
        decode_image(b"")


def test_html_named_jpg_is_rejected_by_content(tmp_path: Path) -> None:
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(media.HTML_PAGE)

    with pytest.raises(UnsupportedMediaError, match="HTML"):
        read_image(fake)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"%PDF-1.7\n%\xe2\xe3", "PDF"),
        (b"PK\x03\x04" + b"\x00" * 30, "ZIP"),
        (b"hello, this is a note", "text"),
        (b"\x00\x13\x99\xfe\x01" * 8, "binary"),
    ],
    ids=["pdf", "zip", "text", "binary"],
)
def test_other_non_images_name_what_they_look_like(data: bytes, words: str) -> None:
    with pytest.raises(UnsupportedMediaError, match=words):
        decode_image(data)


def test_video_bytes_are_refused_as_a_still(sample_path: Callable[[str], Path]) -> None:
    with pytest.raises(UnsupportedMediaError, match="video"):
        decode_image(sample_path("single_face.mp4").read_bytes())


@pytest.mark.parametrize(
    ("width", "height"),
    [(9_000, 8_000), (40_000, 40_000)],
    ids=["72-megapixels", "1600-megapixels"],
)
def test_decompression_bomb_header_is_refused_before_decoding(
    width: int, height: int
) -> None:
    with pytest.raises(DecodeError, match="megapixel"):
        decode_image(media.png_header_only(width, height))


def test_tiny_image_still_decodes(photo: Array) -> None:
    tiny = cv2.resize(photo, (8, 8), interpolation=cv2.INTER_AREA)

    assert decode_image(media.png(tiny)).image.shape == (8, 8, 3)


def test_24_megapixel_photo_is_accepted(photo: Array) -> None:
    canvas = np.full((4000, 6000, 3), 90, dtype=np.uint8)

    assert decode_image(media.jpeg(canvas, quality=50)).image.shape == (4000, 6000, 3)


def test_decoded_image_is_uint8_hxwx3_rgb_order() -> None:
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[..., 0] = 220
    decoded = decode_image(media.png(red))

    assert decoded.image.dtype == np.uint8
    assert decoded.image[0, 0].tolist() == [220, 0, 0]


def test_read_image_of_a_folder_says_folder(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="folder"):
        read_image(tmp_path)


# -- sniffing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("avi", "video"), ("matroska", "video"), ("mov", "video"), ("mp4", "video")],
    ids=["avi", "mkv", "mov", "mp4"],
)
def test_sniff_kind_recognises_video_containers(
    tmp_path: Path, sample_path: Callable[[str], Path], fmt: str, expected: str
) -> None:
    target = media.container(sample_path("single_face.mp4"), tmp_path / "clip.bin", fmt)

    assert sniff_kind(target) == expected


def test_sniff_kind_recognises_webm(
    tmp_path: Path, sample_path: Callable[[str], Path]
) -> None:
    target = media.webm_without_duration(
        sample_path("single_face.mp4"), tmp_path / "a.dat"
    )

    assert sniff_kind(target) == "video"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: media.jpeg(p), "image"),
        (lambda p: media.png(p), "image"),
        (lambda p: media.heic(p), "image"),
        (lambda p: media.encode(Image.fromarray(p), "AVIF"), "image"),
        (lambda p: media.animated([p, p], "WEBP"), "image"),
        (lambda p: media.encode(Image.fromarray(p), "TIFF"), "image"),
        (lambda p: media.encode(Image.fromarray(p), "PPM"), "image"),
        (lambda p: media.HTML_PAGE, None),
        (lambda p: b"", None),
    ],
    ids=[
        "jpeg",
        "png",
        "heic",
        "avif",
        "webp",
        "tiff",
        "ppm-by-pillow",
        "html",
        "empty",
    ],
)
def test_sniff_kind_decides_from_content_not_name(
    tmp_path: Path, photo: Array, make: Callable[[Array], bytes], expected: str | None
) -> None:
    misnamed = tmp_path / "file.mp4"
    misnamed.write_bytes(make(photo))

    assert sniff_kind(misnamed) == expected
    assert sniff_kind(misnamed.read_bytes()) == expected


def test_sniff_kind_of_folder_or_missing_file_is_none(tmp_path: Path) -> None:
    assert sniff_kind(tmp_path) is None
    assert sniff_kind(tmp_path / "missing.jpg") is None
