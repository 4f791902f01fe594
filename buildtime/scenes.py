"""Compose room scenes in 2D from catalogue renders, with exact boxes: the region scorer's training data
(``buildtime.train_region_scorer``, seeds 21-23) and the scenes benchmark's photos (``benchmarks.scenes``, seed 5).

Each product is rendered alone by ``buildtime.catalogue.render`` from a held-out viewpoint (never one of
the catalogue's yaw 0/35/90 views) on black and on white, which gives an exact alpha matte; the cut-outs
are then pasted, with soft contact shadows, onto a drawn room (wall, floor, skirting board, window,
pictures, rug, plants, boxes) at sizes that follow a simple floor perspective. Composed scenes are cached
(small JPEGs plus ``scenes.json``) and regenerated with a fixed seed when missing or stale.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

if TYPE_CHECKING:
    from engine.window_features import WindowCandidates
    from engine.search import SearchEngine

ROOT = Path(__file__).resolve().parent.parent
SCENES_DIR = ROOT / "benchmarks" / "scenes"
SCENE_SIZE = (800, 600)
SEED = 5  # the benchmark's scenes; training uses other seeds
# Real-world heights (m) are taken from the models; this many pixels per metre at the image bottom.
PIXELS_PER_METRE_NEAR = 330
# Catalogue views (buildtime.catalogue.build.VIEWS) are at yaw 0, 35 and 90: stay clear of them.
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
class SceneProduct:
    """A catalogue product that can be rendered: its model and optional colour variant."""

    product_id: str
    category: str
    obj: Path
    rotation: tuple[float, ...] | None
    size_cm: tuple[float, float, float]
    colour: tuple[int, int, int] | None


def catalogue_products(catalogue: Path) -> list[SceneProduct]:
    """The catalogue's products, with the Sweet Home 3D models they were rendered from."""
    from buildtime.catalogue import build, sh3d

    cache = ROOT / "build" / "sh3d"
    plan = build.plan_products(sh3d.read_entries(sh3d.fetch_packages(cache), cache), per_category=40)
    return [
        SceneProduct(p.product_id, p.category, sh3d.extract_model(p.entry, cache), p.entry.rotation, p.entry.size_cm,
                p.colour[1] if p.colour else None)
        for p in plan
        if (catalogue / p.category / p.product_id).is_dir()
    ]


def render_cutout(product: SceneProduct, rng: random.Random, size: int = 400) -> Image.Image:
    """The product from a held-out viewpoint, as an RGBA cut-out."""
    from buildtime.catalogue.meshes import load_model, recolor
    from buildtime.catalogue.render import render_view

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


def compose_scene(products: list[SceneProduct], rng: random.Random) -> tuple[Image.Image, list[SceneObject]]:
    """A room with 2-4 of ``products`` standing on the floor, far ones first; returns the photo and the objects."""
    room, horizon = draw_room(rng)
    width, height = room.size
    count = rng.randint(2, 4)
    placed: list[tuple[Box, SceneProduct, Image.Image]] = []
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


def load_or_compose(catalogue: Path, count: int, folder: Path = SCENES_DIR, seed: int = SEED) -> list[Scene]:
    """The scenes cached in ``folder`` if they match the catalogue and ``count``, else newly composed ones from ``seed``."""
    index = folder / "scenes.json"
    if index.is_file():
        cached = [Scene(s["file"], tuple(SceneObject(o["product_id"], o["category"], tuple(o["box"])) for o in s["objects"]))
                  for s in json.loads(index.read_text())]
        if len(cached) >= count and all((catalogue / o.category / o.product_id).is_dir()
                                        for s in cached[:count] for o in s.objects):
            return cached[:count]
    products = catalogue_products(catalogue)
    by_category: dict[str, list[SceneProduct]] = {}
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


def candidate_boxes(engine: SearchEngine, path: Path) -> tuple[WindowCandidates, list[Box]]:
    """The photo's candidate windows (as region search ranks them) and their boxes in photo pixels."""
    from engine.images import load_image
    from engine.window_features import candidate_windows, cells_to_pixels, proposal_feature_map

    cells, scale_x, scale_y = proposal_feature_map(engine.backbone, load_image(path))
    candidates = candidate_windows(cells, engine.proposal_sample)
    return candidates, [cells_to_pixels(window, scale_x, scale_y) for window in candidates.windows]
