"""Domain-randomised views of a product photo or render, for teaching an embedding what varies for one product.

A view cuts the product out of its plain backdrop, mirrors it or not, and puts it on another plain backdrop or
in a drawn room (``buildtime.scenes.draw_room``) at 40-115% of the frame, off centre or cut off at an edge;
another product may stand in front of it; then white balance, exposure, contrast, colourfulness, blur, sensor
noise and JPEG compression vary. Everything is drawn here: no photo of anyone else's is needed, so views of the
bundled renders may be shipped in whatever they train, and a shop's own photos can be varied at index time.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter

from buildtime.scenes import draw_room

VIEW_SIDE = 320  # the longer side of a view; the backbone sees 224 px


def cut_out(photo: Image.Image) -> Image.Image:
    """An RGBA cut-out of a product on a plain backdrop (the colour of the photo's corners), cropped to the product."""
    rgb = np.asarray(photo.convert("RGB"), dtype=np.float32)
    backdrop = np.stack([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]]).mean(axis=0)
    # A soft edge: pixels 6 levels off the backdrop start to count, 16 levels off count fully.
    alpha = np.clip((np.abs(rgb - backdrop).max(axis=2) - 6) / 10, 0, 1)
    mask = Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.MedianFilter(3))
    cut = photo.convert("RGB")
    cut.putalpha(mask)
    box = mask.point(lambda a: 255 if a > 24 else 0).getbbox()
    return cut.crop(box) if box else cut


def _backdrop(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    kind = rng.random()
    if kind < 0.25:  # a studio's near-white
        grey = rng.randint(200, 255)
        return Image.new("RGB", size, tuple(min(255, grey + rng.randint(-8, 8)) for _ in range(3)))
    if kind < 0.4:  # a coloured wall
        return Image.new("RGB", size, tuple(rng.randint(40, 240) for _ in range(3)))
    room, _ = draw_room(rng, (640, 480))
    return room.resize(size)


def _place(canvas: Image.Image, cut: Image.Image, rng: random.Random) -> tuple[int, int, int, int]:
    """Paste ``cut`` at 40-115% of the frame, off centre (a large one cut off at an edge); its box."""
    width, height = canvas.size
    share = rng.uniform(0.4, 1.15)
    scale = share * min(width / cut.width, height / cut.height)
    piece = cut.resize((max(8, round(cut.width * scale)), max(8, round(cut.height * scale))), Image.BILINEAR)
    overhang = 0.1 * piece.width if share > 0.9 else 0.0
    x = round(rng.uniform(min(0, width - piece.width) - overhang, max(0, width - piece.width) + overhang))
    y = round(rng.uniform(min(0, height - piece.height), max(0, height - piece.height)))
    canvas.paste(piece.convert("RGB"), (x, y), piece.getchannel("A"))
    return x, y, x + piece.width, y + piece.height


def _degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """A phone's capture: colour cast, exposure and contrast, sometimes duller colours, blur, noise, JPEG."""
    pixels = np.asarray(image, dtype=np.float32) / 255
    gains = np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)], np.float32) * rng.uniform(0.7, 1.25)
    pixels = np.clip(pixels * gains, 0, 1) ** rng.uniform(0.8, 1.25)
    if rng.random() < 0.3:
        dull = rng.uniform(0, 0.5)
        pixels = pixels * (1 - dull) + pixels.mean(axis=2, keepdims=True) * dull
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(1, 6), pixels.shape)
    image = Image.fromarray(np.clip(pixels * 255 + noise, 0, 255).astype(np.uint8))
    if rng.random() < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(50, 92))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def domain_view(cut: Image.Image, others: list[Image.Image], rng: random.Random) -> Image.Image:
    """One randomised view of the cut-out ``cut``; one of ``others`` (cut-outs) may stand in front of it."""
    portrait = rng.random() < 0.5
    size = (VIEW_SIDE * 3 // 4, VIEW_SIDE) if portrait else (VIEW_SIDE, VIEW_SIDE * 3 // 4)
    canvas = _backdrop(rng, size)
    if rng.random() < 0.5:
        cut = cut.transpose(Image.FLIP_LEFT_RIGHT)
    x0, _, x1, _ = _place(canvas, cut, rng)
    if others and rng.random() < 0.35:  # another piece of furniture in front, at one side
        other = rng.choice(others)
        scale = rng.uniform(0.3, 0.6) * min(size[0] / other.width, size[1] / other.height)
        other = other.resize((max(8, round(other.width * scale)), max(8, round(other.height * scale))), Image.BILINEAR)
        canvas.paste(other.convert("RGB"), (rng.choice([x0, x1]) - other.width // 2, size[1] - other.height),
                     other.getchannel("A"))
    return _degrade(canvas, rng)
