"""Benchmark: vector search for catalogues of 10k, 100k and 1M images (issue #13).

    python -m benchmarks.scale [--sizes 10000 100000 1000000] [--queries 200] [--skip-ray]

Catalogue-like embeddings (``benchmarks.catalogue_vectors``, fitted to the bundled catalogue's images and
the held-out photos of its products; their similarity profile is printed beside the real one and uniform
random vectors'). Per size: usearch HNSW in f32, f16 and i8, also on 256 PCA dimensions, against FAISS
(exact flat, HNSW on the same graph settings, IVF-PQ as a reference), all built with 2 threads and searched
one query at a time on one thread: build time, size on disk and in memory, p50/p95 per query, queries/s and
recall@10 against exact search on the full vectors, per search breadth (ef). Then the crossover below which
exact search beats the graph, on the same kind of vectors, and, when Ray is installed
(``requirements-scale.txt``), indexing images/s on Ray with 1 and 2 workers against the local path.
Results go to ``benchmarks/results/scale.{md,json}``.
"""

from __future__ import annotations

import os

# One thread per search for every library; builds ask for BUILD_THREADS explicitly. Set before NumPy loads.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from usearch.index import Index  # noqa: E402

from benchmarks import catalogue_vectors  # noqa: E402
from benchmarks.common import (DEFAULT_CATALOGUE, DEFAULT_QUERIES, RESULTS, load_queries, machine_info,  # noqa: E402
                               machine_line, markdown_table, percentile)
from engine.vectors import normalise  # noqa: E402
from engine.store.vector_index import build_usearch, choose_index, EXACT_BELOW, index_input

K = 10
BUILD_THREADS = 2
VIEWS = 3  # images per product, as in the bundled catalogue
EFS = (16, 32, 64, 128, 256)
REDUCED_DIMS = 256
# The graph settings both libraries are compared at (FAISS's default efConstruction).
GRAPH_CONNECTIVITY, GRAPH_EXPANSION_ADD = 16, 40
# Queries whose distance computations are counted (searching at one breadth explores alike for every query).
DISTANCE_QUERIES = 50
CROSSOVER_SIZES = (250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)


def real_groups(store: str, catalogue: Path, queries: Path) -> tuple[list[np.ndarray], list[str]]:
    """The catalogue's embeddings and its held-out photos' embeddings, grouped by product; each one's category."""
    from engine.networks import load_backbone
    from engine.embed import embed_images
    from engine.images import load_image
    from engine.indexing import open_current

    stored = open_current(catalogue, store)
    backbone = load_backbone(stored.backbone.name)
    photos = load_queries(queries)
    vectors = embed_images(backbone, [load_image(q.path, min_side=backbone.spec.preprocessing.size) for q in photos])
    groups: dict[str, list[np.ndarray]] = {}
    category = {item.product_id: item.category for item in stored.images}
    for item in stored.images:
        groups.setdefault(item.product_id, []).append(stored.vectors[item.row])
    for query, vector in zip(photos, vectors):
        groups.setdefault(query.product_id, []).append(vector)
    products = [product for product in sorted(groups) if len(groups[product]) >= 2]
    return [np.stack(groups[product]) for product in products], [category[product] for product in products]


def timed_queries(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Each query searched alone; the ids found and each search's milliseconds."""
    found, times = [], []
    for query in queries:
        started = time.perf_counter()
        ids = np.asarray(search(query[None]), dtype=np.int64).reshape(-1)[:K]
        times.append(1000 * (time.perf_counter() - started))
        found.append(np.pad(ids, (0, K - len(ids)), constant_values=-1))
    return np.stack(found), times


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def file_mb(save: Callable[[str], None]) -> float:
    with tempfile.TemporaryDirectory(dir=os.environ.get("SCALE_TMP")) as folder:
        path = os.path.join(folder, "index")
        save(path)
        return os.path.getsize(path) / 1e6


class Rows:
    """The result rows of one size, printed as they come."""

    def __init__(self, size: int, truth: np.ndarray, queries: np.ndarray):
        self.size, self.truth, self.queries, self.rows = size, truth, queries, []

    def add(self, method: str, search: Callable[[np.ndarray], np.ndarray], build_s: float, disk_mb: float,
            memory_mb: float, ef: int | str = "-", queries: np.ndarray | None = None) -> dict:
        queries = self.queries if queries is None else queries
        found, times = timed_queries(search, queries)
        row = {"size": self.size, "method": method, "ef": ef, "build_s": round(build_s, 1),
               "disk_mb": round(disk_mb, 1), "memory_mb": round(memory_mb, 1),
               "p50_ms": round(percentile(times, 50), 3), "p95_ms": round(percentile(times, 95), 3),
               "qps": round(1000 / np.mean(times), 1), "recall@10": round(recall(found, self.truth[: len(queries)]), 3)}
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return row


def usearch_rows(rows: Rows, data: np.ndarray, queries: np.ndarray, dtype: str, label: str, scaled: bool = False,
                 connectivity: int = GRAPH_CONNECTIVITY, expansion_add: int = GRAPH_EXPANSION_ADD) -> None:
    """usearch HNSW rows per ef. ``scaled``: i8 vectors quantised by the store (``index_input``), not by usearch."""
    if scaled:
        data, queries = index_input(data, "i8"), index_input(queries, "i8")
    index = Index(ndim=data.shape[1], metric="cos", dtype=dtype, connectivity=connectivity,
                  expansion_add=expansion_add)
    started = time.perf_counter()
    index.add(np.arange(len(data), dtype=np.uint64), data, threads=BUILD_THREADS)
    build = time.perf_counter() - started
    disk = file_mb(index.save)
    for ef in EFS:
        index.expansion_search = ef
        row = rows.add(f"usearch HNSW {label}", lambda q: index.search(q, K, threads=1).keys, build, disk,
                       index.memory_usage / 1e6, ef, queries)
        row["distances"] = round(index.search(queries[:DISTANCE_QUERIES], K, threads=1).computed_distances
                                 / DISTANCE_QUERIES, 1)
    index = None  # free it before the next build
    gc.collect()


def measure(size: int, model: catalogue_vectors.CatalogueModel, num_queries: int) -> list[dict]:
    print(f"--- {size} vectors", flush=True)
    data, centres = catalogue_vectors.catalogue(model, size, VIEWS, seed=size)
    rng = np.random.default_rng(1)
    # A query is another photo of a catalogue product.
    queries = catalogue_vectors.sample_images(model, centres[rng.integers(0, len(centres), num_queries)], rng)
    faiss.omp_set_num_threads(BUILD_THREADS)
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(data)
    truth = flat.search(queries, K)[1]
    faiss.omp_set_num_threads(1)
    rows = Rows(size, truth, queries)
    # Exact search reads every vector per query: fewer timed queries at the larger sizes.
    exact_queries = queries[: max(20, min(num_queries, int(2e7 // size)))]
    rows.add("FAISS flat (exact)", lambda q: flat.search(q, K)[1], 0.0, data.nbytes / 1e6, data.nbytes / 1e6,
             queries=exact_queries)
    flat = None
    gc.collect()

    dims = data.shape[1]
    for dtype in ("f32", "f16"):
        usearch_rows(rows, data, queries, dtype, f"{dtype}, {dims}-d")
    usearch_rows(rows, data, queries, "i8", f"i8 by usearch, {dims}-d")
    usearch_rows(rows, data, queries, "i8", f"i8 scaled per vector, {dims}-d", scaled=True)
    store = choose_index(size)  # the store's graph, denser than the settings compared with FAISS
    scaled = store.dtype == "i8"
    usearch_rows(rows, data, queries, store.dtype, f"{store.dtype}{' scaled per vector' if scaled else ''}, {dims}-d, "
                 f"M {store.connectivity}, expansion_add {store.expansion_add} (the store's graph)",
                 scaled=scaled, connectivity=store.connectivity, expansion_add=store.expansion_add)
    # Exact search ignores the graph; it is built with the same settings only because usearch always builds one.
    exact_usearch = Index(ndim=dims, metric="cos", dtype="i8", connectivity=GRAPH_CONNECTIVITY,
                          expansion_add=GRAPH_EXPANSION_ADD)
    exact_usearch.add(np.arange(len(data), dtype=np.uint64), index_input(data, "i8"), threads=BUILD_THREADS)
    exact_i8_queries = index_input(exact_queries, "i8")
    rows.add("usearch exact, i8 scaled per vector", lambda q: exact_usearch.search(q, K, threads=1, exact=True).keys,
             0.0, 0.0, exact_usearch.memory_usage / 1e6, queries=exact_i8_queries)
    exact_usearch = None

    _pca_rows(rows, data, queries, rng)
    gc.collect()
    _faiss_hnsw_rows(rows, data, queries)
    gc.collect()
    _faiss_ivf_rows(rows, data, rng)
    gc.collect()
    return rows.rows


def _pca_rows(rows: Rows, data: np.ndarray, queries: np.ndarray, rng: np.random.Generator) -> None:
    """Dimension reduction: PCA fitted on a sample, queries projected the same way."""
    sample = data[rng.choice(len(data), min(len(data), 20_000), replace=False)]
    mean = sample.mean(axis=0)
    basis = np.linalg.svd(sample - mean, full_matrices=False)[2][:REDUCED_DIMS].T.astype(np.float32)
    reduced = normalise((data - mean) @ basis)
    reduced_queries = normalise((queries - mean) @ basis)
    for dtype in ("f16", "i8"):
        usearch_rows(rows, reduced, reduced_queries, dtype, f"{dtype}, PCA {REDUCED_DIMS}-d")


def _faiss_hnsw_rows(rows: Rows, data: np.ndarray, queries: np.ndarray) -> None:
    """FAISS's HNSW at the store's graph settings, at each search expansion, with its distances per query."""
    faiss.omp_set_num_threads(BUILD_THREADS)
    hnsw = faiss.IndexHNSWFlat(data.shape[1], GRAPH_CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = GRAPH_EXPANSION_ADD
    started = time.perf_counter()
    hnsw.add(data)
    build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    disk = file_mb(lambda path: faiss.write_index(hnsw, path))
    for ef in EFS:
        hnsw.hnsw.efSearch = ef
        row = rows.add("FAISS HNSW f32", lambda q: hnsw.search(q, K)[1], build, disk, disk, ef)
        faiss.cvar.hnsw_stats.reset()
        hnsw.search(queries[:DISTANCE_QUERIES], K)
        row["distances"] = round(faiss.cvar.hnsw_stats.ndis / DISTANCE_QUERIES, 1)


def _faiss_ivf_rows(rows: Rows, data: np.ndarray, rng: np.random.Generator) -> None:
    """FAISS's IVF-PQ (4 sqrt(N) lists, 64 bytes a vector) at 4, 16 and 64 probes."""
    lists = int(4 * np.sqrt(len(data)))
    faiss.omp_set_num_threads(BUILD_THREADS)
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(data.shape[1]), data.shape[1], lists, 64, 8, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    ivf.train(data[rng.choice(len(data), min(len(data), max(40 * lists, 20_000)), replace=False)])
    ivf.add(data)
    build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    disk = file_mb(lambda path: faiss.write_index(ivf, path))
    for probes in (4, 16, 64):
        ivf.nprobe = probes
        rows.add(f"FAISS IVF{lists}-PQ64", lambda q: ivf.search(q, K)[1], build, disk, disk, f"nprobe={probes}")


def crossover(model: catalogue_vectors.CatalogueModel, num_queries: int) -> list[dict]:
    """Exact search against the store's graph (the dtype it uses) per size: which answers first at recall 0.99."""
    found = []
    for size in CROSSOVER_SIZES:
        data, centres = catalogue_vectors.catalogue(model, size, VIEWS, seed=size)
        rng = np.random.default_rng(2)
        queries = catalogue_vectors.sample_images(model, centres[rng.integers(0, len(centres), num_queries)], rng)
        truth = np.argsort(-(queries @ data.T), axis=1)[:, :K]
        # Exact: the store's f32 exact index; graph: the one the store builds above EXACT_BELOW, searched
        # through the store's own input conversion.
        exact = build_usearch(data, np.arange(size), choose_index(EXACT_BELOW - 1), threads=BUILD_THREADS)
        exact_ids, exact_ms = timed_queries(lambda q: exact.search(q, K, threads=1, exact=True).keys, queries)
        exact = None
        graph_choice = choose_index(EXACT_BELOW)
        index = build_usearch(data, np.arange(size), graph_choice, threads=BUILD_THREADS)
        graph_queries = index_input(queries, graph_choice.dtype)
        graph = None
        for ef in EFS:
            index.expansion_search = ef
            ids, ms = timed_queries(lambda q: index.search(q, K, threads=1).keys, graph_queries)
            if recall(ids, truth) >= 0.99 or ef == EFS[-1]:
                graph = (ef, recall(ids, truth), percentile(ms, 50))
                break
        row = {"size": size, "exact_p50_ms": round(percentile(exact_ms, 50), 3),
               "exact_recall": round(recall(exact_ids, truth), 3), "hnsw_ef": graph[0],
               "hnsw_recall": round(graph[1], 3), "hnsw_p50_ms": round(graph[2], 3)}
        print(json.dumps(row), flush=True)
        found.append(row)
    return found


def ray_indexing(catalogue: Path) -> list[dict]:
    """Images/s indexing the bundled catalogue locally and on a local Ray instance with 1 and 2 workers."""
    import shutil

    from engine.indexing import index_catalogue

    import torch

    rows = []
    for workers in (None, 1, 2):
        store = Path(tempfile.mkdtemp(prefix="scale-ray-"))
        # The local path on every core, as python -m engine index runs (this module pins one thread for searches).
        torch.set_num_threads(BUILD_THREADS if workers is None else 1)
        try:
            report = index_catalogue(catalogue, store, ray_workers=workers, ray_address="local" if workers else None)
        finally:
            shutil.rmtree(store, ignore_errors=True)
        row = {"path": f"local, {BUILD_THREADS} threads" if workers is None else f"Ray, {workers} worker(s)", "images": report.embedded,
               "seconds": round(report.seconds, 1), "images_per_s": round(report.embedded / report.seconds, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def report(info: dict, profile_rows: list, rows: list[dict], cross: list[dict], ray_rows: list[dict] | str,
           spread: float) -> str:
    lines = ["# Vector search at scale (issue #13)", "", machine_line(info), "",
             "Command: `python -m benchmarks.scale`. Catalogue-like vectors (benchmarks/catalogue_vectors.py, "
             f"variant spread {spread}); {VIEWS} images per product; queries are other photos of catalogue products. Builds "
             f"on {BUILD_THREADS} threads, searches one query at a time on one thread. Graph settings for both "
             f"libraries: connectivity (M) {GRAPH_CONNECTIVITY}, expansion_add (efConstruction) {GRAPH_EXPANSION_ADD}. "
             "Recall@10 is against exact search on the full 1280-d vectors.", "",
             "## The vectors against real embeddings", "",
             markdown_table(["", *profile_rows[0][1]], [[name, *(f"{v:.3f}" for v in figures.values())]
                                                           for name, figures in profile_rows]), "",
             "## Search", ""]
    headers = ["size", "method", "ef", "build s", "disk MB", "memory MB", "p50 ms", "p95 ms", "queries/s", "recall@10",
               "distances per query", "µs per distance"]
    lines.append(markdown_table(headers, [[r["size"], r["method"], r["ef"], r["build_s"], r["disk_mb"], r["memory_mb"],
                                           r["p50_ms"], r["p95_ms"], r["qps"], r["recall@10"], r.get("distances", "-"),
                                           round(1e6 / r["qps"] / r["distances"], 2) if r.get("distances") else "-"]
                                          for r in rows]))
    lines += ["", "## Exact search against the graph (the store's choice by size)", "",
              markdown_table(["size", "exact p50 ms", "graph ef (first reaching recall 0.99)", "graph recall",
                              "graph p50 ms"], [[r["size"], r["exact_p50_ms"], r["hnsw_ef"], r["hnsw_recall"],
                                                 r["hnsw_p50_ms"]] for r in cross]), "",
              "## Indexing on Ray", ""]
    if isinstance(ray_rows, str):
        lines.append(ray_rows)
    else:
        lines.append(markdown_table(["path", "images embedded", "seconds", "images/s"],
                                    [[r["path"], r["images"], r["seconds"], r["images_per_s"]] for r in ray_rows]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--store", default=str(Path(tempfile.gettempdir()) / "furniture-scale-store"))
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--ray-only", action="store_true",
                        help="measure only the Ray indexing, keeping the other figures of the last run's scale.json")
    args = parser.parse_args(argv)
    info = machine_info()
    if args.ray_only:
        last = json.loads((RESULTS / "scale.json").read_text(encoding="utf-8"))
        last["ray"] = ray_indexing(DEFAULT_CATALOGUE)
        last["ray_machine"] = info
        write_results(last)
        return

    groups, categories = real_groups(args.store, DEFAULT_CATALOGUE, DEFAULT_QUERIES)
    model = catalogue_vectors.fit(groups, categories)
    real = np.concatenate(groups)
    labels = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    synthetic, _ = catalogue_vectors.catalogue(model, len(real), round(len(real) / len(groups)), seed=7)
    synthetic_labels = np.arange(len(synthetic)) // round(len(real) / len(groups))
    profile_rows = [
        ("real embeddings", catalogue_vectors.profile(real, labels)),
        ("catalogue-like", catalogue_vectors.profile(synthetic, synthetic_labels)),
        ("uniform random", catalogue_vectors.profile(catalogue_vectors.uniform(len(real), real.shape[1], 3),
                                                     synthetic_labels)),
    ]
    for name, figures in profile_rows:
        print(name, json.dumps({key: round(value, 3) for key, value in figures.items()}), flush=True)

    rows = []
    for size in args.sizes:
        rows += measure(size, model, args.queries)
    cross = crossover(model, args.queries)
    if args.skip_ray:
        ray_rows: list[dict] | str = "Skipped (--skip-ray)."
    else:
        if importlib.util.find_spec("ray") is None:
            ray_rows = "Skipped: Ray is not installed (`pip install -r requirements-scale.txt`)."
        else:
            ray_rows = ray_indexing(DEFAULT_CATALOGUE)
    write_results({"machine": info, "spread": model.variant_spread, "profile": profile_rows, "rows": rows,
                   "crossover": cross, "ray": ray_rows})


def write_results(results: dict) -> None:
    text = report(results["machine"], results["profile"], results["rows"], results["crossover"], results["ray"],
                  results["spread"])
    if "ray_machine" in results:
        text += f"\nRay figures measured separately (`--ray-only`): {machine_line(results['ray_machine'])}\n"
    (RESULTS / "scale.md").write_text(text, encoding="utf-8")
    (RESULTS / "scale.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
