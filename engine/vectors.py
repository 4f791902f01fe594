"""Vector arithmetic shared by the stages: unit vectors and their dot products (torch loaded only to compute)."""

from __future__ import annotations

import warnings

import numpy as np


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
    import torch  # here, not above: the store reads classifiers without loading torch

    with warnings.catch_warnings():
        # A store's vectors are memory-mapped read-only (engine.store); torch only reads them here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        left = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        right = torch.from_numpy(np.ascontiguousarray(others, dtype=np.float32))
    return (left @ right.T).numpy()
