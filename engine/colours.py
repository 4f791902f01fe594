"""Colour: a product's dominant colours, colour names, and how well an image matches a colour.

At index time each catalogue image gets the dominant colours of its product (``dominant_colours``):
the background is told apart by the photo's border, then the remaining pixels are clustered in CIELAB.
At search time "refine by colour" adds ``colour_match`` of each image to its look similarity
(``engine.search``). Pure NumPy and Pillow, so that it is usable without the embedding network.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.errors import InvalidRequestError

RGB = tuple[int, int, int]
# Stores record the method their colours were computed with: change it with anything that changes
# ``dominant_colours``, and indexing recomputes the colours (the vectors are kept).
COLOUR_METHOD = 1

# Names a shopper may type or pick, with common reference values (CSS / Wikipedia colour tables), not the
# values the bundled catalogue was recoloured with. Ordered roughly around the colour wheel, then neutrals.
NAMED_COLOURS: dict[str, RGB] = {
    "red": (190, 30, 45),
    "orange": (240, 120, 30),
    "mustard": (225, 173, 1),
    "yellow": (250, 218, 60),
    "green": (50, 140, 60),
    "teal": (0, 128, 128),
    "blue": (40, 90, 200),
    "navy": (20, 30, 90),
    "purple": (110, 50, 150),
    "pink": (240, 150, 180),
    "brown": (120, 75, 40),
    "beige": (215, 195, 160),
    "cream": (250, 245, 215),
    "white": (245, 245, 245),
    "grey": (150, 150, 150),
    "charcoal": (54, 69, 79),
    "black": (20, 20, 20),
}

# Thumbnail side the colours are computed at: enough pixels for a few colours, and ~1 ms an image.
SIDE = 64
# A border counts as plain background when this share of its pixels is within BACKGROUND_DISTANCE of its median.
PLAIN_BORDER_SHARE = 0.6
BACKGROUND_DISTANCE = 12.0
CLUSTERS = 5
MERGE_DISTANCE = 12.0
MAX_COLOURS = 3
MIN_SHARE = 0.08


@dataclass(frozen=True)
class Colour:
    """One of an image's dominant colours: its sRGB hex code and the share of the product's pixels it covers."""

    hex: str
    share: float

    @property
    def name(self) -> str:
        return colour_name(hex_to_rgb(self.hex))


def colours_json(colours: tuple[Colour, ...]) -> list[dict]:
    """Colours as the CLI and the HTTP API print them."""
    return [{"hex": colour.hex, "name": colour.name, "share": colour.share} for colour in colours]


def hex_to_rgb(code: str) -> RGB:
    code = code.lstrip("#")
    if len(code) == 3:
        code = "".join(2 * c for c in code)
    return int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16)


def rgb_to_hex(rgb) -> str:
    return "#" + "".join(f"{int(round(min(255, max(0, c)))):02x}" for c in rgb)


def parse_colour(text: str) -> RGB:
    """A colour a person asked for, by name (``NAMED_COLOURS``) or hex code (#rgb or #rrggbb); else
    ``InvalidRequestError`` listing the names."""
    value = str(text).strip().lower()
    if value in NAMED_COLOURS:
        return NAMED_COLOURS[value]
    if re.fullmatch(r"#?([0-9a-f]{3}|[0-9a-f]{6})", value):
        return hex_to_rgb(value)
    raise InvalidRequestError(
        f"unknown colour {text!r}; give a hex code such as #2d55a0 or one of: {', '.join(NAMED_COLOURS)}"
    )


def _linearised(c: np.ndarray) -> np.ndarray:
    """sRGB's transfer curve undone: values in [0, 1] to linear light."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# The curve for each 8-bit value, once: a photo's pixels (indexing finds every catalogue image's colours) are then
# converted by a lookup, to the same values.
_LINEAR_8BIT = _linearised(np.arange(256) / 255.0)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values [..., 3] (0-255) to CIELAB (D65)."""
    rgb = np.asarray(rgb)
    linear = _LINEAR_8BIT[rgb] if rgb.dtype == np.uint8 else _linearised(rgb.astype(np.float64) / 255.0)
    xyz = linear @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_distance(sample: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """CIE94 colour difference of CIELAB colours from a reference, with the textile weights.

    Lightness counts half (shading makes one fabric light and dark at once), and chroma and hue differences
    shrink as the reference's chroma grows: a washed-out blue is still nearer "blue" than "charcoal".
    """
    sample, reference = np.asarray(sample, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    difference = sample - reference
    chroma_sample = np.hypot(sample[..., 1], sample[..., 2])
    chroma_reference = np.hypot(reference[..., 1], reference[..., 2])
    delta_chroma = chroma_sample - chroma_reference
    delta_hue_squared = np.maximum(0.0, difference[..., 1] ** 2 + difference[..., 2] ** 2 - delta_chroma**2)
    chroma = np.sqrt(chroma_sample * chroma_reference)
    return np.sqrt(
        (difference[..., 0] / 2.0) ** 2
        + (delta_chroma / (1 + 0.048 * chroma)) ** 2
        + delta_hue_squared / (1 + 0.014 * chroma) ** 2
    )


def _delta_e76(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain CIELAB distance, for telling pixels apart (background, clusters)."""
    return np.sqrt(((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2).sum(axis=-1))


_NAMED_LAB = rgb_to_lab(np.array(list(NAMED_COLOURS.values())))


@functools.lru_cache(maxsize=4096)
def colour_name(rgb: RGB) -> str:
    """The name in ``NAMED_COLOURS`` nearest to ``rgb`` (remembered: an API answer names every result's colours,
    ~0.1 ms each, and a catalogue's products share them)."""
    distances = lab_distance(rgb_to_lab(np.array(rgb))[None], _NAMED_LAB)
    return list(NAMED_COLOURS)[int(distances.argmin())]


def _product_pixels(image: Image.Image) -> np.ndarray:
    """The CIELAB pixels of a small copy of ``image`` that belong to the product, not the background.

    When the border is plain (a product shot on a backdrop), pixels close to the border's colour are the
    background; otherwise (a photo taken in a room) the central half of the frame is kept instead.
    """
    # Nearest samples: averaging would invent blends of the product and the backdrop along its edges.
    small = image.convert("RGB").resize((SIDE, SIDE), Image.NEAREST)
    lab = rgb_to_lab(np.asarray(small))
    border = np.concatenate([lab[:2].reshape(-1, 3), lab[-2:].reshape(-1, 3), lab[:, :2].reshape(-1, 3), lab[:, -2:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    if (_delta_e76(border, background) < BACKGROUND_DISTANCE).mean() >= PLAIN_BORDER_SHARE:
        foreground = _delta_e76(lab, background) >= BACKGROUND_DISTANCE
        if foreground.mean() >= 0.02:
            return lab[foreground]
    quarter = SIDE // 4
    return lab[quarter : SIDE - quarter, quarter : SIDE - quarter].reshape(-1, 3)


def _kmeans(points: np.ndarray, clusters: int, iterations: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Centres and sizes of a deterministic k-means (farthest-point start) over ``points``.

    Squared distances from coordinate planes: the same nearest centres as ``_delta_e76`` (on 1,302 catalogue and
    room images the same centres and sizes), at 1.1 ms an image against 2.4 ms.
    """
    points = np.asarray(points, dtype=np.float64)
    planes = np.ascontiguousarray(points.T)

    def squared_distances(centre: np.ndarray) -> np.ndarray:
        d0, d1, d2 = planes[0] - centre[0], planes[1] - centre[1], planes[2] - centre[2]
        return d0 * d0 + d1 * d1 + d2 * d2

    def nearest_centres(centres: np.ndarray) -> np.ndarray:
        # Every centre at once, summed in squared_distances' order (the same values): 0.3-0.4 ms an image less.
        d = planes[:, None, :] - centres.T[:, :, None]
        d *= d
        return (d[0] + d[1] + d[2]).argmin(axis=0)

    centres = [points[np.argmin(squared_distances(np.median(points, axis=0)))]]
    nearest = squared_distances(centres[0])
    for _ in range(1, min(clusters, len(points))):
        centres.append(points[int(nearest.argmax())])
        nearest = np.minimum(nearest, squared_distances(centres[-1]))
    centres = np.array(centres)
    labels = None
    for _ in range(iterations):
        assigned = nearest_centres(centres)
        if labels is not None and np.array_equal(assigned, labels):
            break  # converged: the remaining steps would give these centres again
        labels = assigned
        counts = np.bincount(labels, minlength=len(centres))
        sums = np.stack([np.bincount(labels, planes[axis], len(centres)) for axis in range(3)], axis=1)
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
    return centres, np.bincount(nearest_centres(centres), minlength=len(centres))


def _merge_close(centres: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clusters closer than ``MERGE_DISTANCE`` as one (k-means splits one flat colour and its edges in several)."""
    centres, sizes = list(centres), list(sizes)
    while len(centres) > 1:
        pairs = [(float(_delta_e76(centres[i], centres[j])), i, j)
                 for i in range(len(centres)) for j in range(i + 1, len(centres))]
        distance, i, j = min(pairs)
        if distance >= MERGE_DISTANCE:
            break
        total = sizes[i] + sizes[j]
        centres[i] = (centres[i] * sizes[i] + centres[j] * sizes[j]) / total
        sizes[i] = total
        del centres[j], sizes[j]
    return np.array(centres), np.array(sizes)


def dominant_colours(image: Image.Image) -> tuple[Colour, ...]:
    """The product's main colours in ``image`` (up to ``MAX_COLOURS``, each covering at least ``MIN_SHARE``
    of its pixels), largest first."""
    pixels = _product_pixels(image)
    centres, sizes = _kmeans(pixels, CLUSTERS)
    centres, sizes = _merge_close(centres, sizes.astype(np.float64))
    shares = sizes / max(1, sizes.sum())
    order = [i for i in np.argsort(-shares) if shares[i] >= MIN_SHARE][:MAX_COLOURS]
    return tuple(Colour(rgb_to_hex(lab_to_rgb(centres[i])), round(float(shares[i]), 3)) for i in order)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) to sRGB 0-255, the inverse of ``rgb_to_lab``."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f**3 > 216 / 24389, f**3, (116 * f - 16) / (24389 / 27)) * np.array([0.95047, 1.0, 1.08883])
    linear = xyz @ np.linalg.inv(np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]]))
    linear = np.clip(linear, 0, 1)
    return 255 * np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def colour_table(colours_per_image: list[tuple[Colour, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """The CIELAB values [N, MAX_COLOURS, 3] and shares [N, MAX_COLOURS] of many images' colours (zero-padded),
    so that ``table_match`` scores a whole catalogue at once."""
    rgb = np.zeros((len(colours_per_image), MAX_COLOURS, 3))
    shares = np.zeros((len(colours_per_image), MAX_COLOURS))
    for row, colours in enumerate(colours_per_image):
        for slot, colour in enumerate(colours[:MAX_COLOURS]):
            rgb[row, slot] = hex_to_rgb(colour.hex)
            shares[row, slot] = colour.share
    return rgb_to_lab(rgb), shares  # converted at once: a million images' colours in seconds


def table_match(labs: np.ndarray, shares: np.ndarray, target: RGB, width: float) -> np.ndarray:
    """How much of each image's product is the colour ``target``, 0 to 1: each dominant colour's share, weighted
    by how close it is to ``target`` (a Gaussian of ``width`` CIE94 units)."""
    distances = lab_distance(labs, rgb_to_lab(np.array(target)))
    return (shares * np.exp(-0.5 * (distances / width) ** 2)).sum(axis=-1)


def colour_match(colours: tuple[Colour, ...], target: RGB, width: float) -> float:
    """``table_match`` for one image's colours."""
    return float(table_match(*colour_table([colours]), target, width)[0])


def colours_present(colours_per_image: list[tuple[Colour, ...]], limit: int = 8) -> list[str]:
    """The names of the colours shown by a list of images (a page of results), the most common first: each
    image's colours count by their share, and a name counts once it makes up a fifth of one image."""
    totals: dict[str, float] = {}
    for colours in colours_per_image:
        for colour in colours:
            totals[colour.name] = totals.get(colour.name, 0.0) + colour.share
    return [name for name, total in sorted(totals.items(), key=lambda pair: -pair[1]) if total >= 0.2][:limit]
