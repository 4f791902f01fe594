"""Phone-like photos of a product made from its studio photo (on white): the real-photo benchmarks' queries.

``phone_photo`` cuts the product out (``product_matte``), turns it a little, puts it on a room photo or a drawn
room corner, or frames it close, and adds what a phone adds: white balance, exposure, vignetting, noise, blur,
JPEG and, for a third, a sideways EXIF orientation. Reproducible from a seed.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

# How each product is photographed; see phone_photo.
VARIANTS = ("room", "home", "close")
QUERY_LONG_SIDE = 1200


def product_matte(photo: Image.Image) -> Image.Image:
    """An "L" mask of the product in a studio photo on white: everything but the near-white area reaching the border.

    White parts inside the product (a white cushion) are not reached from the border and stay in the mask.
    """
    pixels = np.asarray(photo.convert("RGB"), dtype=np.int16)
    near_white = torch.from_numpy((255 - pixels).max(axis=2) < 14)[None, None].float()
    # Grow the border's white area through white pixels until it stops: on a 4x smaller grid (a cell is white
    # when all its pixels are), then a few steps at full size to reach the pixels beside the product.
    coarse_white = -torch.nn.functional.max_pool2d(-near_white, 4, 4, ceil_mode=True)
    reached = torch.zeros_like(coarse_white)
    reached[..., 0, :], reached[..., -1, :], reached[..., :, 0], reached[..., :, -1] = 1, 1, 1, 1
    reached *= coarse_white
    while True:
        grown = torch.nn.functional.max_pool2d(reached, 3, 1, 1) * coarse_white
        if torch.equal(grown, reached):
            break
        reached = grown
    height, width = near_white.shape[-2:]
    reached = reached.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)[..., :height, :width] * near_white
    for _ in range(6):
        reached = torch.nn.functional.max_pool2d(reached, 3, 1, 1) * near_white
    mask = Image.fromarray(((1 - reached[0, 0].numpy()) * 255).astype(np.uint8))
    return mask.filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.GaussianBlur(1.2))


def _perspective_coefficients(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``target`` to input points ``source``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def _viewpoint_warp(image: Image.Image, mask: Image.Image, rng: random.Random) -> tuple[Image.Image, Image.Image]:
    """A perspective warp like a few degrees of turn and tilt: one side nearer, the top or bottom foreshortened."""
    width, height = image.size
    turn, tilt = rng.uniform(-0.12, 0.12), rng.uniform(-0.08, 0.08)
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    moved = [
        (0, height * (max(turn, 0) + max(tilt, 0))), (width, height * (max(-turn, 0) + max(tilt, 0))),
        (width - width * max(-tilt, 0), height - height * max(-turn, 0)), (width * max(-tilt, 0), height - height * max(turn, 0)),
    ]
    moved = [(x + rng.uniform(-0.02, 0.02) * width, y + rng.uniform(-0.02, 0.02) * height) for x, y in moved]
    coefficients = _perspective_coefficients(corners, moved)
    warp = lambda im, fill: im.transform(image.size, Image.PERSPECTIVE, coefficients, Image.BICUBIC, fillcolor=fill)
    return warp(image, (255, 255, 255)), warp(mask, 0)


def _home_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A drawn room corner: a tinted wall, a wooden or tiled floor with perspective lines, a skirting board."""
    width, height = size
    wall = tuple(rng.randrange(150, 245) for _ in range(3))
    floor = (rng.randrange(90, 200), rng.randrange(60, 150), rng.randrange(30, 110))
    image = Image.new("RGB", size, wall)
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.45, 0.7))
    draw.rectangle([0, horizon, width, height], fill=floor)
    for i in range(-12, 13):  # floorboards converging towards a vanishing point
        x = width / 2 + i * width / 6
        draw.line([(width / 2 + i * width / 40, horizon), (x, height)], fill=tuple(max(0, c - 25) for c in floor), width=3)
    draw.rectangle([0, horizon - 12, width, horizon], fill=tuple(min(255, c + 20) for c in wall))
    if rng.random() < 0.5:  # a picture or a window on the wall
        x0, y0 = rng.randrange(width // 2), rng.randrange(max(1, horizon // 3))
        draw.rectangle([x0, y0, x0 + width // 5, y0 + horizon // 3], fill=tuple(rng.randrange(256) for _ in range(3)),
                       outline=(40, 40, 40), width=6)
    return image.filter(ImageFilter.GaussianBlur(1.5))


def _room_background(rooms: list[Path], size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A random crop of a room photo, slightly out of focus (the product is what the camera focused on)."""
    with Image.open(rng.choice(rooms)) as room:
        room = room.convert("RGB")
    width, height = size
    scale = max(width / room.width, height / room.height) * rng.uniform(1.0, 1.6)
    room = room.resize((math.ceil(room.width * scale), math.ceil(room.height * scale)), Image.BILINEAR)
    x0, y0 = rng.randrange(room.width - width + 1), rng.randrange(room.height - height + 1)
    return room.crop((x0, y0, x0 + width, y0 + height)).filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 3.0)))


def phone_photo(product: Image.Image, variant: str, rooms: list[Path], seed: int) -> bytes:
    """A phone-like JPEG of the product in ``product`` (a studio photo on white), made reproducibly from ``seed``.

    ``variant``: "room" pastes the product on a crop of a room photo, "home" on a
    drawn room corner, both at 35-75% of the frame and off centre; "close" fills
    the frame and is cut off at one or two edges. All get a viewpoint-like
    perspective warp, a contact shadow, white balance and exposure changes, a
    little blur, sensor noise and JPEG compression at quality 60-90, and a third
    of them are stored sideways with an EXIF orientation tag, as phones do.
    """
    rng = random.Random(seed)
    product = product.convert("RGB")
    mask = product_matte(product)
    product, mask = _viewpoint_warp(product, mask, rng)
    box = mask.getbbox() or (0, 0, *product.size)
    product, mask = product.crop(box), mask.crop(box)
    portrait = rng.random() < 0.5
    size = (QUERY_LONG_SIDE * 3 // 4, QUERY_LONG_SIDE) if portrait else (QUERY_LONG_SIDE, QUERY_LONG_SIDE * 3 // 4)
    if variant == "room":
        canvas, share = _room_background(rooms, size, rng), rng.uniform(0.35, 0.75)
    elif variant == "home":
        canvas, share = _home_background(size, rng), rng.uniform(0.35, 0.75)
    elif variant == "close":
        canvas, share = _home_background(size, rng), rng.uniform(0.9, 1.2)
    else:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    scale = share * min(size[0] / product.width, size[1] / product.height)
    scaled = (max(1, round(product.width * scale)), max(1, round(product.height * scale)))
    product, mask = product.resize(scaled, Image.LANCZOS), mask.resize(scaled, Image.BILINEAR)
    spare_x, spare_y = size[0] - scaled[0], size[1] - scaled[1]
    if variant == "close":  # partial framing: the product runs off one or two edges
        x = round(rng.uniform(min(spare_x, 0) - 0.1 * scaled[0], max(spare_x, 0) + 0.1 * scaled[0]))
        y = round(rng.uniform(min(spare_y, 0) - 0.1 * scaled[1], max(spare_y, 0) + 0.1 * scaled[1]))
    else:  # off centre, standing in the lower part of the frame
        x = round(rng.uniform(0.1, 0.9) * spare_x)
        y = round(rng.uniform(0.4, 1.0) * spare_y)
    shadow = Image.new("L", size, 0)
    shadow.paste(mask.resize((scaled[0], max(1, scaled[1] // 8))), (x + scaled[0] // 20, y + scaled[1] - scaled[1] // 12))
    canvas = Image.composite(Image.new("RGB", size, (30, 25, 20)), canvas,
                             shadow.filter(ImageFilter.GaussianBlur(12)).point(lambda v: v * 0.5))
    canvas.paste(product, (x, y), mask)
    pixels = np.asarray(canvas, dtype=np.float32)
    gains = np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)], np.float32) * rng.uniform(0.7, 1.2)
    pixels = 255.0 * (np.clip(pixels * gains / 255.0, 0, 1) ** rng.uniform(0.8, 1.25))
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    vignette = 1.0 - rng.uniform(0.1, 0.35) * (((xx / size[0] - 0.5) ** 2 + (yy / size[1] - 0.5) ** 2) * 2)
    pixels *= vignette[..., None]
    pixels += np.random.default_rng(seed).normal(0, rng.uniform(2, 8), pixels.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.6)))
    out = io.BytesIO()
    exif = Image.Exif()
    if rng.random() < 1 / 3:
        # Sensor-oriented pixels plus Orientation 6 ("rotate 90 clockwise to view"), as a phone held upright writes them.
        photo = photo.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    photo.save(out, "JPEG", quality=rng.randrange(60, 91), exif=exif.tobytes())
    return out.getvalue()
