"""Indexing a shop from its product feed, and searching it with filters: ``python -m benchmarks.feed``.

1. **Indexing** 10,000 products of the example shop (``example_shop``: the bundled catalogue's products and
   editions of them, one image each beyond the first 234) from its feed URL, served by a separate process on
   127.0.0.1, with ``python -m engine index --feed``: wall time, images per second, the indexer's peak memory.
   Then a **re-run** after 5% of the products changed (new prices; half of them a new image): only what
   changed is fetched and embedded.
2. **Faults**: 1,000 products with the server's faults mixed in (every 40th product each: 404, slow, stalled,
   wrong type, truncated, huge, redirect, a 503 once, undecodable, shared images, all images missing), with
   a 2 s timeout: what is listed, and the time faults cost.
3. **Filtered search** on the 10,000-product store: filters of several selectivities, each searched by comparing
   the passing rows directly and through the graph (what ``VectorIndex.search_filtered`` chooses between),
   against an exact filtered search of the same rows: recall@10 and time per query.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_CATALOGUE, RESULTS, ROOT, machine_info, machine_line, median, percentile
from engine.filters import ProductTable, parse_where
from engine.store import vector_index
from engine.store.meta import ALL
from engine.store.vector_index import nearest_rows
from engine.store.versions import open_store

FILTERS = ("availability=in_stock", "brand=Nordhem", "price<100", "price<100; availability=in_stock",
           "product_type=home > lamps; price<50")
QUERIES = 100


def serve(count: int, faults: bool, changed: float, port: int, ready) -> None:
    """The example shop's server (in its own process) on ``port``, after ``changed`` of its products changed."""
    from example_shop.products import example_shop
    from example_shop.server import ShopServer

    server = ShopServer(example_shop(DEFAULT_CATALOGUE, count), faults=faults, port=port)
    if changed:
        server.change(changed)
    with server:
        ready.send(server.url("tsv"))
        ready.recv()  # until the benchmark says stop


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# One port for every run: the image cache is keyed by URL, so a re-run must see the same addresses.
PORT = free_port()


def index_run(count: int, store: Path, faults: bool = False, changed: float = 0.0, timeout_s: float = 15.0) -> dict:
    """Serve the shop, index its feed with the CLI in a child process, and say what it took."""
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(count, faults, changed, PORT, theirs))
    server.start()
    url = ours.recv()
    command = [sys.executable, "-m", "engine", "index", "--feed", url, "--store", str(store),
               "--fetch-timeout", str(timeout_s)]
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=ROOT)
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # the indexer's own peak memory, not the server's
        seconds = time.perf_counter() - started
        errors.seek(0)
        progress = errors.read()
    ours.send("stop")
    server.join(timeout=60)
    if status:
        raise SystemExit(f"indexing failed:\n{output}\n{progress}")
    return {"products": count, "seconds": round(seconds, 1), "peak_mb": round(usage.ru_maxrss / 1024),
            "output": output}


def figures(run: dict) -> dict:
    """What a run's output says: images downloaded, unchanged and failed, fetch time, images embedded."""
    lines = run["output"].splitlines()
    feed = next(line for line in lines if line.startswith("feed: "))
    words = feed.replace(",", "").split()
    numbers = [float(word) for word in words if word.replace(".", "").isdigit()]
    indexed = next(line for line in lines if line.startswith("  embedded "))
    embedded = int(indexed.split()[1].rstrip(","))
    return {**{k: v for k, v in run.items() if k != "output"}, "downloaded": int(numbers[1]),
            "unchanged": int(numbers[2]), "failed": int(numbers[3]), "fetch_seconds": numbers[4],
            "embedded": embedded, "images_per_s": round((numbers[1] + numbers[2]) / run["seconds"], 1)}


def filtered_search(store: Path) -> list[dict]:
    """Each filter: recall@10 and ms per query of the rows compared directly and of the graph, against an exact
    filtered search, over the store's index of every image."""
    stored = open_store(store)
    index, vectors = stored.indexes[ALL], stored.vectors
    rows = np.arange(len(vectors))
    rng = np.random.default_rng(0)
    count = min(QUERIES, len(vectors))
    queries = vectors[rng.choice(len(vectors), count, replace=False)] + rng.normal(0, 0.03, (count, vectors.shape[1]))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    table = ProductTable(stored.images)
    measured = []
    for where in ("", *FILTERS):
        allowed = table.allowed(parse_where(where)) if where else np.ones(len(rows), dtype=bool)
        exact = [set(nearest_rows(q, rows[allowed], vectors, 10)[0].tolist()) for q in queries]
        row = {"filter": where or "(none)", "passing": round(float(allowed.mean()), 3)}
        for path, compared_up_to in (("compared", len(rows)), ("graph", 0)):
            vector_index.BRUTE_FORCE_ROWS, saved = compared_up_to, vector_index.BRUTE_FORCE_ROWS
            vector_index.WIDE_FILTER, saved_wide = (0.0 if path == "graph" else 1.0), vector_index.WIDE_FILTER
            times, recalls = [], []
            for query, truth in zip(queries, exact):
                started = time.perf_counter()
                found, _ = index.search_filtered(query, 10, allowed, rows, vectors)
                times.append((time.perf_counter() - started) * 1000)
                recalls.append(len(truth & set(found.tolist())) / len(truth))
            vector_index.BRUTE_FORCE_ROWS, vector_index.WIDE_FILTER = saved, saved_wide
            row[f"{path}_recall"] = round(float(np.mean(recalls)), 3)
            row[f"{path}_ms"] = round(median(times), 2)
            row[f"{path}_p95_ms"] = round(percentile(times, 95), 2)
        measured.append(row)
    return measured


def report(info: dict, runs: dict, search: list[dict], load: str) -> str:
    """The results as Markdown."""
    first, again, faulty = runs["first"], runs["again"], runs["faults"]
    lines = [
        "# Indexing a shop from its feed, and filtered search", "",
        machine_line(info) + f" Load average before the run: {load}.",
        "Command: `python -m benchmarks.feed`. The example shop's server runs in its own process on 127.0.0.1 "
        "(it draws each edition's image as it is asked for it, on the same two cores); the indexer is "
        "`python -m engine index --feed URL` in a child process. Prices, stock and brands are made up.", "",
        "## Indexing", "",
        "| run | products | images fetched / unchanged / failed | embedded | wall s | fetch s | images/s | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in (("first", first), ("5% changed", again), ("faults, 2 s timeout", faulty)):
        lines.append(f"| {name} | {run['products']:,} | {run['downloaded']:,} / {run['unchanged']:,} / {run['failed']} "
                     f"| {run['embedded']:,} | {run['seconds']} | {run['fetch_seconds']} | {run['images_per_s']} "
                     f"| {run['peak_mb']} |")
    lines += ["", "images/s: images in the feed (fetched or unchanged) per second of the whole run, decode and "
              "embedding included. The faults run lists every failed image with its reason:", "", "```",
              *[line for line in faulty["output"].splitlines() if line.startswith("  http")][:12], "```", "",
              "## Filtered search (index of every image, k = 10)", "",
              "Recall@10 against an exact filtered search of the same rows (every passing row compared in f32); "
              "the engine compares the passing rows directly up to "
              f"{vector_index.BRUTE_FORCE_ROWS:,} rows or under {vector_index.WIDE_FILTER:.0%} of the index, "
              "and searches the graph (i8 vectors), ever wider, for wider filters.", "",
              "| filter | passing | compared: recall | ms (p50 / p95) | graph: recall | ms (p50 / p95) |",
              "|---|---|---|---|---|---|"]
    for row in search:
        lines.append(f"| `{row['filter']}` | {row['passing']:.1%} | {row['compared_recall']:.3f} | "
                     f"{row['compared_ms']} / {row['compared_p95_ms']} | {row['graph_recall']:.3f} | "
                     f"{row['graph_ms']} / {row['graph_p95_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--fault-products", type=int, default=1_000)
    parser.add_argument("--output", type=Path, default=RESULTS / "feed", help="results stem (.md and .json)")
    args = parser.parse_args(argv)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    with tempfile.TemporaryDirectory() as work:
        store = Path(work) / "store"
        runs = {"first": figures(index_run(args.products, store))}
        print(runs["first"], flush=True)
        runs["again"] = figures(index_run(args.products, store, changed=0.05))
        print(runs["again"], flush=True)
        search = filtered_search(store)
        print(json.dumps(search, indent=1), flush=True)
        faulty = index_run(args.fault_products, Path(work) / "faulty", faults=True, timeout_s=2.0)
        runs["faults"] = {**figures(faulty), "output": faulty["output"]}
    text = report(machine_info(), runs, search, load)
    args.output.with_suffix(".md").write_text(text, encoding="utf-8")
    runs["faults"].pop("output")
    args.output.with_suffix(".json").write_text(json.dumps({"runs": runs, "filtered_search": search}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
