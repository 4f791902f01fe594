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
   with phone-like photos made from its product photo by ``phone_photo`` (see
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
import io
import json
import math
import os
import pickle
import random
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from benchmarks.common import (DEFAULT_CATALOGUE, RESULTS, ROOT, machine_info, machine_line, markdown_table, percentile,
                               save_results)

if TYPE_CHECKING:
    from engine.search import SearchEngine

DEFAULT_SPLIT = ROOT.parent / "shared" / "real-photos" / "split.json"
DEFAULT_STORE = ROOT / "index_store" / "default"
SEED = 15
KS = (1, 10, 30)
MAX_REGIONS = 4
# How each dev product is photographed; see phone_photo.
VARIANTS = ("room", "home", "close")
QUERY_LONG_SIDE = 1200
# Bump when phone_photo changes: queries are cached in the scratch folder under this name.
QUERIES_FOLDER = "phone-queries-v1"
# The figures this benchmark started from (issue #15, measured through the CLI before this benchmark existed).
ISSUE_BASELINE = {
    "own_r1": 0.79, "own_r10": 0.93, "bundled_accuracy": 0.84,
    "rooms_r10_regions": {"chair": 0.45, "table": 0.50, "sofa": 0.32, "bed": 0.60, "lamp": 0.14},
    "rooms_r10_whole": {"chair": 0.14, "table": 0.23, "sofa": 0.50, "bed": 0.47, "lamp": 0.14},
}
# The dataset authors' notebook (VGG19 features, a YOLO crop of the class), R@10 per class; lamps and beds not reported.
NOTEBOOK_R10 = {"chair": 0.664, "sofa": 0.417, "table": 0.432}
CATEGORIES = ("bed", "chair", "lamp", "sofa", "table")


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
# Phone-like photos of a product photo


def product_matte(photo: Image.Image) -> Image.Image:
    """An "L" mask of the product in a studio photo on white: everything but the near-white area reaching the border.

    White parts inside the product (a white cushion) are not reached from the border and stay in the mask.
    """
    pixels = np.asarray(photo.convert("RGB"), dtype=np.int16)
    near_white = torch.from_numpy((255 - pixels).max(axis=2) < 14)[None, None].float()
    # Grow the border's white area through white pixels until it stops: on a 4x smaller grid (a cell is white
    # when all its pixels are), then a few steps at full size to reach the pixels beside the product.
    coarse_white = -torch.nn.functional.max_pool2d(-near_white, 4, 4, ceil_mode=True)
    reached = torch.zeros_like(coarse_white)
    reached[..., 0, :], reached[..., -1, :], reached[..., :, 0], reached[..., :, -1] = 1, 1, 1, 1
    reached *= coarse_white
    while True:
        grown = torch.nn.functional.max_pool2d(reached, 3, 1, 1) * coarse_white
        if torch.equal(grown, reached):
            break
        reached = grown
    height, width = near_white.shape[-2:]
    reached = reached.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)[..., :height, :width] * near_white
    for _ in range(6):
        reached = torch.nn.functional.max_pool2d(reached, 3, 1, 1) * near_white
    mask = Image.fromarray(((1 - reached[0, 0].numpy()) * 255).astype(np.uint8))
    return mask.filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.GaussianBlur(1.2))


def _perspective_coefficients(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``target`` to input points ``source``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def _viewpoint_warp(image: Image.Image, mask: Image.Image, rng: random.Random) -> tuple[Image.Image, Image.Image]:
    """A perspective warp like a few degrees of turn and tilt: one side nearer, the top or bottom foreshortened."""
    width, height = image.size
    turn, tilt = rng.uniform(-0.12, 0.12), rng.uniform(-0.08, 0.08)
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    moved = [
        (0, height * (max(turn, 0) + max(tilt, 0))), (width, height * (max(-turn, 0) + max(tilt, 0))),
        (width - width * max(-tilt, 0), height - height * max(-turn, 0)), (width * max(-tilt, 0), height - height * max(turn, 0)),
    ]
    moved = [(x + rng.uniform(-0.02, 0.02) * width, y + rng.uniform(-0.02, 0.02) * height) for x, y in moved]
    coefficients = _perspective_coefficients(corners, moved)
    warp = lambda im, fill: im.transform(image.size, Image.PERSPECTIVE, coefficients, Image.BICUBIC, fillcolor=fill)
    return warp(image, (255, 255, 255)), warp(mask, 0)


def _home_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A drawn room corner: a tinted wall, a wooden or tiled floor with perspective lines, a skirting board."""
    width, height = size
    wall = tuple(rng.randrange(150, 245) for _ in range(3))
    floor = (rng.randrange(90, 200), rng.randrange(60, 150), rng.randrange(30, 110))
    image = Image.new("RGB", size, wall)
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.45, 0.7))
    draw.rectangle([0, horizon, width, height], fill=floor)
    for i in range(-12, 13):  # floorboards converging towards a vanishing point
        x = width / 2 + i * width / 6
        draw.line([(width / 2 + i * width / 40, horizon), (x, height)], fill=tuple(max(0, c - 25) for c in floor), width=3)
    draw.rectangle([0, horizon - 12, width, horizon], fill=tuple(min(255, c + 20) for c in wall))
    if rng.random() < 0.5:  # a picture or a window on the wall
        x0, y0 = rng.randrange(width // 2), rng.randrange(max(1, horizon // 3))
        draw.rectangle([x0, y0, x0 + width // 5, y0 + horizon // 3], fill=tuple(rng.randrange(256) for _ in range(3)),
                       outline=(40, 40, 40), width=6)
    return image.filter(ImageFilter.GaussianBlur(1.5))


def _room_background(rooms: list[Path], size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A random crop of a room photo, slightly out of focus (the product is what the camera focused on)."""
    with Image.open(rng.choice(rooms)) as room:
        room = room.convert("RGB")
    width, height = size
    scale = max(width / room.width, height / room.height) * rng.uniform(1.0, 1.6)
    room = room.resize((math.ceil(room.width * scale), math.ceil(room.height * scale)), Image.BILINEAR)
    x0, y0 = rng.randrange(room.width - width + 1), rng.randrange(room.height - height + 1)
    return room.crop((x0, y0, x0 + width, y0 + height)).filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 3.0)))


def phone_photo(product: Image.Image, variant: str, rooms: list[Path], seed: int) -> bytes:
    """A phone-like JPEG of the product in ``product`` (a studio photo on white), made reproducibly from ``seed``.

    ``variant``: "room" pastes the product on a crop of a room photo, "home" on a
    drawn room corner, both at 35-75% of the frame and off centre; "close" fills
    the frame and is cut off at one or two edges. All get a viewpoint-like
    perspective warp, a contact shadow, white balance and exposure changes, a
    little blur, sensor noise and JPEG compression at quality 60-90, and a third
    of them are stored sideways with an EXIF orientation tag, as phones do.
    """
    rng = random.Random(seed)
    product = product.convert("RGB")
    mask = product_matte(product)
    product, mask = _viewpoint_warp(product, mask, rng)
    box = mask.getbbox() or (0, 0, *product.size)
    product, mask = product.crop(box), mask.crop(box)
    portrait = rng.random() < 0.5
    size = (QUERY_LONG_SIDE * 3 // 4, QUERY_LONG_SIDE) if portrait else (QUERY_LONG_SIDE, QUERY_LONG_SIDE * 3 // 4)
    if variant == "room":
        canvas, share = _room_background(rooms, size, rng), rng.uniform(0.35, 0.75)
    elif variant == "home":
        canvas, share = _home_background(size, rng), rng.uniform(0.35, 0.75)
    elif variant == "close":
        canvas, share = _home_background(size, rng), rng.uniform(0.9, 1.2)
    else:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    scale = share * min(size[0] / product.width, size[1] / product.height)
    scaled = (max(1, round(product.width * scale)), max(1, round(product.height * scale)))
    product, mask = product.resize(scaled, Image.LANCZOS), mask.resize(scaled, Image.BILINEAR)
    spare_x, spare_y = size[0] - scaled[0], size[1] - scaled[1]
    if variant == "close":  # partial framing: the product runs off one or two edges
        x = round(rng.uniform(min(spare_x, 0) - 0.1 * scaled[0], max(spare_x, 0) + 0.1 * scaled[0]))
        y = round(rng.uniform(min(spare_y, 0) - 0.1 * scaled[1], max(spare_y, 0) + 0.1 * scaled[1]))
    else:  # off centre, standing in the lower part of the frame
        x = round(rng.uniform(0.1, 0.9) * spare_x)
        y = round(rng.uniform(0.4, 1.0) * spare_y)
    shadow = Image.new("L", size, 0)
    shadow.paste(mask.resize((scaled[0], max(1, scaled[1] // 8))), (x + scaled[0] // 20, y + scaled[1] - scaled[1] // 12))
    canvas = Image.composite(Image.new("RGB", size, (30, 25, 20)), canvas,
                             shadow.filter(ImageFilter.GaussianBlur(12)).point(lambda v: v * 0.5))
    canvas.paste(product, (x, y), mask)
    pixels = np.asarray(canvas, dtype=np.float32)
    gains = np.array([rng.uniform(0.85, 1.15), 1.0, rng.uniform(0.85, 1.15)], np.float32) * rng.uniform(0.7, 1.2)
    pixels = 255.0 * (np.clip(pixels * gains / 255.0, 0, 1) ** rng.uniform(0.8, 1.25))
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    vignette = 1.0 - rng.uniform(0.1, 0.35) * (((xx / size[0] - 0.5) ** 2 + (yy / size[1] - 0.5) ** 2) * 2)
    pixels *= vignette[..., None]
    pixels += np.random.default_rng(seed).normal(0, rng.uniform(2, 8), pixels.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.6)))
    out = io.BytesIO()
    exif = Image.Exif()
    if rng.random() < 1 / 3:
        # Sensor-oriented pixels plus Orientation 6 ("rotate 90 clockwise to view"), as a phone held upright writes them.
        photo = photo.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    photo.save(out, "JPEG", quality=rng.randrange(60, 91), exif=exif.tobytes())
    return out.getvalue()


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
            best: dict[str, float] = {}
            for match in engine.search_regions(room, k=k, max_regions=MAX_REGIONS, category=c).matches:
                for result in match.response.results:
                    best[result.product_id] = max(best.get(result.product_id, -1.0), result.score)
            merged = sorted(best, key=best.get, reverse=True)
            for mode, ranked in (("whole", whole), ("regions", merged)):
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


# The decision before issue #25 (a plain border and no second region at half the best's confidence), same dev set.
SCENE_OR_PIECE_BEFORE = {"one_piece_rate": 159 / 232, "scene_rate": 103 / 103}


def render_markdown(results: dict) -> str:
    own, bundled, room = results["own"], results["bundled"], results["rooms"]
    base = ISSUE_BASELINE
    lines = [
        "# Real-photo benchmark (IKEA interior dataset, dev queries)",
        "",
        machine_line(results["machine"]),
        f"Command: `{results['command']}` ({results['seconds']:.0f} s). Dev queries only: "
        f"{len(results['dev_products'])} products, {results['dev_rooms']} rooms. Tables of figures only; "
        "the dataset's images are IKEA's (non-commercial use) and are not in this repository.",
        "",
        "## Own catalogue: 452 real product photos, queried with phone-like photos of the dev products",
        "",
        f"Indexed {own['images_indexed']} images in {own['index_seconds']:.1f} s. Queries: "
        f"{', '.join(results['variants'])} (see `phone_photo` in `benchmarks/real.py`), one per dev product each.",
        "",
        markdown_table(
            ["", "queries", "R@1", "R@10", "mAP@10", "category accuracy"],
            [["issue #15 as filed", "-", base["own_r1"], base["own_r10"], "-", "-"],
             ["this run, all", own["queries"], own["r1"], own["r10"], own["map10"], own["category_accuracy"]],
             *[[f"this run, {v}", s["queries"], s["r1"], s["r10"], s["map10"], s["category_accuracy"]]
               for v, s in own["by_variant"].items()]],
        ),
        "",
        "## Bundled (rendered) catalogue: the dev products' real product photos",
        "",
        markdown_table(
            ["", "queries", "category accuracy", *CATEGORIES, "close match", "top score p10 / p50 / p90"],
            [["issue #15 as filed", "-", base["bundled_accuracy"], 0.79, "-", 0.84, "-", 0.85, "-", "-"],
             ["this run", bundled["queries"], bundled["accuracy"], *(bundled["per_category"].get(c, "-") for c in CATEGORIES),
              bundled["close_match_rate"], " / ".join(f"{bundled['top_score'][p]:.2f}" for p in ("p10", "p50", "p90"))]],
        ),
        "",
        "## Scene or one piece: the page's decision on the dev product photos and the dev room photos",
        "",
        "A product photo should be searched as one piece (its results kept), a room as a scene (its pieces searched); "
        "goal of issue #25: 95% right on each.",
        "",
        markdown_table(
            ["", "product photos judged one piece", "rooms judged scenes"],
            [["before #25 (plain border and no second region at half the best's confidence)",
              SCENE_OR_PIECE_BEFORE["one_piece_rate"], SCENE_OR_PIECE_BEFORE["scene_rate"]],
             ["this run (plain border, or no region)", bundled["one_piece_rate"], bundled["scene_rate"]]],
        ),
        "",
        "## Rooms: the dev room photos, searched per class in that class (recall of the room's items of the class)",
        "",
        "Whole: `search --category c`. Regions: `search --regions --category c` (up to 4 regions of class c), "
        "the results of its regions merged by similarity.",
        "",
    ]
    rows = []
    for c in CATEGORIES:
        if c not in room["whole"]:
            continue
        rows.append([c, room["rooms_per_class"][c], NOTEBOOK_R10.get(c, "-"),
                     base["rooms_r10_whole"][c], base["rooms_r10_regions"][c],
                     *(room["whole"][c][k] for k in KS), *(room["regions"][c][k] for k in KS)])
    lines += [
        markdown_table(
            ["class", "rooms", "notebook R@10", "issue: whole R@10", "issue: regions R@10",
             *(f"whole R@{k}" for k in KS), *(f"regions R@{k}" for k in KS)],
            rows,
        ),
        "",
        "Region search as the app runs it (`category=\"auto\"`, up to 4 regions). The dataset has no boxes; these "
        "stand in for box precision and recall:",
        "",
        markdown_table(
            ["", "regions labelled with a class of the room's catalogued items", "the room's classes with a region of "
             "that class", "regions per photo"],
            [[variant, f"{v['labelled_as_room_class']:.0%}", f"{v['room_classes_boxed']:.0%}", f"{v['per_photo']:.1f}"]
             for variant, v in room["auto_regions"].items()],
        ),
        "",
        "## Latency on the room photos (engine, one process)",
        "",
        markdown_table(
            ["", "p50 ms", "p95 ms"],
            [[name, figures["p50"], figures["p95"]] for name, figures in results["latency"].items()],
        ),
        "",
        "Each region search runs right after the room's whole-photo search; with the detector it reuses that search's "
        "detections. (The page runs a scene's region search alone, its detector pass included.)",
        "",
    ]
    return "\n".join(lines)


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
