"""Decode and preprocess: turn what a user sends into a model-ready tensor.

This is the first pipeline stage. ``load_image`` turns an upload (path, bytes,
file object or PIL image) into a correctly oriented RGB image, or raises
``ImageDecodeError`` with a message fit to show the user. ``Preprocessing``
describes how one backbone wants its input; ``preprocess`` applies it to
decoded RGB images.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
from PIL import Image, ImageOps

from engine.backbone_specs import Preprocessing
from engine.errors import InvalidRequestError, TooLargeError

try:
    import pillow_heif
except ImportError:  # HEIC uploads then get a message of their own, see _unidentified_error
    pillow_heif = None
else:
    pillow_heif.register_heif_opener()

# Key of ``Image.info`` where load_image records the image's size before draft decoding or shrinking.
FULL_SIZE = "furniture_search_full_size"
# Letterbox fill: catalogue photos are shot on white, so padding with white adds nothing new.
PAD_COLOUR = (255, 255, 255)


def fit_square(image: Image.Image, size: int, fit: str) -> Image.Image:
    """Resize an RGB image to ``size`` x ``size`` following ``fit`` (see ``Preprocessing``)."""
    width, height = image.size
    if fit == "squash":
        return image.resize((size, size), Image.BILINEAR, reducing_gap=3.0)
    if fit == "crop":
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        resized = image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return resized.crop((left, top, left + size, top + size))
    if fit == "pad":
        scale = size / max(width, height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0)
        canvas = Image.new("RGB", (size, size), PAD_COLOUR)
        canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
        return canvas
    raise ValueError(f"unknown fit {fit!r}; expected 'pad', 'crop' or 'squash'")


def preprocess(images: Sequence[Image.Image], prep: Preprocessing) -> np.ndarray:
    """Stack RGB PIL images into a normalised float32 batch [N, 3, size, size]."""
    return normalised_batch(np.stack([np.asarray(fit_square(image.convert("RGB"), prep.size, prep.fit))
                                      for image in images]), prep)


def normalised_batch(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """RGB pixels [N, H, W, 3] in 0-255 as the network's input [N, 3, H, W]: scaled to 0-1, less the mean, over the
    standard deviation."""
    scale = 1.0 / (255.0 * np.asarray(prep.std, np.float32))
    offset = np.asarray(prep.mean, np.float32) / np.asarray(prep.std, np.float32)
    # The bytes are put in channel order first: transposing floats four times their size, after the arithmetic,
    # took 8x as long (a 640 x 480 photo: 5.5 ms against 0.7; the same values).
    planar = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    batch = np.multiply(planar, scale[None, :, None, None], dtype=np.float32)
    return np.subtract(batch, offset[None, :, None, None], out=batch)


class ImageDecodeError(InvalidRequestError):
    """An upload that cannot be turned into an image; ``str(error)`` is meant for the end user."""

    def fact(self) -> str:
        """What is wrong with the file, without the advice to the person uploading it (its first sentence):
        how indexing lists a skipped catalogue file."""
        return str(self).split(". ")[0].rstrip(".")


class ImageTooLargeError(ImageDecodeError, TooLargeError):
    """A file or an image over the size or pixel limits."""


# Upload cap: phone photos are 2-15 MB, 108 MP camera shots about 30 MB.
MAX_FILE_BYTES = 40_000_000
# Covers 108 MP phone sensors; beyond this a "photo" is almost certainly a decompression bomb.
MAX_PIXELS = 120_000_000
# Pillow's own guard, which raises DecompressionBombError above twice MAX_IMAGE_PIXELS while
# reading the header, then stops at MAX_PIXELS too, for every decoder in the process (Gradio's
# image editor opens uploads itself). Its warning between the two limits is noise for photos.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Formats a photo arrives in, with the names users know them by. Pillow can open many
# more (EPS through Ghostscript, PSD, FITS, ...), but each extra decoder is attack
# surface for untrusted uploads and none of them holds a furniture photo.
_FORMAT_NAMES = {
    "JPEG": "JPEG",  # also opens multi-picture (MPO) JPEGs, as many cameras write them
    "PNG": "PNG",
    "WEBP": "WebP",
    "HEIF": "HEIC",
    "AVIF": "AVIF",
    "GIF": "GIF",
    "BMP": "BMP",
    "TIFF": "TIFF",
}
Image.init()  # registers every plugin, so OPEN lists what this install can decode
# Image.open raises KeyError for a format it has no plugin for, so keep only the installed ones.
_OPEN_FORMATS = tuple(name for name in _FORMAT_NAMES if name in Image.OPEN)

# ISO-BMFF brands of HEIF files (what an iPhone writes), read from bytes 8-12 after "ftyp".
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}


def load_image(
    source: str | os.PathLike[str] | bytes | BinaryIO | Image.Image,
    *,
    min_side: int | None = None,
    max_side: int | None = None,
) -> Image.Image:
    """Decode ``source`` into a fully loaded, upright RGB image.

    ``source`` is a path, the file's bytes, a binary file object (read from its
    current position, left open) or a PIL image (only converted to RGB). EXIF
    orientation is applied, transparency is flattened onto white, and palette,
    grey, 16-bit, float and CMYK images become RGB. Animations give their first frame.

    With ``min_side``, large JPEGs (and HEIC files with an embedded thumbnail) are
    decoded at a reduced scale whose shorter side is still at least ``min_side``,
    which is several times faster; other formats are decoded in full.

    With ``max_side``, the result is then shrunk to fit within ``max_side`` pixels
    (bounding the work and memory of whatever follows). ``full_size(result)`` is the
    upright size of the image as stored, before either reduction.

    Raises ``ImageDecodeError``, whose message says what is wrong and what to do,
    for a missing path, a folder, an empty, oversized, damaged or non-image file,
    and for images of more than ``MAX_PIXELS`` pixels.
    """
    for name, side in (("min_side", min_side), ("max_side", max_side)):
        if side is not None and side < 1:
            raise ValueError(f"{name} must be a positive number of pixels, got {side}")
    if isinstance(source, Image.Image):
        image = _convert_given(source)
        image.info.setdefault(FULL_SIZE, image.size)
    elif isinstance(source, (bytes, bytearray)):
        _check_file_size(len(source))
        image = _decode(io.BytesIO(source), min_side)
    elif isinstance(source, (str, os.PathLike)):
        with _open_path(Path(source)) as stream:
            image = _decode(stream, min_side)
    elif hasattr(source, "read"):
        # Read into memory: Pillow needs a seekable stream, and reading one byte past
        # the cap tells an oversized upload apart without trusting seek/tell.
        data = source.read(MAX_FILE_BYTES + 1)
        if not isinstance(data, bytes):
            raise TypeError("load_image needs a file opened in binary mode ('rb')")
        _check_file_size(len(data) if len(data) <= MAX_FILE_BYTES else None)
        image = _decode(io.BytesIO(data), min_side)
    else:
        raise TypeError(f"load_image cannot read a {type(source).__name__}; pass a path, bytes, a file or a PIL image")
    if max_side is not None and max(image.size) > max_side:
        size = image.info[FULL_SIZE]
        image.thumbnail((max_side, max_side), Image.BILINEAR, reducing_gap=3.0)
        image.info[FULL_SIZE] = size
    return image


def full_size(image: Image.Image) -> tuple[int, int]:
    """The upright (width, height) of the file ``image`` was decoded from by ``load_image``, before any reduction."""
    return image.info.get(FULL_SIZE, image.size)


def _open_path(path: Path) -> BinaryIO:
    """Open ``path`` for reading after checking it is a non-empty file within the size cap."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ImageDecodeError(f"No file found at '{path}'. Please check the path and try again.") from None
    except OSError as error:
        raise ImageDecodeError(_unreadable_message(path)) from error
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError(f"'{path}' is a folder, not an image file. Please choose an image file inside it.")
    if not stat.S_ISREG(info.st_mode):
        # A device or pipe: its size says nothing, and reading it could block or never end.
        raise ImageDecodeError(f"'{path}' is not a regular file (a device or pipe). Please choose an image file.")
    _check_file_size(info.st_size)
    try:
        return open(path, "rb")
    except OSError as error:
        raise ImageDecodeError(_unreadable_message(path)) from error


def _unreadable_message(path: Path) -> str:
    return f"The file '{path}' could not be opened. Please check that it exists and that you may read it."


def _check_file_size(size: int | None) -> None:
    """Reject empty files and files over ``MAX_FILE_BYTES``; ``None`` means "over the cap, size unknown"."""
    if size == 0:
        raise ImageDecodeError("The file is empty (0 bytes). Please choose the photo again and re-upload it.")
    if size is None or size > MAX_FILE_BYTES:
        actual = f" ({_megabytes(size)})" if size is not None else ""
        raise ImageTooLargeError(
            f"The file is too big{actual}. The limit is {_megabytes(MAX_FILE_BYTES)}; "
            "please upload a smaller or more compressed photo."
        )


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.3g} MB"


def _too_large_message(size: tuple[int, int] | None = None) -> str:
    actual = f" ({size[0]} x {size[1]} pixels)" if size else ""
    return (
        f"The image is too large{actual}. Images up to {MAX_PIXELS / 1_000_000:g} megapixels are supported; "
        "please resize it and try again."
    )


_DAMAGED_MESSAGE = (
    "The image file is damaged or incomplete, so it cannot be read. "
    "Please upload it again, or try a different photo."
)


def _decode(stream: BinaryIO, min_side: int | None) -> Image.Image:
    """Decode the image in ``stream`` (seekable, at the file's start); the stream stays open."""
    head = stream.read(16)
    stream.seek(0)
    try:
        # The with block releases the decoder's buffers; the result below is a new image.
        with Image.open(stream, formats=_OPEN_FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageTooLargeError(_too_large_message(image.size))
            stored = image.size
            if min_side is not None:
                # Pillow picks the largest JPEG DCT scale (1/2, 1/4, 1/8) that keeps both
                # sides at least the requested size. A square request means "shorter side
                # >= min_side" whichever way the photo is rotated by its EXIF orientation.
                image.draft("RGB", (min_side, min_side))
            image.load()
            upright = _to_rgb(_upright(image))
            # The draft scale is the same on both sides; a transposing EXIF orientation swaps them.
            turned = (upright.width > upright.height) != (image.width > image.height)
            upright.info[FULL_SIZE] = stored[::-1] if turned else stored
            return upright
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(_too_large_message()) from error
    except Image.UnidentifiedImageError as error:
        raise _unidentified_error(head) from error
    except MemoryError as error:
        raise ImageTooLargeError(_too_large_message()) from error
    except Exception as error:
        # Decoders fail on broken data in many ways (OSError "image file is truncated",
        # SyntaxError, EOFError, struct.error, zlib errors, ...); for the user they all
        # mean the same thing. The original stays chained for the logs.
        raise ImageDecodeError(_DAMAGED_MESSAGE) from error


def _unidentified_error(head: bytes) -> ImageDecodeError:
    """Explain why no decoder accepted a file whose first bytes are ``head``."""
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        if "HEIF" not in _OPEN_FORMATS:
            return ImageDecodeError(
                "HEIC photos (the iPhone default) cannot be read here. Please export the photo "
                "as JPEG (on iPhone: Settings > Camera > Formats > Most Compatible) and try again."
            )
        return ImageDecodeError(_DAMAGED_MESSAGE)
    if _looks_like_image(head):
        # A known image signature that no decoder would take: the header itself is broken.
        return ImageDecodeError(_DAMAGED_MESSAGE)
    names = [_FORMAT_NAMES[name] for name in _OPEN_FORMATS]
    return ImageDecodeError(
        "This file is not a supported image. Please upload a photo in "
        f"{', '.join(names[:-1])} or {names[-1]} format."
    )


def _looks_like_image(head: bytes) -> bool:
    """Whether ``head`` starts like a JPEG, PNG, GIF, WebP, AVIF, BMP or TIFF file."""
    signatures = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
    return (
        head.startswith(signatures)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"))
    )


def _upright(image: Image.Image) -> Image.Image:
    """Return a new image turned as its EXIF orientation says (phones store photos sideways)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        # A malformed EXIF block should not cost the user an otherwise good photo.
        return image.copy()


def _convert_given(image: Image.Image) -> Image.Image:
    """Convert a caller's PIL image to RGB without modifying it."""
    try:
        image.load()  # an image from Image.open is lazy, and its file may be broken
        rgb = _to_rgb(image)
    except ImageDecodeError:
        raise
    except Exception as error:
        raise ImageDecodeError(_DAMAGED_MESSAGE) from error
    return rgb.copy() if rgb is image else rgb


def _to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` as RGB: transparency flattened onto white, high bit depths scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _grey_to_rgb(image)
    if image.has_transparency_data:
        # Covers RGBA, LA, PA, palette and colour-key (tRNS) transparency alike. White
        # because catalogue photos are shot on white, like the letterbox in fit_square.
        background = Image.new("RGBA", image.size, PAD_COLOUR)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    try:
        # 1, L, P, CMYK (Pillow already un-inverts Adobe CMYK JPEGs), YCbCr, ...
        return image.convert("RGB")
    except ValueError as error:
        raise ImageDecodeError(
            "This image uses a colour format that is not supported. "
            "Please save it as an ordinary JPEG or PNG and try again."
        ) from error


def _grey_to_rgb(image: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float grey image to 8 bits and return it as RGB.

    Pillow's own conversion clips these to 0..255, which turns a 16-bit photo white.
    """
    pixels = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if image.mode.startswith("I;16"):
        scale = 255 / 65535
    elif image.mode == "I":
        # 32-bit integers hold whatever the file had: 16-bit PNG/PGM/TIFF data
        # usually, plain 8-bit values sometimes; any value above 255 tells them apart.
        scale = 255 / 65535 if pixels.max() > 255 else 1.0
    else:  # "F": floats are 0..1 by convention, or 0..255
        scale = 255.0 if pixels.max() <= 1.0 else 1.0
    grey = np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")
