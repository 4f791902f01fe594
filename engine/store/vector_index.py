"""The store's vector indexes: usearch cosine indexes over rows of the vectors, exact or an HNSW graph.

Each vector index is searched exactly (every vector compared) when it is small and through an HNSW graph
above ``EXACT_BELOW`` images (``choose_index``); the choice is recorded in the store's metadata.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The C++ standard library loaded for every module before usearch's extension: usearch links its own copy of
# std::regex, and with it loaded first a later ray.init (index --ray) aborts in C++ (std::regex_error
# "Invalid range in brace expression"). torch used to be imported here for that; this costs nothing.
ctypes.CDLL(ctypes.util.find_library("stdc++") or "libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)

from usearch.index import Index  # noqa: E402

# The vector index, chosen by catalogue size (python -m benchmarks.scale; the sweeps are in benchmarks/README.md):
# exact search below EXACT_BELOW images, where it is never wrong and about as fast as a graph; above it an
# HNSW graph of i8 vectors scaled per vector (index_input: half the memory of f16, and faster, for a little
# recall), built with a wide expansion (more recall in the same memory), and searched wider for large
# catalogues, where the same breadth finds fewer of the true neighbours.
EXACT_BELOW = 1_000
HNSW_DTYPE = "i8"
HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 128
HNSW_EXPANSION_SEARCH = 64
WIDE_SEARCH_FROM = 300_000
HNSW_WIDE_EXPANSION_SEARCH = 256
# A filtered search compares the passing rows directly when there are at most BRUTE_FORCE_ROWS of them or they
# are under WIDE_FILTER of the index, and otherwise searches the graph and keeps the rows that pass. On 10,000
# images (python -m benchmarks.feed): comparing costs ~0.75 us a row, exact; the graph 0.2-0.5 ms at recall
# 0.99 for filters passing 10-80% of the rows, but 5 ms at 2% (it must look far to find enough).
BRUTE_FORCE_ROWS = 1_000
WIDE_FILTER = 0.1


@dataclass(frozen=True)
class IndexChoice:
    """How one of the store's vector indexes searches: every vector compared ("exact") or an "hnsw" graph,
    over vectors of ``dtype``, with the graph's settings."""

    kind: str
    dtype: str
    connectivity: int = HNSW_CONNECTIVITY
    expansion_add: int = HNSW_EXPANSION_ADD
    expansion_search: int = HNSW_EXPANSION_SEARCH


def choose_index(count: int) -> IndexChoice:
    """The index for ``count`` vectors: exact below ``EXACT_BELOW``, else a graph, searched wider from
    ``WIDE_SEARCH_FROM`` vectors."""
    if count < EXACT_BELOW:
        return IndexChoice("exact", "f32")
    wide = count >= WIDE_SEARCH_FROM
    return IndexChoice("hnsw", HNSW_DTYPE, expansion_search=HNSW_WIDE_EXPANSION_SEARCH if wide else HNSW_EXPANSION_SEARCH)


@dataclass
class VectorIndex:
    """A usearch index searched the way its ``choice`` says."""

    index: Index
    choice: IndexChoice

    def __len__(self) -> int:
        return len(self.index)

    def search(self, vector: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` nearest keys (catalogue rows) and their cosine distances, nearest first."""
        matches = self.index.search(index_input(vector, self.choice.dtype), count, exact=self.choice.kind == "exact")
        return matches.keys.astype(np.int64), matches.distances.astype(np.float64)

    def search_filtered(self, vector: np.ndarray, count: int, allowed: np.ndarray, rows: np.ndarray,
                        vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As ``search``, among the rows ``allowed`` (a boolean per catalogue row) only; ``rows`` are this index's
        rows and ``vectors`` the store's, so that ``count`` rows come back whenever ``count`` pass.

        usearch's Python API takes no filter, so: a filter that leaves few rows (or an exact index) compares
        the passing rows' vectors directly, exactly; a wide one searches the graph ever wider and keeps the rows
        that pass (python -m benchmarks.feed measures both against an exact filtered search).
        """
        passing = rows[allowed[rows]]
        if self.choice.kind == "exact" or len(passing) <= BRUTE_FORCE_ROWS or len(passing) < len(rows) * WIDE_FILTER:
            return nearest_rows(vector, passing, vectors, count)
        # Wide enough that the passing rows among the graph's answers are as good as an unfiltered search's.
        wanted = min(len(rows), max(int(count * len(rows) / len(passing) * 4), 2 * self.choice.expansion_search))
        while True:
            keys, distances = self.search(vector, wanted)
            keep = allowed[keys]
            if keep.sum() >= count or wanted >= len(rows):
                return keys[keep][:count], distances[keep][:count]
            wanted = min(len(rows), wanted * 4)


def nearest_rows(vector: np.ndarray, rows: np.ndarray, vectors: np.ndarray, count: int,
                 chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` rows among ``rows`` whose vectors are nearest ``vector`` by cosine, compared exactly (a chunk
    of rows at a time), and their cosine distances, nearest first."""
    similarities = np.concatenate([vectors[rows[start : start + chunk]] @ vector.astype(np.float32)
                                   for start in range(0, len(rows), chunk)]) if len(rows) else np.zeros(0, np.float32)
    count = min(count, len(rows))
    top = np.argpartition(-similarities, count - 1)[:count] if count < len(rows) else np.arange(len(rows))
    top = top[np.argsort(-similarities[top], kind="stable")]
    return rows[top], 1.0 - similarities[top].astype(np.float64)


def index_input(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """Vectors as an index of ``dtype`` is given them: float as they are; for "i8", each vector scaled so
    that its largest component is 127, then rounded.

    A cosine ignores each vector's scale, so this loses only the rounding. usearch's own conversion
    scales unit vectors by 127, which leaves a 1280-d vector's components a few levels apart (recall@10
    0.86 against 0.95 here at 100k, benchmarks/README.md).
    """
    if dtype != "i8":
        return vectors
    largest = np.maximum(np.abs(vectors).max(axis=-1, keepdims=True), 1e-12)
    return np.rint(vectors * (127 / largest)).astype(np.int8)


def build_usearch(vectors: np.ndarray, rows: np.ndarray, choice: IndexChoice, threads: int = 0) -> Index:
    """A cosine index over the given rows of ``vectors``, keyed by row number, built as ``choice`` says
    (on ``threads`` threads; 0: all cores)."""
    index = Index(ndim=vectors.shape[1], metric="cos", dtype=choice.dtype, connectivity=choice.connectivity,
                  expansion_add=choice.expansion_add, expansion_search=choice.expansion_search)
    # In chunks, so that a large catalogue's rows are copied (and quantised) a part at a time.
    for start in range(0, len(rows), 100_000):
        chunk = rows[start : start + 100_000]
        index.add(chunk.astype(np.uint64), index_input(vectors[chunk], choice.dtype), threads=threads)
    return index


def open_index(path: Path) -> Index | None:
    """A saved vector index, memory-mapped (processes on one machine share its pages); None if there is none."""
    return Index.restore(str(path), view=True) if path.is_file() else None
