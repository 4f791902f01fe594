"""Tests for engine.images: decoding uploads (load_image) and model preprocessing.

Every fixture is generated here with PIL/numpy, so the tests need no data files.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import images
from engine.images import ImageDecodeError, Preprocessing, fit_square, load_image, preprocess

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
ORIENTATION = 0x0112  # EXIF tag number


def close_to(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, expected, strict=True))


def two_colour_image(size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    """An RGB image whose left half is ``left`` and right half is ``right``."""
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def save_jpeg(image: Image.Image, path: Path, orientation: int | None = None) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def png_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    return buffer.getvalue()


def decode_error(source: object, **kwargs: object) -> str:
    with pytest.raises(ImageDecodeError) as caught:
        load_image(source, **kwargs)
    return str(caught.value)


# --- orientation -------------------------------------------------------------------------------------


def test_exif_orientation_6_is_rotated_upright(tmp_path: Path) -> None:
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise, so the left half ends up on top.
    path = save_jpeg(two_colour_image((80, 40), RED, BLUE), tmp_path / "phone.jpg", orientation=6)

    image = load_image(path)

    assert image.size == (40, 80)
    assert close_to(image.getpixel((20, 10)), RED, 40)
    assert close_to(image.getpixel((20, 70)), BLUE, 40)


def test_exif_orientation_is_applied_after_draft_decoding(tmp_path: Path) -> None:
    path = save_jpeg(two_colour_image((1600, 800), RED, BLUE), tmp_path / "phone.jpg", orientation=6)

    image = load_image(path, min_side=100)

    # The 1600x800 JPEG is decoded at 1/8 scale (200x100), then turned upright.
    assert image.size == (100, 200)
    assert close_to(image.getpixel((50, 20)), RED, 40)
    assert close_to(image.getpixel((50, 180)), BLUE, 40)


def test_image_without_orientation_is_unchanged(tmp_path: Path) -> None:
    path = save_jpeg(two_colour_image((80, 40), RED, BLUE), tmp_path / "plain.jpg")

    image = load_image(path)

    assert image.size == (80, 40)
    assert close_to(image.getpixel((10, 20)), RED, 40)


# --- colour modes ------------------------------------------------------------------------------------


def test_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 1))
    rgba.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (255, 0, 0, 128), (0, 0, 0, 0)])

    image = load_image(png_bytes(rgba))

    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == WHITE  # fully transparent red is white, not red or black
    assert image.getpixel((1, 0)) == RED
    assert close_to(image.getpixel((2, 0)), (255, 127, 127), 2)  # half-transparent red is pink
    assert image.getpixel((3, 0)) == WHITE


def test_grey_with_alpha_is_composited_on_white() -> None:
    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (0, 255)])

    image = load_image(png_bytes(la))

    assert [image.getpixel((x, 0)) for x in range(2)] == [WHITE, (0, 0, 0)]


@pytest.mark.parametrize("file_format", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(file_format: str) -> None:
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    palette_image.putdata([0, 1])
    buffer = io.BytesIO()
    palette_image.save(buffer, file_format, transparency=0)

    image = load_image(buffer.getvalue())

    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((1, 0)) == RED


def test_palette_without_transparency_keeps_colours() -> None:
    image = load_image(png_bytes(Image.new("RGB", (3, 3), GREEN).convert("P")))

    assert image.mode == "RGB"
    assert image.getpixel((1, 1)) == GREEN


def test_16_bit_png_is_scaled_to_the_full_8_bit_range() -> None:
    gradient = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    sixteen_bit = Image.fromarray(gradient)
    assert sixteen_bit.mode == "I;16"

    pixels = np.asarray(load_image(png_bytes(sixteen_bit)))

    grey = pixels[..., 0].ravel()
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
    assert grey.min() == 0 and grey.max() == 255
    assert len(np.unique(grey)) == 256  # scaled, not clipped: clipping would leave mostly 255
    assert (np.diff(grey.astype(int)) >= 0).all()
    assert abs(int(grey[len(grey) // 2]) - 128) <= 1


def test_32_bit_integer_image_with_16_bit_values_is_scaled() -> None:
    image = load_image(Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32)))

    assert [image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_32_bit_integer_image_with_8_bit_values_is_kept() -> None:
    image = load_image(Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32)))

    assert [image.getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]


def test_float_image_in_0_1_is_scaled() -> None:
    image = load_image(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))

    assert [image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg_colours_are_roughly_right(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # red
    cmyk.paste((255, 255, 0, 0), (16, 0, 32, 16))  # blue
    path = tmp_path / "print.jpg"
    cmyk.save(path, "JPEG", quality=95)
    with Image.open(path) as stored:
        assert "adobe" in stored.info  # libjpeg writes CMYK the Adobe way, inverted

    image = load_image(path)

    assert image.mode == "RGB"
    assert close_to(image.getpixel((4, 8)), RED, 40)
    assert close_to(image.getpixel((28, 8)), BLUE, 40)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("1", 1, WHITE), ("1", 0, (0, 0, 0)), ("L", 100, (100, 100, 100))],
)
def test_bilevel_and_grey_become_rgb(mode: str, value: int, expected: tuple[int, int, int]) -> None:
    image = load_image(png_bytes(Image.new(mode, (3, 3), value)))

    assert image.mode == "RGB"
    assert image.getpixel((1, 1)) == expected


def test_pil_image_input_is_converted_without_touching_the_original() -> None:
    original = Image.new("RGBA", (2, 2), (0, 0, 255, 0))
    rgb_original = Image.new("RGB", (2, 2), BLUE)

    converted = load_image(original)
    copied = load_image(rgb_original)

    assert converted.mode == "RGB" and converted.getpixel((0, 0)) == WHITE
    assert original.mode == "RGBA"
    assert copied is not rgb_original and copied.getpixel((0, 0)) == BLUE


# --- HEIC ----------------------------------------------------------------------------------------------


def heif_encoder_or_skip() -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif build has no HEVC encoder, so no HEIC file can be written")


def test_heic_round_trip(tmp_path: Path) -> None:
    heif_encoder_or_skip()
    path = tmp_path / "iphone.heic"
    two_colour_image((64, 48), RED, BLUE).save(path, format="HEIF", quality=95)

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.size == (64, 48)
    assert close_to(image.getpixel((8, 24)), RED, 50)
    assert close_to(image.getpixel((56, 24)), BLUE, 50)


def test_heic_orientation_is_applied_once(tmp_path: Path) -> None:
    heif_encoder_or_skip()
    path = tmp_path / "iphone.heic"
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    two_colour_image((64, 48), RED, BLUE).save(path, format="HEIF", quality=95, exif=exif.tobytes())

    image = load_image(path)

    # libheif turns the picture upright and resets the EXIF tag, so it must not be turned again.
    assert image.size == (48, 64)
    assert close_to(image.getpixel((24, 8)), RED, 50)


def test_min_side_uses_an_embedded_heic_thumbnail_only_when_big_enough(tmp_path: Path) -> None:
    heif_encoder_or_skip()
    path = tmp_path / "iphone.heic"
    Image.new("RGB", (1024, 768), RED).save(path, format="HEIF", thumbnails=[320])  # a 320x240 thumbnail

    assert load_image(path, min_side=224).size == (320, 240)
    assert load_image(path, min_side=300).size == (1024, 768)


def test_heic_without_pillow_heif_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "_OPEN_FORMATS", tuple(f for f in images._OPEN_FORMATS if f != "HEIF"))
    heic_start = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100)

    assert "HEIC" in decode_error(heic_start)


# --- animations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("file_format", "params"), [("GIF", {}), ("PNG", {}), ("WEBP", {"lossless": True})])
def test_animation_gives_its_first_frame(file_format: str, params: dict[str, object]) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, file_format, save_all=True, append_images=frames[1:], duration=100, **params)

    image = load_image(buffer.getvalue())

    assert image.mode == "RGB"
    assert image.getpixel((8, 8)) == RED


# --- draft (reduced-scale) decoding ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_12mp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("draft") / "12mp.jpg"
    two_colour_image((4000, 3000), RED, BLUE).save(path, "JPEG", quality=90)
    return path


def test_min_side_decodes_a_large_jpeg_at_reduced_scale(photo_12mp: Path) -> None:
    image = load_image(photo_12mp, min_side=224)

    assert 224 <= min(image.size) <= 3 * 224
    assert image.size == (500, 375)  # 1/8 scale, the smallest DCT scale that keeps 224 pixels
    assert close_to(image.getpixel((50, 180)), RED, 40)


def test_min_side_never_goes_below_the_request(photo_12mp: Path) -> None:
    image = load_image(photo_12mp, min_side=400)

    assert image.size == (1000, 750)  # 1/8 would give 375 < 400, so 1/4


def test_without_min_side_the_full_image_is_decoded(photo_12mp: Path) -> None:
    assert load_image(photo_12mp).size == (4000, 3000)


def test_min_side_larger_than_the_image_decodes_in_full(tmp_path: Path) -> None:
    path = save_jpeg(Image.new("RGB", (300, 200), RED), tmp_path / "small.jpg")

    assert load_image(path, min_side=500).size == (300, 200)


def test_min_side_must_be_positive(photo_12mp: Path) -> None:
    with pytest.raises(ValueError, match="min_side"):
        load_image(photo_12mp, min_side=0)


# --- input kinds ---------------------------------------------------------------------------------------


def test_bytes_bytearray_and_file_objects_are_accepted(tmp_path: Path) -> None:
    data = png_bytes(Image.new("RGB", (5, 4), GREEN))
    path = tmp_path / "green.png"
    path.write_bytes(data)

    with open(path, "rb") as file:
        from_file = load_image(file)
        assert not file.closed  # the caller's file stays the caller's
    decoded = [load_image(data), load_image(bytearray(data)), load_image(io.BytesIO(data)), from_file]
    decoded += [load_image(str(path)), load_image(path)]

    for image in decoded:
        assert image.mode == "RGB" and image.size == (5, 4) and image.getpixel((2, 2)) == GREEN


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_no_file_handles_are_leaked(tmp_path: Path) -> None:
    good = tmp_path / "good.gif"
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN)]
    frames[0].save(good, save_all=True, append_images=frames[1:])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(save_jpeg(Image.new("RGB", (64, 64), RED), tmp_path / "whole.jpg").read_bytes()[:300])
    open_before = len(os.listdir("/proc/self/fd"))

    for _ in range(20):
        load_image(good)
        with pytest.raises(ImageDecodeError):
            load_image(broken)

    assert len(os.listdir("/proc/self/fd")) == open_before


# --- rejected inputs -----------------------------------------------------------------------------------


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()

    assert "empty" in decode_error(path)
    assert "empty" in decode_error(b"")
    assert "empty" in decode_error(io.BytesIO())


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("chair.txt", "not a picture")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [b"a chair, but in words\n", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalogue >>\nendobj\n", zip_bytes()],
    ids=["text", "pdf", "zip"],
)
def test_non_image_is_rejected_with_the_supported_formats(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "upload.jpg"  # the extension lies; the content decides
    path.write_bytes(data)

    message = decode_error(path)

    assert "not a supported image" in message
    assert "JPEG" in message and "PNG" in message


@pytest.mark.parametrize("keep", [0.5, 0.9, 20], ids=["half", "most", "header-only"])
def test_truncated_jpeg_is_rejected(tmp_path: Path, keep: float) -> None:
    # Noise, so that the JPEG has a real amount of entropy-coded data to cut.
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = save_jpeg(Image.fromarray(noise), tmp_path / "whole.jpg").read_bytes()
    cut = data[: int(len(data) * keep)] if keep < 1 else data[:keep]

    assert "damaged or incomplete" in decode_error(cut)


def test_truncated_png_is_rejected() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))

    assert "damaged or incomplete" in decode_error(data[: len(data) // 2])


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid small 1-bit PNG whose header (IHDR) is patched to claim ``width`` x ``height``."""
    data = bytearray(png_bytes(Image.new("1", (8, 8))))
    ihdr_start = 8  # after the PNG signature: length (4), b"IHDR" (4), 13 bytes of fields, CRC (4)
    assert data[ihdr_start + 4 : ihdr_start + 8] == b"IHDR"
    fields = ihdr_start + 8
    data[fields : fields + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr_start + 4 : fields + 13]))
    data[fields + 13 : fields + 17] = struct.pack(">I", crc)
    return bytes(data)


def test_decompression_bomb_is_rejected() -> None:
    message = decode_error(png_claiming_size(30_000, 30_000))

    assert "too large" in message
    assert f"{images.MAX_PIXELS / 1_000_000:g} megapixels" in message


def test_image_over_max_pixels_is_rejected_with_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", 1_000)

    message = decode_error(png_bytes(Image.new("RGB", (50, 40))))

    assert "too large (50 x 40 pixels)" in message
    assert "0.001 megapixels" in message


def test_file_over_the_size_cap_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    path = tmp_path / "big.png"
    path.write_bytes(data)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", len(data) - 1)

    for source in (path, data, io.BytesIO(data)):
        assert "too big" in decode_error(source)
    assert "limit is" in decode_error(path)


def test_missing_path_is_named(tmp_path: Path) -> None:
    path = tmp_path / "no-such-sofa.jpg"

    message = decode_error(path)

    assert "No file found" in message and str(path) in message


def test_directory_is_rejected(tmp_path: Path) -> None:
    assert "is a folder" in decode_error(tmp_path)


def test_messages_carry_no_internals(tmp_path: Path) -> None:
    for source in (b"", b"text", png_claiming_size(30_000, 30_000), tmp_path / "missing.png"):
        message = decode_error(source)
        assert "Error" not in message and "Traceback" not in message and "PIL" not in message


# --- preprocessing -----------------------------------------------------------------------------------------


def three_band_image() -> Image.Image:
    """200x100: green left quarter, red middle half, blue right quarter."""
    image = Image.new("RGB", (200, 100), RED)
    image.paste(GREEN, (0, 0, 50, 100))
    image.paste(BLUE, (150, 0, 200, 100))
    return image


IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # leaves pixels as 0..1 floats


def to_pixels(batch: np.ndarray) -> np.ndarray:
    """One [3, H, W] array in 0..1 back to an [H, W, 3] uint8 array."""
    return (batch.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def test_pad_keeps_the_whole_image_between_white_bars() -> None:
    batch = preprocess([three_band_image()], Preprocessing(64, *IDENTITY, fit="pad"))

    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32
    pixels = to_pixels(batch[0])
    assert (pixels[:15] == WHITE).all() and (pixels[-15:] == WHITE).all()  # 64x32 picture, centred
    middle = pixels[32]
    assert close_to(tuple(middle[2]), GREEN) and close_to(tuple(middle[32]), RED) and close_to(tuple(middle[61]), BLUE)


def test_crop_keeps_the_centre() -> None:
    pixels = to_pixels(preprocess([three_band_image()], Preprocessing(64, *IDENTITY, fit="crop"))[0])

    # The centre 100x100 of the image is all red; the green and blue sides are cut away.
    assert all(close_to(tuple(pixels[y, x]), RED) for y in (0, 32, 63) for x in (2, 32, 61))


def test_squash_keeps_everything_without_bars() -> None:
    pixels = to_pixels(preprocess([three_band_image()], Preprocessing(64, *IDENTITY, fit="squash"))[0])

    assert close_to(tuple(pixels[0, 2]), GREEN) and close_to(tuple(pixels[63, 32]), RED)
    assert close_to(tuple(pixels[32, 61]), BLUE)


def test_preprocess_normalises_with_mean_and_std() -> None:
    prep = Preprocessing(8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    white, black = Image.new("RGB", (10, 10), WHITE), Image.new("L", (4, 6), 0)

    batch = preprocess([white, black], prep)

    assert batch.shape == (2, 3, 8, 8) and batch.flags.c_contiguous
    expected_white = (1 - np.array(prep.mean)) / np.array(prep.std)
    np.testing.assert_allclose(batch[0, :, 4, 4], expected_white, atol=1e-5)
    expected_black = -np.array(prep.mean) / np.array(prep.std)
    np.testing.assert_allclose(batch[1, :, 4, 4], expected_black, atol=1e-5)


def test_unknown_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fit"):
        fit_square(Image.new("RGB", (4, 4)), 8, "stretch")


def test_a_batch_is_normalised_channel_first_as_the_networks_read_it():
    from engine.backbone_specs import get_spec
    from engine.images import normalised_batch

    prep = get_spec("efficientnet_lite0").preprocessing
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    batch = normalised_batch(pixels, prep)
    assert batch.shape == (2, 3, 5, 7) and batch.dtype == np.float32 and batch.flags["C_CONTIGUOUS"]
    expected = (pixels / 255.0 - np.array(prep.mean)) / np.array(prep.std)
    assert np.allclose(batch, expected.transpose(0, 3, 1, 2), atol=1e-5)
