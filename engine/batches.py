"""The unit of indexing work: a batch of catalogue images decoded, their colours found and embedded. The local path
(``engine.indexing``) and the Ray path (``engine.ray_indexing``) both run it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from engine.networks import Backbone
from engine.colours import Colour, dominant_colours
from engine.embed import embed_images
from engine.images import ImageDecodeError, load_image


@dataclass(frozen=True)
class ImageJob:
    """One catalogue image to decode: its colours found, and its embedding unless ``embed`` is False."""

    position: int  # the image's number in the indexing run
    path: str
    embed: bool


@dataclass(frozen=True)
class ImageResult:
    position: int
    vector: np.ndarray | None
    colours: tuple[Colour, ...]
    error: str = ""  # why the image could not be decoded ("" when it was)


def process_batch(jobs: list[ImageJob], backbone: Backbone | None, min_side: int) -> list[ImageResult]:
    """Decode a batch of catalogue images, find their colours and embed them.

    The unit of work of both the local and the Ray path, so that both embed the same batches the same way.
    """
    results, images, embedded = [], [], []
    for job in jobs:
        try:
            image = load_image(job.path, min_side=min_side)
        except ImageDecodeError as error:
            results.append(ImageResult(job.position, None, (), error.fact()))
            continue
        results.append(ImageResult(job.position, None, dominant_colours(image)))
        if job.embed:
            images.append(image)
            embedded.append(len(results) - 1)
    if images:
        for slot, vector in zip(embedded, embed_images(backbone, images)):
            results[slot] = dataclasses.replace(results[slot], vector=vector)
    return results
