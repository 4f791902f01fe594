"""Decode and preprocess: turn what a user sends into a model-ready tensor.

This is the first pipeline stage. ``Preprocessing`` describes how one backbone
wants its input; ``preprocess`` applies it to already-decoded RGB images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

# Letterbox fill: catalogue photos are shot on white, so padding with white adds nothing new.
PAD_COLOUR = (255, 255, 255)


@dataclass(frozen=True)
class Preprocessing:
    """How a backbone wants its input image.

    ``fit`` says how a non-square image becomes ``size`` x ``size``:
    ``"pad"`` keeps the whole image and letterboxes it on white,
    ``"crop"`` resizes the shorter side and takes the centre,
    ``"squash"`` resizes both sides, distorting the aspect ratio.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fit: str = "pad"


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


def preprocess(images: Sequence[Image.Image], prep: Preprocessing) -> torch.Tensor:
    """Stack RGB PIL images into a normalised float tensor of shape [N, 3, size, size]."""
    arrays = [np.asarray(fit_square(image.convert("RGB"), prep.size, prep.fit)) for image in images]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    return batch.sub_(mean).div_(std).contiguous()
