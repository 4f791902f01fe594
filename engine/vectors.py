"""Vector arithmetic shared by the stages: unit vectors and their dot products."""

from __future__ import annotations

import functools

import numpy as np


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise vectors along the last axis so that a dot product is the cosine similarity."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def dot_products(vectors: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Dot products of vectors [..., C] with each of others [N, C]: [..., N] float32."""
    single_threaded_blas()
    vectors, others = np.asarray(vectors, dtype=np.float32), np.asarray(others, dtype=np.float32)
    # One product of a 2-D array: numpy multiplies a 3-D one (a photo's cells [h, w, C]) matrix by matrix, each
    # row of cells a small product of its own, at 0.4x the speed.
    flat = vectors.reshape(-1, vectors.shape[-1])
    return (flat @ others.T).reshape(*vectors.shape[:-1], len(others))


@functools.cache
def single_threaded_blas() -> None:
    """numpy's OpenBLAS on one thread, for the rest of the process. The products here are small, and its threads
    keep spinning for a while after each one, taking the cores from the network pass that follows (a room's search:
    0.9x the time with one thread; benchmarks/README.md, "ONNX Runtime")."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # not as a context: the limit stays
