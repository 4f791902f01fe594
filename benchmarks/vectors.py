"""Vector search alone: usearch (f32/f16/i8 HNSW) vs exact NumPy and FAISS, one query thread.

Run by ``benchmarks.speed`` in a child process whose BLAS/OpenMP pools are
pinned to one thread (set before NumPy or FAISS start), so that "one thread"
holds for every library. Vectors are random unit vectors: their distances
concentrate near 0, which is the hardest case for HNSW graphs, so recall here is
a lower bound for real embeddings, which cluster.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable

import faiss
import numpy as np
from usearch.index import Index

DIM = 1280
K = 10
# HNSW search breadth settings tried: usearch's default (64) and a wider one that buys recall.
EFS = (64, 256)
CONNECTIVITY = 32  # both libraries' graphs get the same degree, so build and search are comparable


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def exact_top_k(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact top-K ids by inner product (= cosine for unit vectors): the ground truth."""
    return np.argpartition(-(queries @ data.T), K, axis=1)[:, :K]


def one_at_a_time(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[np.ndarray, float]:
    """Run ``search`` on each query alone, as the product does (one photo per search); ids and queries/s."""
    started = time.perf_counter()
    found = np.stack([np.asarray(search(query[None]), dtype=np.int64).reshape(-1)[:K] for query in queries])
    return found, len(queries) / (time.perf_counter() - started)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def measure(size: int, num_queries: int, build_threads: int, hnsw_max: int) -> list[dict]:
    """One row per method for a catalogue of ``size`` random vectors (HNSW only up to ``hnsw_max``)."""
    data, queries = unit_vectors(size, seed=size), unit_vectors(num_queries, seed=1)
    truth = exact_top_k(data, queries)
    rows = []

    def row(method: str, search: Callable[[np.ndarray], np.ndarray], build_s: float = 0.0) -> None:
        found, qps = one_at_a_time(search, queries)
        rows.append({"size": size, "method": method, "qps": qps, "recall@10": recall(found, truth), "build_s": build_s})

    row("NumPy exact", lambda q: np.argpartition(-(data @ q[0]), K)[:K])
    flat = faiss.IndexFlatIP(DIM)
    flat.add(data)
    row("FAISS flat (exact)", lambda q: flat.search(q, K)[1])
    if size > hnsw_max:
        return rows

    keys = np.arange(size, dtype=np.uint64)
    for dtype in ("f32", "f16", "i8"):
        index = Index(ndim=DIM, metric="cos", dtype=dtype, connectivity=CONNECTIVITY)
        started = time.perf_counter()
        index.add(keys, data, threads=build_threads)
        build = time.perf_counter() - started
        for ef in EFS:
            index.expansion_search = ef
            row(f"usearch HNSW {dtype} ef={ef}", lambda q: index.search(q, K, threads=1).keys, build)
        del index

    faiss.omp_set_num_threads(build_threads)
    hnsw = faiss.IndexHNSWFlat(DIM, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    hnsw.add(data)
    build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    for ef in EFS:
        hnsw.hnsw.efSearch = ef
        row(f"FAISS HNSW f32 ef={ef}", lambda q: hnsw.search(q, K)[1], build)
    return rows


def main() -> None:
    """argv: build_threads num_queries hnsw_max size [size ...]; prints one JSON list of rows."""
    build_threads, num_queries, hnsw_max, *sizes = (int(a) for a in sys.argv[1:])
    faiss.omp_set_num_threads(1)
    rows = []
    for size in sizes:
        rows += measure(size, num_queries, build_threads, hnsw_max)
        print(f"vectors: {size} done", file=sys.stderr, flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
