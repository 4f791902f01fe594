"""Why a result matched: which parts of the photo look like the product, and which parts of the product like the photo.

No extra model: each image's feature map (the backbone's embedding layer, one cell per 32 px, as in region
proposal) is compared cell by cell with the *other* image's embedding. A cell is warm where what it shows is
what the other image, as a whole, looks like to the search. It shows similarity as the search sees it, not a
guarantee that the parts are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.networks import Backbone
from engine.vectors import normalise
from engine.window_features import proposal_feature_map

# Longer side the images are looked at for the maps: 14 cells across, enough to point at a part.
EXPLAIN_SIDE = 448
# The warm colour of the overlays (RGB) and its strongest opacity.
HEAT_COLOUR = (255, 60, 0)
HEAT_OPACITY = 0.65


@dataclass(frozen=True)
class MatchExplanation:
    """The two images of a match and, per cell of each, in [0, 1], how much that part looks like the other image
    (1: the warmest part)."""

    photo: Image.Image
    product: Image.Image
    photo_heat: np.ndarray  # [h, w] over the photo
    product_heat: np.ndarray  # [h, w] over the product's image


def cell_heat(backbone: Backbone, image: Image.Image, other: np.ndarray) -> np.ndarray:
    """How much each cell of ``image`` looks like the unit embedding ``other``: cosine, negatives at 0, scaled so
    that the warmest cell is 1."""
    cells, _, _ = proposal_feature_map(backbone, image, EXPLAIN_SIDE)
    flat = normalise(cells.reshape(-1, cells.shape[-1]))
    heat = np.clip(flat @ other, 0.0, None).reshape(cells.shape[:2])
    return heat / max(float(heat.max()), 1e-6)


def explain_match(backbone: Backbone, photo: Image.Image, photo_vector: np.ndarray,
                  product: Image.Image, product_vector: np.ndarray) -> MatchExplanation:
    """The two heat maps of a match: the photo's cells against the product's embedding, and the other way round."""
    return MatchExplanation(photo, product, cell_heat(backbone, photo, product_vector),
                            cell_heat(backbone, product, photo_vector))


def heat_overlay(image: Image.Image, heat: np.ndarray) -> Image.Image:
    """``image`` (RGB) with ``heat`` [h, w] painted over it, smoothly upscaled to its size."""
    rgb = image.convert("RGB")
    levels = Image.fromarray(np.uint8(np.clip(heat, 0.0, 1.0) * 255)).resize(rgb.size, Image.BICUBIC)
    alpha = levels.point(lambda value: round(value * HEAT_OPACITY))
    return Image.composite(Image.new("RGB", rgb.size, HEAT_COLOUR), rgb, alpha)
