"""Turn decoded images into unit-length embedding vectors with a backbone."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from engine.backbones import FeatureExtractor
from engine.images import preprocess


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise vectors along the last axis so that a dot product is the cosine similarity."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def dot_products(vectors: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Dot products of vectors [..., C] with each of others [N, C]: [..., N] float32.

    Computed by torch rather than numpy: after a product numpy's OpenBLAS threads
    keep spinning for a while and take the cores from the next backbone pass (a
    640 px proposal pass went from 65 to 140 ms after a [500, 1280] x [1280, 5] product).
    """
    with warnings.catch_warnings():
        # A store's vectors are memory-mapped read-only (engine.index_store); torch only reads them here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        left = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        right = torch.from_numpy(np.ascontiguousarray(others, dtype=np.float32))
    return (left @ right.T).numpy()


def embed_batch(extractor: FeatureExtractor, batch: torch.Tensor) -> np.ndarray:
    """Embed an already preprocessed batch [N, 3, S, S]; returns [N, D] unit vectors."""
    # Channels-last (NHWC) input lets oneDNN run the depthwise convolutions of
    # EfficientNet-Lite without layout conversions: about 0.7x the CPU time of NCHW
    # (benchmarks/speed.py), with the same embeddings to within 1e-5.
    batch = batch.contiguous(memory_format=torch.channels_last)
    # On the extractor's device: the CPU, or a Ray worker's GPU (engine.ray_indexing).
    batch = batch.to(next(extractor.parameters()).device)
    with torch.inference_mode():
        return normalise(extractor(batch).float().cpu().numpy())


def embed_images(extractor: FeatureExtractor, images: Sequence[Image.Image], batch_size: int = 16) -> np.ndarray:
    """Embed RGB images; returns a float32 array [len(images), feature_dim] of unit vectors."""
    prep = extractor.spec.preprocessing
    chunks = [
        embed_batch(extractor, preprocess(images[start : start + batch_size], prep))
        for start in range(0, len(images), batch_size)
    ]
    if not chunks:
        return np.zeros((0, extractor.spec.feature_dim), np.float32)
    return np.concatenate(chunks)
