"""Indexing throughput, decode and embedding overlapped or not: ``python -m benchmarks.indexing``.

Decodes, finds the colours of and embeds the bundled catalogue's images in batches of 16, as ``index`` does:
each batch in turn (``engine.batches.process_batch``, how indexing ran before) against the next batch decoded on
another thread while this one is embedded (``process_batches``, how it runs now), alternately, three rounds
each, same process. Results go to ``benchmarks/results/indexing.md``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmarks.common import DEFAULT_CATALOGUE, RESULTS, machine_info, machine_line, median
from engine.backbone_specs import DEFAULT_BACKBONE, get_spec
from engine.backbones import load_backbone
from engine.batches import ImageJob, process_batch, process_batches
from engine.catalogue import scan_catalogue

ROUNDS = 3
BATCH = 16


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--limit", type=int, default=None, help="only this many images (a quick check)")
    parser.add_argument("--output", type=Path, default=RESULTS / "indexing.md")
    args = parser.parse_args(argv)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    scanned = scan_catalogue(args.catalogue)
    jobs = [ImageJob(i, str(scanned.root / image.path), True) for i, image in enumerate(scanned.images[: args.limit])]
    batches = [jobs[start : start + BATCH] for start in range(0, len(jobs), BATCH)]
    extractor, side = load_backbone(DEFAULT_BACKBONE), get_spec(DEFAULT_BACKBONE).preprocessing.size
    process_batch(batches[0], extractor, side)  # warm up
    ways = {"each batch in turn (before)": lambda: [process_batch(b, extractor, side) for b in batches],
            "next batch decoded meanwhile (now)": lambda: list(process_batches(batches, extractor, side))}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(ROUNDS):
        for name, run in ways.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    rates = {name: len(jobs) / median(times) for name, times in seconds.items()}
    before, now = rates.values()
    lines = ["# Indexing throughput: decode and embedding overlapped", "",
             machine_line(machine_info()) + f" Load average before the run: {load}.",
             f"Command: `python -m benchmarks.indexing`. {len(jobs)} images of the bundled catalogue, batches of "
             f"{BATCH}, median of {ROUNDS} rounds each, alternately, same process (the store's classifier and "
             "vector indexes, a second or so, are not included).", "",
             "| way | images/s |", "|---|---|",
             *(f"| {name} | {rate:.1f} |" for name, rate in rates.items()), "",
             f"Ratio now / before: {now / before:.2f}."]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
