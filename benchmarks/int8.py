"""Benchmark: the backbone in 8 bits (``engine.quantise``) against float32, in the same run.

    python -m benchmarks.int8 [--pairs 3]

The network alone, the two graphs alternated in one process: a pass of 2 catalogue images at 224 px on one
thread (how indexing and two searches side by side run it) and a 640 x 480 proposal pass on all cores (how a
room's region search runs it). Indexing the bundled catalogue into a fresh store, each in a fresh process with
``FURNITURE_INT8`` off then on, ``--pairs`` times. Agreement: the cosine of each 8-bit embedding with its float32
one, and R@1 (each held-out rendered query's nearest catalogue image) for both. The real-photo figures come from
``python -m benchmarks.real``. Results go to ``benchmarks/results/int8.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (DEFAULT_CATALOGUE, DEFAULT_QUERIES, RESULTS, ROOT, load_queries, machine_info,
                               machine_line, markdown_table)
from engine.backbone_specs import DEFAULT_BACKBONE, get_spec
from engine.catalogue import scan_catalogue
from engine.embed import embed_images
from engine.images import load_image, normalised_batch, preprocess
from engine.networks import CORES, Backbone, cpu_has_vnni, use_threads

ROUNDS, REPEATS = 5, 10
INDEXING = ("import json, sys, tempfile, time; from engine.indexing import index_catalogue\n"
            "with tempfile.TemporaryDirectory() as folder:\n"
            "    started = time.perf_counter(); report = index_catalogue(sys.argv[1], folder + '/store')\n"
            "    print(json.dumps(report.images / (time.perf_counter() - started)))")


def _ms(backbone: Backbone, batch: np.ndarray, threads: int) -> float:
    use_threads(threads)
    backbone.feature_map(batch)
    started = time.perf_counter()
    for _ in range(REPEATS):
        backbone.feature_map(batch)
    return (time.perf_counter() - started) / REPEATS * 1000


def network_times(networks: dict[str, Backbone], images: list) -> dict[str, dict[str, float]]:
    """Median ms a 224 px image (passes of 2, one thread) and a 640 x 480 pass (all cores), graphs alternated."""
    prep = get_spec(DEFAULT_BACKBONE).preprocessing
    pair = preprocess(images[:2], prep)
    room = normalised_batch(np.asarray(images[2].convert("RGB").resize((640, 480)))[None], prep)
    times: dict[str, dict[str, list[float]]] = {name: {"224": [], "640": []} for name in networks}
    for _ in range(ROUNDS):
        for name, backbone in networks.items():
            times[name]["224"].append(_ms(backbone, pair, 1) / 2)
            times[name]["640"].append(_ms(backbone, room, CORES))
    use_threads(CORES)
    return {name: {size: float(np.median(values)) for size, values in sizes.items()} for name, sizes in times.items()}


def indexing_rates(pairs: int) -> dict[str, list[float]]:
    """Images a second indexing the bundled catalogue, each run a fresh process, float32 and 8 bits alternated."""
    rates: dict[str, list[float]] = {"float32": [], "int8": []}
    for _ in range(pairs):
        for name, setting in (("float32", "off"), ("int8", "on")):
            done = subprocess.run([sys.executable, "-c", INDEXING, str(DEFAULT_CATALOGUE)], capture_output=True,
                                  text=True, check=True, cwd=ROOT, env={**os.environ, "FURNITURE_INT8": setting})
            rates[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rates


def agreement(networks: dict[str, Backbone]) -> tuple[dict[str, float], np.ndarray]:
    """R@1 of each graph on the held-out rendered queries (nearest catalogue image; also float32 catalogue vectors with
    8-bit queries), and the 8-bit queries' and catalogue images' cosines with their float32 embeddings."""
    catalogue = scan_catalogue(DEFAULT_CATALOGUE)
    queries = load_queries(DEFAULT_QUERIES)
    products = np.array([item.product_id for item in catalogue.images])
    truth = np.array([query.product_id for query in queries])
    paths = [catalogue.root / item.path for item in catalogue.images] + [query.path for query in queries]
    images = [load_image(path, min_side=224) for path in paths]
    vectors = {name: embed_images(backbone, images) for name, backbone in networks.items()}
    count = len(catalogue.images)

    def recall_at_1(catalogue_vectors: np.ndarray, query_vectors: np.ndarray) -> float:
        return float(np.mean(products[np.argmax(query_vectors @ catalogue_vectors.T, axis=1)] == truth))

    recall = {name: recall_at_1(v[:count], v[count:]) for name, v in vectors.items()}
    # A store built on a CPU without VNNI, searched on one with it.
    recall["float32 catalogue, int8 queries"] = recall_at_1(vectors["float32"][:count], vectors["int8"][count:])
    return recall, np.sum(vectors["float32"] * vectors["int8"], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3, help="indexing runs of each graph, alternated")
    args = parser.parse_args(argv)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    spec = get_spec(DEFAULT_BACKBONE)
    networks = {"float32": Backbone(spec), "int8": Backbone(spec, int8=True)}
    catalogue = scan_catalogue(DEFAULT_CATALOGUE)
    sample = [load_image(catalogue.root / item.path, min_side=224) for item in catalogue.images[1:4]]
    times = network_times(networks, sample)
    rates = indexing_rates(args.pairs)
    recall, cosines = agreement(networks)
    base, rate_base = times["float32"], np.mean(rates["float32"])
    rows = [[name, f"{t['224']:.1f} ({t['224'] / base['224']:.2f}×)",
             f"{t['640']:.1f} ({t['640'] / base['640']:.2f}×)",
             " / ".join(f"{r:.1f}" for r in rates[name]) + f" ({np.mean(rates[name]) / rate_base:.2f}× on the mean)",
             f"{recall[name]:.3f}"] for name, t in times.items()]
    markdown = "\n".join([
        f"# {DEFAULT_BACKBONE} in 8 bits against float32", "", machine_line(machine_info()) +
        f" This CPU {'has' if cpu_has_vnni() else 'has no'} VNNI (8-bit dot products).",
        f"Load average before the run: {load_before}. Command: `python -m benchmarks.int8 --pairs {args.pairs}`.", "",
        markdown_table(["graph", "ms a 224 px image (passes of 2, one thread)",
                        f"ms a 640 × 480 pass ({CORES} threads)",
                        "indexing the bundled catalogue, images/s (fresh processes, alternated)",
                        f"R@1, nearest image ({len(load_queries(DEFAULT_QUERIES))} held-out queries)"], rows),
        "", "R@1 with the catalogue embedded in float32 and the queries in 8 bits (a store built on a CPU without "
        f"VNNI, searched on one with it): {recall['float32 catalogue, int8 queries']:.3f}.",
        "", f"Cosine of the 8-bit embedding with the float32 one over {len(cosines)} catalogue images and queries: "
        f"mean {cosines.mean():.4f}, 1st percentile {np.percentile(cosines, 1):.4f}, least {cosines.min():.4f}.", "",
    ])
    print(markdown)
    (RESULTS / "int8.md").write_text(markdown, encoding="utf-8")


if __name__ == "__main__":
    main()
