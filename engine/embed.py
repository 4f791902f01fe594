"""Turn decoded images into unit-length embedding vectors with a backbone."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from engine.images import preprocess
from engine.networks import Backbone, pass_size
from engine.vectors import normalise


def embed_batch(backbone: Backbone, batch: np.ndarray) -> np.ndarray:
    """Embed an already preprocessed batch [N, 3, S, S]; returns [N, D] unit vectors."""
    return normalise(backbone.embed(batch))


def embed_images(backbone: Backbone, images: Sequence[Image.Image]) -> np.ndarray:
    """Embed RGB images, ``pass_size()`` to a network pass; returns a float32 array [len(images), feature_dim] of
    unit vectors."""
    prep, batch_size = backbone.spec.preprocessing, pass_size()
    chunks = [
        embed_batch(backbone, preprocess(images[start : start + batch_size], prep))
        for start in range(0, len(images), batch_size)
    ]
    if not chunks:
        return np.zeros((0, backbone.spec.feature_dim), np.float32)
    return np.concatenate(chunks)
