"""Benchmark: find and identify furniture in cluttered room photos (issue #5).

    python -m benchmarks.scenes [--quick] [--store index_store/default]

Scenes are composed in 2D: each product is rendered alone by
``engine.gallery.render`` from a held-out viewpoint (never one of the catalogue's
yaw 0/35/90 views) on black and on white, which gives an exact alpha matte; the
cut-outs are then pasted, with soft contact shadows, onto a drawn room (wall,
floor, skirting board, window, pictures, rug, plants, boxes) at sizes that
follow a simple floor perspective. Boxes and product ids are therefore exact.
The composed scenes are cached in ``benchmarks/scenes/`` (small JPEGs plus
``scenes.json``) and regenerated with a fixed seed when missing or stale.

Measured in one run, on the same photos: box recall (IoU >= 0.5 with any
proposed region), the share of objects whose product is in the top 10 of the
best-overlapping region's results, the same for plain whole-photo search (the
baseline), and the added latency of region search. Results go to
``benchmarks/results/scenes.md``, with ``scenes.png``: the first scenes with their
true boxes (green) and the proposed regions (red, numbered best first).

The region scorer (``scripts/train_region_scorer.py``) learns from scenes made
by this same composer with other seeds (21-23; these use 5), so the figures are
those of a detector tested on new scenes of the kind it was trained on; real
photos differ more (lighting, occlusion, real rooms).
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from benchmarks.common import DEFAULT_GALLERY, RESULTS, ROOT, machine_info, machine_line, markdown_table

if TYPE_CHECKING:
    from engine.regions import WindowCandidates
    from engine.search import RegionSearch, SearchEngine

SCENES_DIR = ROOT / "benchmarks" / "scenes"
SCENE_SIZE = (800, 600)
SEED = 5
# 200 scenes (469 objects): with the first 30 (77 objects), the benchmark's size until 2026-11-24, one
# standard error of a share near 70% was 5 points, too coarse to tell 69% from 70%; now it is 2.
SCENES = 200
FIRST_SCENES = 30
# Real-world heights (m) are taken from the models; this many pixels per metre at the image bottom.
PIXELS_PER_METRE_NEAR = 330
# Catalogue views (engine.gallery.build.VIEWS) are at yaw 0, 35 and 90: stay clear of them.
HELD_OUT_YAWS = ((-75.0, -15.0), (50.0, 75.0), (110.0, 150.0), (-150.0, -110.0))

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class SceneObject:
    """One product pasted into a scene, with its exact box in scene pixels."""

    product_id: str
    category: str
    box: Box


@dataclass(frozen=True)
class Scene:
    """A composed photo (file name under the scenes folder) and what it shows."""

    file: str
    objects: tuple[SceneObject, ...]


# --------------------------------------------------------------------------
# Drawing a room


def draw_room(rng: random.Random, size: tuple[int, int] = SCENE_SIZE) -> tuple[Image.Image, int]:
    """A plain room: wall, floor and clutter that is not catalogue furniture.

    Returns the image and the horizon (the wall/floor line) in pixels.
    """
    width, height = size
    horizon = int(height * rng.uniform(0.38, 0.55))
    wall = tuple(rng.randint(150, 240) for _ in range(3))
    floor = tuple(rng.randint(70, 200) for _ in range(3))
    image = Image.new("RGB", size, wall)
    draw = ImageDraw.Draw(image)
    # Wall light falls off towards the top; floor gets planks converging to a vanishing point.
    for y in range(horizon):
        shade = 0.82 + 0.18 * y / horizon
        draw.line([(0, y), (width, y)], fill=tuple(int(c * shade) for c in wall))
    draw.rectangle([0, horizon, width, height], fill=floor)
    vanish_x = width * rng.uniform(0.3, 0.7)
    plank = tuple(max(0, c - 25) for c in floor)
    for i in range(-12, 25):
        x = i * width / 12
        draw.line([(vanish_x + (x - vanish_x) * 0.15, horizon), (x, height)], fill=plank, width=1)
    draw.rectangle([0, horizon - 10, width, horizon], fill=tuple(min(255, c + 30) for c in wall))  # skirting
    if rng.random() < 0.7:  # window with a view
        x0 = rng.randint(0, width - 200)
        y0 = rng.randint(10, max(11, horizon // 3))
        w, h = rng.randint(120, 200), rng.randint(100, max(101, horizon - y0 - 40))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=(250, 250, 245))
        draw.rectangle([x0 + 8, y0 + 8, x0 + w - 8, y0 + h - 8], fill=(170, 200, 230))
        draw.line([(x0 + w // 2, y0), (x0 + w // 2, y0 + h)], fill=(250, 250, 245), width=6)
    for _ in range(rng.randint(1, 3)):  # pictures on the wall
        x0, y0 = rng.randint(0, width - 90), rng.randint(10, max(11, horizon - 110))
        w, h = rng.randint(40, 110), rng.randint(40, 90)
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=(40, 30, 25))
        draw.rectangle([x0 + 5, y0 + 5, x0 + w - 5, y0 + h - 5], fill=tuple(rng.randint(40, 230) for _ in range(3)))
    if rng.random() < 0.8:  # rug
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(horizon + 40, height - 40)
        w, h = rng.uniform(150, 320), rng.uniform(40, 90)
        draw.ellipse([cx - w, cy - h, cx + w, cy + h], fill=tuple(rng.randint(60, 220) for _ in range(3)))
    for _ in range(rng.randint(1, 3)):  # potted plants and boxes on the floor
        x, y = rng.uniform(0, width), rng.uniform(horizon + 5, height)
        scale = 0.3 + 0.7 * (y - horizon) / (height - horizon)
        if rng.random() < 0.5:
            pot = 40 * scale
            draw.rectangle([x - pot / 2, y - pot, x + pot / 2, y], fill=(150, 80, 50))
            for _ in range(9):
                lx, ly = x + rng.uniform(-1, 1) * pot, y - pot - rng.uniform(0, 2.2) * pot
                draw.ellipse([lx - pot / 3, ly - pot / 5, lx + pot / 3, ly + pot / 5], fill=(40, rng.randint(100, 150), 50))
        else:
            w, h = rng.uniform(40, 90) * scale, rng.uniform(30, 70) * scale
            draw.rectangle([x - w / 2, y - h, x + w / 2, y], fill=(rng.randint(150, 200), rng.randint(120, 160), 90))
    return image, horizon


def paste_cutout(room: Image.Image, cutout: Image.Image, feet: tuple[int, int]) -> Box:
    """Paste an RGBA cut-out with its bottom centre at ``feet``, over a soft contact shadow; returns its box."""
    x, y = feet
    w, h = cutout.size
    x0, y0 = x - w // 2, y - h
    shadow = Image.new("L", room.size, 0)
    ImageDraw.Draw(shadow).ellipse([x0 - w * 0.05, y - h * 0.06, x0 + w * 1.05, y + h * 0.04], fill=120)
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(2, w // 25)))
    room.paste(Image.new("RGB", room.size, (20, 15, 10)), (0, 0), shadow)
    room.paste(cutout.convert("RGB"), (x0, y0), cutout.getchannel("A"))
    x1, y1 = x0 + w, y0 + h
    return max(0, x0), max(0, y0), min(room.width, x1), min(room.height, y1)


def cutout_from_renders(on_black: Image.Image, on_white: Image.Image) -> Image.Image:
    """An RGBA cut-out from two renders of one view on black and on white (difference matting)."""
    black = np.asarray(on_black, dtype=np.float32)
    white = np.asarray(on_white, dtype=np.float32)
    alpha = np.clip(1.0 - (white - black).mean(axis=2) / 255.0, 0.0, 1.0)
    colour = black / np.maximum(alpha[..., None], 1e-3)  # on black the render is colour * alpha
    rgba = np.dstack([np.clip(colour, 0, 255), alpha * 255]).astype(np.uint8)
    image = Image.fromarray(rgba, "RGBA")
    bbox = image.getchannel("A").point(lambda a: 255 if a > 24 else 0).getbbox()
    return image.crop(bbox) if bbox else image


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------
# Composing scenes from catalogue products


@dataclass(frozen=True)
class Product:
    """A catalogue product that can be rendered: its model and optional colour variant."""

    product_id: str
    category: str
    obj: Path
    rotation: tuple[float, ...] | None
    size_cm: tuple[float, float, float]
    colour: tuple[int, int, int] | None


def catalogue_products(gallery: Path) -> list[Product]:
    """The gallery's products, with the Sweet Home 3D models they were rendered from."""
    from engine.gallery import build, sh3d

    cache = ROOT / "build" / "sh3d"
    plan = build.plan_products(sh3d.read_entries(sh3d.fetch_packages(cache), cache), per_category=40)
    return [
        Product(p.product_id, p.category, sh3d.extract_model(p.entry, cache), p.entry.rotation, p.entry.size_cm,
                p.colour[1] if p.colour else None)
        for p in plan
        if (gallery / p.category / p.product_id).is_dir()
    ]


def render_cutout(product: Product, rng: random.Random, size: int = 400) -> Image.Image:
    """The product from a held-out viewpoint, as an RGBA cut-out."""
    from engine.gallery.render import load_model, recolor, render_view

    scene = load_model(product.obj, rotation=product.rotation, size_cm=product.size_cm)
    if product.colour:
        scene = recolor(scene, product.colour)
    low, high = rng.choice(HELD_OUT_YAWS)
    yaw, pitch = rng.uniform(low, high), rng.uniform(10, 28)
    light = rng.choice(["studio", "warm"])
    renders = [render_view(scene, yaw, pitch, size=size, background=bg, light=light, fill_ratio=0.95)
               for bg in ((0, 0, 0), (255, 255, 255))]
    return cutout_from_renders(*renders)


def degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Phone-like capture: slight blur, a colour cast and sensor noise."""
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.1)))
    arr = np.asarray(image, dtype=np.float32) * np.array([rng.uniform(0.93, 1.07) for _ in range(3)], np.float32)
    arr += np.random.default_rng(rng.randrange(2**32)).normal(0.0, rng.uniform(2.0, 5.0), arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def compose_scene(products: list[Product], rng: random.Random) -> tuple[Image.Image, list[SceneObject]]:
    """A room with 2-4 of ``products`` standing on the floor, far ones first; returns the photo and the objects."""
    room, horizon = draw_room(rng)
    width, height = room.size
    count = rng.randint(2, 4)
    placed: list[tuple[Box, Product, Image.Image]] = []
    for product in rng.sample(products, count):
        cutout = render_cutout(product, rng)
        # Nearer objects stand lower in the picture and look bigger (a flat floor seen from eye height).
        feet_y = int(rng.uniform(horizon + 0.3 * (height - horizon), height - 4))
        depth = (feet_y - horizon) / (height - horizon)
        extent = PIXELS_PER_METRE_NEAR * max(product.size_cm) / 100 * (0.45 + 0.55 * depth)
        scale = min(extent, 0.6 * width, 0.75 * height) / max(cutout.size)
        cutout = cutout.resize((max(8, round(cutout.width * scale)), max(8, round(cutout.height * scale))), Image.LANCZOS)
        if max(cutout.size) < 60:
            continue
        for _ in range(40):
            feet_x = int(rng.uniform(cutout.width * 0.35, width - cutout.width * 0.35))
            box = (feet_x - cutout.width // 2, feet_y - cutout.height, feet_x - cutout.width // 2 + cutout.width, feet_y)
            if all(overlap(box, other) < 0.2 for other, _, _ in placed):
                placed.append((box, product, cutout))
                break
    objects = []
    for box, product, cutout in sorted(placed, key=lambda p: p[0][3]):
        pasted = paste_cutout(room, cutout, ((box[0] + box[2]) // 2, box[3]))
        objects.append(SceneObject(product.product_id, product.category, pasted))
    return degrade(room, rng), objects


def overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area (how much one hides the other)."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


# --------------------------------------------------------------------------
# Running the benchmark


def load_or_compose(gallery: Path, count: int, folder: Path = SCENES_DIR, seed: int = SEED) -> list[Scene]:
    """The scenes cached in ``folder`` if they match the gallery and ``count``, else newly composed ones from ``seed``."""
    index = folder / "scenes.json"
    if index.is_file():
        cached = [Scene(s["file"], tuple(SceneObject(o["product_id"], o["category"], tuple(o["box"])) for o in s["objects"]))
                  for s in json.loads(index.read_text())]
        if len(cached) >= count and all((gallery / o.category / o.product_id).is_dir()
                                        for s in cached[:count] for o in s.objects):
            return cached[:count]
    products = catalogue_products(gallery)
    by_category: dict[str, list[Product]] = {}
    for product in products:
        by_category.setdefault(product.category, []).append(product)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = []
    for number in range(count):
        rng = random.Random(seed * 1000 + number)
        # Draw the category first so that every category is as likely, whatever its product count.
        picks = [rng.choice(by_category[rng.choice(sorted(by_category))]) for _ in range(6)]
        picks = list({p.product_id: p for p in picks}.values())
        image, objects = compose_scene(picks, rng)
        name = f"scene_{number:03d}.jpg"
        image.save(folder / name, quality=82)
        scenes.append(Scene(name, tuple(objects)))
    index.write_text(json.dumps([asdict(s) for s in scenes], indent=1))
    return scenes


def run(store: Path, gallery: Path, count: int, max_regions: int, folder: Path = SCENES_DIR, seed: int = SEED,
        other_threads: int | None = None) -> dict:
    """Search every scene whole and by region; returns the measurements.

    With ``other_threads``, the first scenes' latencies are measured again with that many torch threads.
    """
    import torch

    from engine.indexing import index_catalog, index_is_current
    from engine.search import SearchEngine

    if not index_is_current(gallery, store):
        index_catalog(gallery, store)
    engine = SearchEngine.open(store, gallery=gallery)
    scenes = load_or_compose(gallery, count, folder, seed)
    rows = []
    proposed: dict[str, list[Box]] = {}
    whole_ms, region_ms = [], []
    engine.search(folder / scenes[0].file)  # warm-up: first calls allocate
    for scene in scenes:
        path = folder / scene.file
        whole, milliseconds = timed(engine.search, path, k=10)
        whole_ms.append(milliseconds)
        regional, milliseconds = timed(engine.search_regions, path, k=10, max_regions=max_regions)
        region_ms.append(milliseconds)
        whole_ids = {r.product_id for r in whole.results}
        proposed[scene.file] = [m.region.box for m in regional.matches]
        for obj in scene.objects:
            found, top10 = region_hit(obj, regional)
            rows.append({
                "scene": scene.file, "product_id": obj.product_id, "category": obj.category,
                "box_found": found, "region_top10": top10,
                "any_region_top10": any(obj.product_id in {r.product_id for r in m.response.results} for m in regional.matches),
                "whole_top10": obj.product_id in whole_ids,
                "product_shot": regional.product_shot,
            })
    # The ceiling of the ranking: does any candidate window fit the object at all?
    for row, fits in zip(rows, candidate_fits(engine, scenes, folder)):
        row["candidate_fits"] = fits
    # The same without the trained window scorer: the ranking a catalogue with other categories gets.
    scorer, engine.window_scorer = engine.window_scorer, None
    untrained = [region_hit(obj, engine.search_regions(folder / scene.file, k=10, max_regions=max_regions))
                 for scene in scenes for obj in scene.objects]
    engine.window_scorer = scorer
    for row, (found, top10) in zip(rows, untrained):
        row["untrained_box_found"], row["untrained_top10"] = found, top10
    measured = {"rows": rows, "whole_ms": whole_ms, "region_ms": region_ms, "proposed": proposed, "scenes": scenes,
                "threads": torch.get_num_threads()}
    if other_threads:
        torch.set_num_threads(other_threads)
        measured["other_threads"] = other_threads
        measured["other_whole_ms"], measured["other_region_ms"] = [], []
        for scene in scenes[:FIRST_SCENES]:
            measured["other_whole_ms"].append(timed(engine.search, folder / scene.file, k=10)[1])
            measured["other_region_ms"].append(timed(engine.search_regions, folder / scene.file, k=10)[1])
        torch.set_num_threads(measured["threads"])
    measured["throughput"] = region_throughput(engine, [folder / scene.file for scene in scenes[:FIRST_SCENES]])
    return measured


def timed(search, *args, **kwargs) -> tuple[object, float]:
    """``search(*args, **kwargs)``'s answer and how long it took, in milliseconds."""
    started = time.perf_counter()
    answer = search(*args, **kwargs)
    return answer, (time.perf_counter() - started) * 1000


def region_throughput(engine: SearchEngine, paths: list[Path]) -> dict[str, float]:
    """Region searches per second on all cores: one search at a time with all torch threads (the app's setting),
    against one single-threaded search per core side by side."""
    import torch

    threads = torch.get_num_threads()
    started = time.perf_counter()
    for path in paths:
        engine.search_regions(path)
    one_at_a_time = len(paths) / (time.perf_counter() - started)
    torch.set_num_threads(1)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:  # torch releases the GIL inside its ops
        list(pool.map(engine.search_regions, paths * threads))
    side_by_side = len(paths) * threads / (time.perf_counter() - started)
    torch.set_num_threads(threads)
    return {"one_at_a_time": one_at_a_time, "side_by_side": side_by_side, "threads": threads}


def candidate_boxes(engine: SearchEngine, path: Path) -> tuple[WindowCandidates, list[Box]]:
    """The photo's candidate windows (as region search ranks them) and their boxes in photo pixels."""
    from engine.images import load_image
    from engine.regions import candidate_windows, cells_to_pixels, proposal_feature_map

    cells, scale_x, scale_y = proposal_feature_map(engine.extractor, load_image(path))
    candidates = candidate_windows(cells, engine.catalogue)
    return candidates, [cells_to_pixels(window, scale_x, scale_y) for window in candidates.windows]


def candidate_fits(engine: SearchEngine, scenes: list[Scene], folder: Path) -> list[bool]:
    """Per object of ``scenes``, in order: whether any of the photo's candidate windows has IoU >= 0.5 with it."""
    fits = []
    for scene in scenes:
        _, boxes = candidate_boxes(engine, folder / scene.file)
        fits += [max((box_iou(obj.box, box) for box in boxes), default=0.0) >= 0.5 for obj in scene.objects]
    return fits


def region_hit(obj: SceneObject, regional: RegionSearch) -> tuple[bool, bool]:
    """Whether a proposed region fits ``obj`` (IoU >= 0.5), and whether the best-fitting one finds its product in its top 10."""
    ious = [box_iou(obj.box, m.region.box) for m in regional.matches]
    best = int(np.argmax(ious))
    found = ious[best] >= 0.5
    return found, found and obj.product_id in {r.product_id for r in regional.matches[best].response.results}


def contact_sheet(scenes: list[Scene], proposed: dict[str, list[Box]], folder: Path = SCENES_DIR,
                  columns: int = 3, rows: int = 3, tile: tuple[int, int] = (400, 300)) -> Image.Image:
    """The first scenes with true boxes in green and proposed regions in red, numbered best first."""
    sheet = Image.new("RGB", (columns * tile[0], rows * tile[1]), "white")
    for number, scene in enumerate(scenes[: columns * rows]):
        image = Image.open(folder / scene.file).convert("RGB")
        draw = ImageDraw.Draw(image)
        for obj in scene.objects:
            draw.rectangle(obj.box, outline=(0, 220, 0), width=5)
        for rank, box in enumerate(proposed.get(scene.file, []), start=1):
            draw.rectangle(box, outline=(230, 0, 0), width=3)
            draw.rectangle((box[0], box[1], box[0] + 22, box[1] + 22), fill=(230, 0, 0))
            draw.text((box[0] + 7, box[1] + 5), str(rank), fill="white")
        sheet.paste(image.resize(tile), ((number % columns) * tile[0], (number // columns) * tile[1]))
    return sheet


def share(rows: list[dict], key: str) -> str:
    return f"{sum(r[key] for r in rows) / max(len(rows), 1):.0%}"


def other_threads_line(measured: dict) -> str:
    """The latencies measured again with the other thread count, if they were."""
    if "other_threads" not in measured:
        return ""
    whole, region = statistics.median(measured["other_whole_ms"]), statistics.median(measured["other_region_ms"])
    return (f" With {measured['other_threads']} torch thread(s), same run, first {len(measured['other_whole_ms'])} "
            f"scenes: {whole:.0f} ms and {region:.0f} ms, added {region - whole:.0f} ms.")


def first_scenes_line(rows: list[dict], first_files: list[str]) -> list[str]:
    """The headline shares on the first scenes alone (the benchmark's former size), when there are more."""
    first = [r for r in rows if r["scene"] in set(first_files)]
    if len(first) == len(rows):
        return []
    return [f"On the first {len(first_files)} scenes alone ({len(first)} objects): box found {share(first, 'box_found')}, "
            f"product in top 10 of its region {share(first, 'region_top10')}, whole photo {share(first, 'whole_top10')}.",
            ""]


def report(measured: dict, count: int, max_regions: int) -> str:
    """The markdown report."""
    from engine.regions import CANDIDATES

    rows = measured["rows"]
    whole, region = statistics.median(measured["whole_ms"]), statistics.median(measured["region_ms"])
    keys = ("box_found", "region_top10", "any_region_top10", "whole_top10", "untrained_box_found", "untrained_top10",
            "candidate_fits")
    table = [("all", len(rows), *(share(rows, key) for key in keys))]
    for category in sorted({r["category"] for r in rows}):
        sub = [r for r in rows if r["category"] == category]
        table.append((category, len(sub), *(share(sub, key) for key in keys)))
    shots = sum(1 for scene in {r["scene"]: r["product_shot"] for r in rows}.values() if scene)
    return "\n".join([
        "# Scenes: finding furniture in cluttered photos",
        "",
        f"`python -m benchmarks.scenes{' --quick' if count < SCENES else ''}` on "
        f"{datetime.date.today().isoformat()}; {machine_line(machine_info())}.",
        "",
        f"{count} composed room scenes (2-4 products each, held-out viewpoints, drawn room with clutter; "
        f"see the module docstring), {len(rows)} objects, up to {max_regions} regions per photo.",
        "",
        markdown_table(["objects", "n", "box found (IoU >= 0.5)", "product in top 10 of its region",
                        "product in top 10 of any region", "whole-photo top 10 (baseline)",
                        "untrained ranking: box found", "untrained ranking: top 10 of its region",
                        "some candidate window fits"], table),
        "",
        *first_scenes_line(rows, [scene.file for scene in measured["scenes"][:FIRST_SCENES]]),
        f"Latency per photo (median): whole-photo search {whole:.0f} ms, region search {region:.0f} ms, "
        f"added {region - whole:.0f} ms, with {measured['threads']} torch thread(s)."
        f"{other_threads_line(measured)} Photos judged product shots (searched whole): {shots} of {count}.",
        "",
        f"Region searches per second on {measured['throughput']['threads']} cores: "
        f"{measured['throughput']['one_at_a_time']:.1f} one at a time with {measured['throughput']['threads']} threads "
        f"(the app's setting), {measured['throughput']['side_by_side']:.1f} with {measured['throughput']['threads']} "
        "one-thread searches side by side.",
        "",
        "*Untrained ranking*: the same regions ranked without the trained window scorer (contrast x category "
        "probability), as for a catalogue whose categories the scorer was not trained on. *Some candidate window "
        f"fits*: one of the (up to {CANDIDATES}) windows ranked has IoU >= 0.5 with the object, the most any ranking "
        "could box.",
        "",
        "![true boxes green, proposed regions red](scenes.png)",
        "",
    ])


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"10 scenes instead of {SCENES}")
    parser.add_argument("--store", type=Path, default=ROOT / "index_store" / "default")
    parser.add_argument("--gallery", type=Path, default=DEFAULT_GALLERY)
    parser.add_argument("--max-regions", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (default: torch's, all cores, as the app); latency is measured again "
                             "with the other count (1, or 2 when given 1) on the first scenes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    count = 10 if args.quick else SCENES
    measured = run(args.store, args.gallery, count, args.max_regions, other_threads=2 if args.threads == 1 else 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = report(measured, count, args.max_regions)
    (RESULTS / "scenes.md").write_text(text, encoding="utf-8")
    # 256 colours keep the committed sheet small; the drawings are flat-coloured anyway.
    contact_sheet(measured["scenes"], measured["proposed"]).quantize(256).save(RESULTS / "scenes.png", optimize=True)
    print(text)


if __name__ == "__main__":
    main()
