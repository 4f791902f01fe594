"""Vector arithmetic shared by the stages: unit vectors and their dot products."""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

# The thread-count setters of the OpenBLAS builds numpy ships (scipy-openblas, 64-bit) and of plain ones.
_OPENBLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise vectors along the last axis so that a dot product is the cosine similarity."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def dot_products(vectors: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Dot products of vectors [..., C] with each of others [N, C]: [..., N] float32."""
    _single_threaded_blas()
    vectors, others = np.asarray(vectors, dtype=np.float32), np.asarray(others, dtype=np.float32)
    # One product of a 2-D array: numpy multiplies a 3-D one (a photo's cells [h, w, C]) matrix by matrix, each
    # row of cells a small product of its own, at 0.4x the speed.
    flat = vectors.reshape(-1, vectors.shape[-1])
    return (flat @ others.T).reshape(*vectors.shape[:-1], len(others))


@functools.cache
def _single_threaded_blas() -> None:
    """numpy's OpenBLAS on one thread. The products here are small, and its threads keep spinning for a while
    after each one, taking the cores from the network pass that follows (a room's search: 0.9x the time with
    one thread; benchmarks/README.md, "ONNX Runtime")."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:  # not Linux: leave OpenBLAS as it is
        return
    for path in {line.split()[-1] for line in maps if "openblas" in line.lower() and line.endswith(".so")}:
        library = ctypes.CDLL(path)
        for name in _OPENBLAS_SETTERS:
            if hasattr(library, name):
                getattr(library, name)(1)
                break
