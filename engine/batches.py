"""The unit of indexing work: a batch of catalogue images decoded, their colours found and embedded in one pass
of the network. The local path (``engine.indexing``) and the Ray path (``engine.ray_indexing``) both run it."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from engine.backbones import FeatureExtractor
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


@dataclass
class DecodedBatch:
    """A batch after its first stage: each image's result so far, and the decoded images to embed."""

    results: list[ImageResult]
    images: list  # PIL images to embed
    slots: list[int]  # each image's place in ``results``


def decode_batch(jobs: list[ImageJob], min_side: int) -> DecodedBatch:
    """The first stage: decode each image and find its colours (no network)."""
    results, images, slots = [], [], []
    for job in jobs:
        try:
            image = load_image(job.path, min_side=min_side)
        except ImageDecodeError as error:
            results.append(ImageResult(job.position, None, (), error.fact()))
            continue
        results.append(ImageResult(job.position, None, dominant_colours(image)))
        if job.embed:
            images.append(image)
            slots.append(len(results) - 1)
    return DecodedBatch(results, images, slots)


def embed_batch(decoded: DecodedBatch, extractor: FeatureExtractor | None) -> list[ImageResult]:
    """The second stage: embed the decoded images in one pass of the network."""
    results = decoded.results
    if decoded.images:
        for slot, vector in zip(decoded.slots, embed_images(extractor, decoded.images, batch_size=len(decoded.images))):
            results[slot] = dataclasses.replace(results[slot], vector=vector)
    return results


def process_batch(jobs: list[ImageJob], extractor: FeatureExtractor | None, min_side: int) -> list[ImageResult]:
    """Decode a batch of catalogue images, find their colours and embed them in one pass of the network.

    The unit of work of both the local and the Ray path, so that both embed the same batches the same way.
    """
    return embed_batch(decode_batch(jobs, min_side), extractor)


def process_batches(batches: list[list[ImageJob]], extractor: FeatureExtractor | None,
                    min_side: int) -> Iterator[list[ImageResult]]:
    """``process_batch`` over the batches in order, the next batch decoded on another thread while this one is
    embedded (decoding and finding colours is a third of an image's cost, and PIL and NumPy release the GIL)."""
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder:
        upcoming = decoder.submit(decode_batch, batches[0], min_side)
        for following in [*batches[1:], None]:
            decoded = upcoming.result()
            if following is not None:
                upcoming = decoder.submit(decode_batch, following, min_side)
            yield embed_batch(decoded, extractor)
