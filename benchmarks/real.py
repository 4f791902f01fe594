"""Real-photo benchmark on the IKEA interior dataset (Tautkute et al. 2017), issue #15.

    python -m benchmarks.real --ikea DIR [--split ../shared/real-photos/split.json] [--quick]

``DIR`` is a checkout of the public repository IvonaTau/ikea (images and
``text_data/``). Its images are IKEA's, for non-commercial use: this command
reads them and writes tables of figures only (``benchmarks/results/real.{md,json}``);
no image, crop or anything derived from them is written into the repository.
The split file lists the catalogue (452 products of our five categories) and the
dev queries (232 products, 103 rooms); only dev queries are searched here.

Measured in one run, through the engine's public API:

1. **Own catalogue**: the 452 product photos indexed with ``engine.indexing``
   (the shop's own workflow) into a scratch store; each dev product is queried
   with phone-like photos made from its product photo by ``benchmarks.phone_photo`` (see
   ``VARIANTS``) -> Recall@1/@10, mAP@10, category accuracy.
2. **Bundled catalogue**: the dev products' real product photos searched in the
   rendered catalogue (``index_store/default``) -> category accuracy per
   category, close-match rate, top-score distribution.
3. **Rooms**: each dev room photo searched, for every class c of its catalogued
   items, in class c as the dataset authors' notebook does (recall of the room's
   class-c items in the top K), with the whole photo and with region search,
   beside the notebook's own figures.
4. **Latency** of whole-photo and region search on the room photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from benchmarks.common import DEFAULT_CATALOGUE, RESULTS, ROOT, machine_info, percentile, save_results
from benchmarks.phone_photo import VARIANTS, phone_photo
from benchmarks.real_report import render_markdown

if TYPE_CHECKING:
    from engine.search import SearchEngine

DEFAULT_SPLIT = ROOT.parent / "shared" / "real-photos" / "split.json"
DEFAULT_STORE = ROOT / "index_store" / "default"
SEED = 15
KS = (1, 10, 30)
MAX_REGIONS = 4
# Bump when phone_photo changes: queries are cached in the scratch folder under this name.
QUERIES_FOLDER = "phone-queries-v1"


@dataclass(frozen=True)
class Dataset:
    """The parts of the IKEA dataset this benchmark uses, keyed by product id."""

    root: Path
    catalogue: dict[str, str]  # product id -> category
    product_images: dict[str, Path]
    dev_products: list[str]
    dev_rooms: dict[Path, list[str]]  # room photo -> its catalogued product ids


def load_dataset(ikea: Path, split_path: Path) -> Dataset:
    """Read the split and the dataset's pickles; SystemExit with a message when something is missing."""
    for needed in (split_path, ikea / "text_data" / "products_dict.p", ikea / "text_data" / "item_to_room.p"):
        if not needed.is_file():
            raise SystemExit(f"{needed} not found: pass --ikea (a checkout of IvonaTau/ikea) and --split")
    split = json.loads(split_path.read_text(encoding="utf-8"))
    with open(ikea / "text_data" / "products_dict.p", "rb") as handle:
        products = pickle.load(handle)
    with open(ikea / "text_data" / "item_to_room.p", "rb") as handle:
        item_to_room = pickle.load(handle)
    catalogue = dict(split["catalogue"])
    images = {pid: ikea / products[pid]["img"] for pid in catalogue}
    in_room: dict[str, set[str]] = defaultdict(set)
    for item, rooms in item_to_room.items():
        pid = Path(item).stem
        if pid in catalogue:
            for room in rooms:
                in_room[Path(room).name].add(pid)
    rooms = {ikea / "images" / "room_scenes" / name: sorted(in_room[name]) for name in split["dev_rooms"]}
    return Dataset(ikea, catalogue, images, list(split["dev_products"]), rooms)


# ---------------------------------------------------------------------------------------------------------------------
# Measurements


def _ranked_ids(response) -> list[str]:
    return [result.product_id for result in response.results]


def phone_queries(dataset: Dataset, folder: Path, variants: tuple[str, ...]) -> list[tuple[Path, str, str]]:
    """The phone-like photos of the dev products as (JPEG path, product id, variant), made once into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rooms = list(dataset.dev_rooms)
    queries = []
    for n, pid in enumerate(dataset.dev_products):
        for v, variant in enumerate(variants):
            path = folder / f"{pid}__{variant}.jpg"
            if not path.is_file():
                with Image.open(dataset.product_images[pid]) as product:
                    data = phone_photo(product, variant, rooms, seed=SEED * 100_000 + n * 10 + v)
                temporary = path.with_suffix(".tmp")
                temporary.write_bytes(data)
                os.replace(temporary, path)
            queries.append((path, pid, variant))
    return queries


def index_own_catalogue(dataset: Dataset, work: Path) -> tuple[SearchEngine, dict]:
    """Index the 452 product photos as a shop would (a category folder each) into a scratch store; open it."""
    from engine.indexing import index_catalogue
    from engine.search import SearchEngine

    catalogue = work / "ikea_catalogue"
    for pid, category in dataset.catalogue.items():
        target = catalogue / category / f"{pid}.jpg"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dataset.product_images[pid], target)
    started = time.perf_counter()
    report = index_catalogue(catalogue, work / "ikea_store")
    facts = {"images_indexed": report.images, "index_seconds": time.perf_counter() - started}
    return SearchEngine.open(work / "ikea_store"), facts


def own_catalogue(dataset: Dataset, engine: SearchEngine, work: Path, variants: tuple[str, ...]) -> dict:
    """Query the own catalogue with phone-like photos of the dev products."""
    rows = []
    for path, pid, variant in phone_queries(dataset, work / QUERIES_FOLDER, variants):
        response = engine.search(path, k=10)
        ranked = _ranked_ids(response)
        rank = ranked.index(pid) + 1 if pid in ranked else None
        rows.append({"product": pid, "category": dataset.catalogue[pid], "variant": variant, "rank": rank,
                     "predicted": response.category})
    summary = _retrieval_summary(rows)
    summary["by_variant"] = {v: _retrieval_summary([r for r in rows if r["variant"] == v]) for v in variants}
    return summary


def _retrieval_summary(rows: list[dict]) -> dict:
    """Recall@1/@10, mAP@10 (one relevant product: the reciprocal rank within 10) and category accuracy."""
    count = max(len(rows), 1)
    return {
        "queries": len(rows),
        "r1": sum(r["rank"] == 1 for r in rows) / count,
        "r10": sum(r["rank"] is not None for r in rows) / count,
        "map10": sum(1 / r["rank"] for r in rows if r["rank"]) / count,
        "category_accuracy": sum(r["predicted"] == r["category"] for r in rows) / count,
    }


def bundled_catalogue(dataset: Dataset, store: Path, catalogue: Path) -> dict:
    """The dev products' real photos searched in the rendered catalogue: is the category right, is the match close?"""
    from engine.indexing import index_catalogue, index_is_current
    from engine.search import SearchEngine

    if not index_is_current(catalogue, store):
        index_catalogue(catalogue, store)
    engine = SearchEngine.open(store, catalogue)
    per_category: dict[str, list[bool]] = defaultdict(list)
    close, top_scores = [], []
    for pid in dataset.dev_products:
        response = engine.search(dataset.product_images[pid], k=10)
        per_category[dataset.catalogue[pid]].append(response.category == dataset.catalogue[pid])
        close.append(response.close_match)
        top_scores.append(response.results[0].score)
    correct = [c for values in per_category.values() for c in values]
    return {
        **scene_or_piece(dataset, engine),
        "queries": len(correct),
        "accuracy": sum(correct) / len(correct),
        "per_category": {c: sum(v) / len(v) for c, v in sorted(per_category.items())},
        "close_match_rate": sum(close) / len(close),
        "top_score": {f"p{q}": percentile(top_scores, q) for q in (10, 50, 90)},
    }


def _recall(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def _merged_regions(engine: SearchEngine, room: Path, k: int, category: str) -> list[str]:
    """The product ids found by the room's regions of ``category`` (up to ``MAX_REGIONS``), by best similarity."""
    best: dict[str, float] = {}
    for match in engine.search_regions(room, k=k, max_regions=MAX_REGIONS, category=category).matches:
        for result in match.response.results:
            best[result.product_id] = max(best.get(result.product_id, -1.0), result.score)
    return sorted(best, key=best.get, reverse=True)


def room_search(dataset: Dataset, engine: SearchEngine) -> tuple[dict, dict]:
    """Per class c: recall of each dev room's class-c items in the top K of a search in class c (as the notebook).

    "whole" is ``search(room, category=c)``; "regions" is ``search_regions(room,
    category=c)`` (the CLI's ``search --regions --category c``), the results of its
    regions merged by similarity.

    Also ``search_regions`` as the app runs it (``category="auto"``), with the
    detector and with the window scorer alone, in the same run: the share of regions
    labelled with a class of the room's catalogued items and the share of those
    classes some region is labelled with (the dataset has no boxes: these stand in
    for box precision and recall), and the latencies. Returns the figures and the latencies.
    """
    from engine.search import SearchEngine

    k = max(KS)
    recalls: dict[str, dict[str, dict[int, list[float]]]] = {
        mode: defaultdict(lambda: defaultdict(list)) for mode in ("whole", "regions")}
    whole_ms: list[float] = []
    regions_ms: dict[str, list[float]] = defaultdict(list)
    # Region labels with and without the detector, in the same run.
    variants = {"window scorer alone": SearchEngine(engine.stored, engine.backbone, engine.catalogue,
                                                    dataclasses.replace(engine.settings, use_detector=False))}
    if engine.detector is not None:
        variants = {"with the detector": engine, **variants}
    labels_right, classes_boxed, region_counts = defaultdict(list), defaultdict(list), defaultdict(list)
    for room, items in dataset.dev_rooms.items():
        classes = sorted({dataset.catalogue[pid] for pid in items})
        if not classes:
            continue
        started = time.perf_counter()
        engine.search(room, k=10)
        whole_ms.append((time.perf_counter() - started) * 1000)
        for variant, variant_engine in variants.items():
            started = time.perf_counter()
            matches = variant_engine.search_regions(room, k=10, max_regions=MAX_REGIONS).matches
            regions_ms[variant].append((time.perf_counter() - started) * 1000)
            labels_right[variant] += [match.region.category in classes for match in matches]
            classes_boxed[variant] += [c in {match.region.category for match in matches} for c in classes]
            region_counts[variant].append(len(matches))
        for c in classes:
            relevant = {pid for pid in items if dataset.catalogue[pid] == c}
            whole = _ranked_ids(engine.search(room, k=k, category=c))
            for mode, ranked in (("whole", whole), ("regions", _merged_regions(engine, room, k, c))):
                for at in KS:
                    recalls[mode][c][at].append(_recall(ranked, relevant, at))
    table = {mode: {c: {at: float(np.mean(v)) for at, v in per_k.items()} for c, per_k in sorted(by_class.items())}
             for mode, by_class in recalls.items()}
    table["rooms_per_class"] = {c: len(per_k[KS[0]]) for c, per_k in sorted(recalls["whole"].items())}
    table["auto_regions"] = {variant: {"labelled_as_room_class": float(np.mean(labels_right[variant])),
                                       "room_classes_boxed": float(np.mean(classes_boxed[variant])),
                                       "per_photo": float(np.mean(region_counts[variant]))} for variant in variants}
    latency = {"whole photo": {"p50": percentile(whole_ms, 50), "p95": percentile(whole_ms, 95)},
               **{f"region search, {variant}": {"p50": percentile(ms, 50), "p95": percentile(ms, 95)}
                  for variant, ms in regions_ms.items()}}
    return table, latency


# ---------------------------------------------------------------------------------------------------------------------
# Report


def scene_or_piece(dataset: Dataset, engine) -> dict:
    """How often region search takes a dev product photo for one piece (searched whole, its results kept) and a dev
    room for a scene (its pieces searched): the page's decision (``engine.regions.is_product_shot``)."""
    pieces = [engine.search_regions(dataset.product_images[pid], k=1).product_shot for pid in dataset.dev_products]
    scenes = [not engine.search_regions(room, k=1).product_shot for room in dataset.dev_rooms]
    return {"one_piece_rate": sum(pieces) / len(pieces), "scene_rate": sum(scenes) / len(scenes),
            "scene_or_piece_counts": [sum(pieces), len(pieces), sum(scenes), len(scenes)]}


def ikea_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of the benchmarks on the IKEA photos: the dataset, the split, the bundled catalogue, a scratch
    folder."""
    parser.add_argument("--ikea", type=Path, required=True, help="checkout of github.com/IvonaTau/ikea")
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="store of the bundled catalogue")
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder, kept (default: a temporary one)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = ikea_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--quick", action="store_true", help="first 40 dev products and 20 rooms; results not saved")
    parser.add_argument("--output", type=Path, default=RESULTS / "real")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    dataset = load_dataset(args.ikea, args.split)
    if args.quick:
        dataset = Dataset(dataset.root, dataset.catalogue, dataset.product_images, dataset.dev_products[:40],
                          dict(list(dataset.dev_rooms.items())[:20]))
    with tempfile.TemporaryDirectory(prefix="furniture-real-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        engine, facts = index_own_catalogue(dataset, work)
        own = {**facts, **own_catalogue(dataset, engine, work, VARIANTS)}
        print(f"own catalogue: R@1 {own['r1']:.3f}  R@10 {own['r10']:.3f}  category {own['category_accuracy']:.3f}", flush=True)
        room, latency = room_search(dataset, engine)
        print("rooms, R@10 whole / regions: " + ", ".join(
            f"{c} {room['whole'][c][10]:.2f} / {room['regions'][c][10]:.2f}" for c in room["whole"]), flush=True)
    bundled = bundled_catalogue(dataset, args.store, args.catalogue)
    print(f"bundled catalogue: category accuracy {bundled['accuracy']:.3f} {bundled['per_category']}", flush=True)
    results = {
        "machine": machine_info(),
        "command": "python -m benchmarks.real --ikea DIR" + (" --quick" if args.quick else ""),
        "seconds": time.perf_counter() - started,
        "dev_products": dataset.dev_products,
        "dev_rooms": len(dataset.dev_rooms),
        "variants": list(VARIANTS),
        "own": own,
        "bundled": bundled,
        "rooms": room,
        "latency": latency,
    }
    markdown = render_markdown(results)
    print(markdown)
    if not args.quick:
        save_results(args.output, markdown, results)


if __name__ == "__main__":
    main()
