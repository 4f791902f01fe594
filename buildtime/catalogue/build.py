"""Build the reference gallery, the held-out queries, credits and contact sheets.

Layout written (see docs/gallery.md):

* ``<out>/<category>/<product_id>/{front_three_quarter,side,front}.jpg``
* ``<out>/manifest.csv``: ``product_id,name,category,source,source_url,creator,license,model_id``
* ``<queries>/<category>/<product_id>__<variant>.jpg``
* ``<queries>/ground_truth.csv``: ``path,product_id,category,variant``
* ``CREDITS.md`` and ``docs/contact_sheet_<category>.png`` (+ ``_queries``)
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import random
import re
import shutil
import textwrap
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from buildtime.catalogue import sh3d

#: Catalogue views: name -> (yaw, pitch) in degrees.
VIEWS: dict[str, tuple[float, float]] = {
    "front_three_quarter": (35.0, 14.0),
    "side": (90.0, 8.0),
    "front": (0.0, 8.0),
}

#: Colours for the material variants that pad small categories.
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("blue", (45, 85, 160)),
    ("red", (170, 40, 40)),
    ("green", (60, 120, 70)),
    ("mustard", (205, 160, 40)),
    ("charcoal", (60, 60, 64)),
    ("teal", (30, 120, 125)),
    ("pink", (215, 140, 160)),
    ("orange", (210, 110, 40)),
    ("purple", (105, 70, 140)),
    ("cream", (235, 225, 200)),
)

#: Room colours for query backdrops: (floor, wall).
ROOMS: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((150, 110, 75), (232, 222, 200)),   # oak floor, cream wall
    ((120, 120, 125), (170, 195, 215)),  # grey floor, light blue wall
    ((190, 160, 120), (200, 215, 185)),  # light wood, sage wall
    ((90, 70, 55), (235, 205, 185)),     # dark wood, peach wall
    ((175, 175, 170), (120, 135, 160)),  # concrete, slate blue wall
    ((200, 190, 175), (180, 90, 70)),    # beige tiles, terracotta wall
)

JPEG_QUALITY = 85
MANIFEST_COLUMNS = ["product_id", "name", "category", "source", "source_url", "creator", "license", "model_id"]
GROUND_TRUTH_COLUMNS = ["path", "product_id", "category", "variant"]


@dataclass(frozen=True)
class Product:
    """A gallery product: a catalogue model, optionally recoloured."""

    product_id: str
    name: str
    category: str
    entry: sh3d.Entry
    colour: tuple[str, tuple[int, int, int]] | None = None


def slug(text: str) -> str:
    """Filesystem-safe lower-case slug; camelCase words are split."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", text)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def source_of(entry: sh3d.Entry) -> str:
    """Human-readable provenance of a model, for the manifest and credits."""
    if entry.library == "Default":
        return f"Sweet Home 3D default catalogue (Debian {entry.package})"
    return f"Sweet Home 3D furniture library (Debian {entry.package}, {entry.library} catalogue)"


def plan_products(entries: list[sh3d.Entry], per_category: int) -> list[Product]:
    """Products per category: every mapped model, then colour variants of
    them (round robin) until the category has ``per_category`` products."""
    by_category: dict[str, list[sh3d.Entry]] = defaultdict(list)
    for entry in entries:
        category = sh3d.product_category(entry)
        if category:
            by_category[category].append(entry)
    products: list[Product] = []
    for category in sh3d.CATEGORIES:
        models = by_category[category]
        real = [
            Product(f"{category}-{sh3d.LIBRARY_CODES[e.library]}-{slug(e.id.split('#')[-1])}", e.name, category, e)
            for e in models
        ]
        products += real
        for k in range(max(0, per_category - len(real))):
            base = real[k % len(real)]
            # Each model's successive variants take successive colours.
            colour = PALETTE[(k // len(real) + k % len(real)) % len(PALETTE)]
            products.append(
                Product(f"{base.product_id}-{colour[0]}", f"{base.name} ({colour[0]})", category, base.entry, colour)
            )
    ids = Counter(p.product_id for p in products)
    duplicates = [i for i, n in ids.items() if n > 1]
    if duplicates:
        raise ValueError(f"duplicate product ids: {duplicates}")
    return products


# --------------------------------------------------------------------------
# Rendering jobs (run in worker processes)


@dataclass(frozen=True)
class Job:
    obj: Path
    entry: sh3d.Entry
    products: tuple[Product, ...]
    out: Path
    queries: Path
    size: int


def _degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Phone-like capture: slight blur, sensor noise and a colour cast."""
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.4)))
    arr = np.asarray(image, dtype=float)
    arr = arr * np.array([rng.uniform(0.94, 1.06) for _ in range(3)])
    arr += np.random.default_rng(rng.randrange(2**32)).normal(0.0, rng.uniform(2.5, 6.0), arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _query_images(scene, rng: random.Random, size: int) -> list[tuple[str, Image.Image, int]]:
    """Two held-out photos of one product: (variant, image, JPEG quality)."""
    from buildtime.catalogue.render import Backdrop, render_view

    # 1. A room shot: other yaw, higher camera, warm light, object small and off-centre.
    yaw = rng.choice([-1, 1]) * rng.uniform(15, 75)
    if abs(yaw - VIEWS["front_three_quarter"][0]) < 10:
        yaw += 20
    floor, wall = rng.choice(ROOMS)
    room = render_view(
        scene, yaw, rng.uniform(22, 38), size=(size * 9 // 8, size * 27 // 32), light="warm",
        fill_ratio=rng.uniform(0.5, 0.65), offset=(rng.uniform(-0.15, 0.15), rng.uniform(-0.08, 0.08)),
        backdrop=Backdrop(floor=floor, wall=wall),
    )
    # 2. A close, low, hard-lit shot from the other side or the back, cropped.
    yaw = rng.uniform(-80, -40) if rng.random() < 0.7 else rng.uniform(120, 150)
    floor, wall = rng.choice(ROOMS)
    close = render_view(
        scene, yaw, rng.uniform(3, 12), size=size, light="harsh", fill_ratio=0.85,
        backdrop=Backdrop(floor=floor, wall=wall),
    )
    side = int(size * rng.uniform(0.8, 0.9))
    x0 = rng.choice([0, size - side])
    y0 = rng.choice([0, (size - side) // 2, size - side])
    close = close.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.LANCZOS)
    return [
        ("room-warm", _degrade(room, rng), rng.randint(60, 80)),
        ("low-harsh-crop", _degrade(close, rng), rng.randint(55, 75)),
    ]


def render_job(job: Job) -> tuple[str, list[dict[str, str]], str | None]:
    """Render the catalogue views and the queries of every product of a model.

    Returns (model id, ground-truth rows, error or None)."""
    from buildtime.catalogue.meshes import load_model, recolor
    from buildtime.catalogue.render import render_view

    try:
        base = load_model(job.obj, rotation=job.entry.rotation, size_cm=job.entry.size_cm)
        rows = []
        for product in job.products:
            scene = recolor(base, product.colour[1]) if product.colour else base
            folder = job.out / product.category / product.product_id
            folder.mkdir(parents=True, exist_ok=True)
            for view, (yaw, pitch) in VIEWS.items():
                image = render_view(scene, yaw, pitch, size=job.size)
                image.save(folder / f"{view}.jpg", quality=JPEG_QUALITY, optimize=True)
            rng = random.Random(zlib.crc32(product.product_id.encode()))
            qfolder = job.queries / product.category
            qfolder.mkdir(parents=True, exist_ok=True)
            for variant, image, quality in _query_images(scene, rng, job.size):
                name = f"{product.product_id}__{variant}.jpg"
                image.save(qfolder / name, quality=quality)
                rows.append({"path": f"{product.category}/{name}", "product_id": product.product_id,
                             "category": product.category, "variant": variant})
        return job.entry.id, rows, None
    except Exception as error:  # a broken model must not stop the whole build
        return job.entry.id, [], f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------
# Outputs


def write_manifest(products: list[Product], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for p in products:
            writer.writerow({
                "product_id": p.product_id, "name": p.name, "category": p.category,
                "source": source_of(p.entry), "source_url": sh3d.SOURCE_URLS[p.entry.library],
                "creator": p.entry.creator,
                "license": p.entry.license, "model_id": p.entry.id,
            })


def write_credits(products: list[Product], path: Path) -> None:
    """CREDITS.md: one line per model used (variants share their model's line)."""
    models: dict[str, tuple[sh3d.Entry, list[str]]] = {}
    for p in products:
        models.setdefault(p.entry.id, (p.entry, []))[1].append(p.product_id)
    lines = [
        "# Credits",
        "",
        "The reference gallery (`reference_gallery/`) and the benchmark queries",
        "(`benchmarks/queries/`) are renderings of 3D models from the Sweet Home 3D",
        "furniture catalogues as packaged by Debian (`sweethome3d-furniture`,",
        "`sweethome3d`); they are built by `python -m buildtime.catalogue build`.",
        "Models by eTeks/Emmanuel Puybaret, Scopia, Blend Swap artists and Kator Legaz,",
        "under the licences listed below (CC-BY models: attribution to the creator).",
        "Colour variants are recolourings of the same model.",
        "",
        "| Model | Creator | Licence | Source | Model id | Products |",
        "|---|---|---|---|---|---|",
    ]
    for entry, ids in sorted(models.values(), key=lambda m: (m[1][0])):
        lines.append(
            f"| {entry.name} | {entry.creator} | {entry.license} | {source_of(entry)} | `{entry.id}` | "
            + ", ".join(f"`{i}`" for i in ids) + " |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def contact_sheet(tiles: list[tuple[Path, str]], path: Path, thumb: int = 120, columns: int = 10) -> None:
    """A PNG grid of thumbnails, each labelled (wrapped) with its caption."""
    font = _font(10)
    label_h = 26
    rows = max(1, math.ceil(len(tiles) / columns))
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image_path, caption) in enumerate(tiles):
        x, y = (i % columns) * thumb, (i // columns) * (thumb + label_h)
        with Image.open(image_path) as im:
            im = im.convert("RGB")
            im.thumbnail((thumb - 4, thumb - 4))
            sheet.paste(im, (x + (thumb - im.width) // 2, y + 2 + (thumb - 4 - im.height) // 2))
        text = "\n".join(textwrap.wrap(caption, 22, break_on_hyphens=True)[:2])
        draw.multiline_text((x + 3, y + thumb), text, fill=(20, 20, 20), font=font, spacing=1)
    sheet.save(path, optimize=True)


def build(out: Path, queries: Path, per_category: int, cache: Path, docs: Path, credits: Path,
          workers: int = 2, size: int = 512) -> None:
    """Fetch the libraries, render gallery and queries, write all indexes."""
    start = time.time()
    roots = sh3d.fetch_packages(cache)
    entries = sh3d.read_entries(roots, cache)
    products = plan_products(entries, per_category)
    print(f"{len(entries)} catalogue entries -> {len(products)} products", flush=True)

    # Start from scratch so that removed products do not linger.
    for category in sh3d.CATEGORIES:
        shutil.rmtree(out / category, ignore_errors=True)
        shutil.rmtree(queries / category, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    queries.mkdir(parents=True, exist_ok=True)

    by_model: dict[str, list[Product]] = defaultdict(list)
    for p in products:
        by_model[p.entry.id].append(p)
    jobs = [
        Job(sh3d.extract_model(ps[0].entry, cache), ps[0].entry, tuple(ps), out, queries, size)
        for ps in by_model.values()
    ]
    failed: set[str] = set()
    rows: list[dict[str, str]] = []
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for done, (model_id, job_rows, error) in enumerate(pool.imap_unordered(render_job, jobs), 1):
            if error:
                failed.add(model_id)
                print(f"  FAILED {model_id}: {error}", flush=True)
            rows += job_rows
            if done % 10 == 0 or done == len(jobs):
                print(f"  {done}/{len(jobs)} models rendered, {time.time() - start:.0f} s", flush=True)
    products = [p for p in products if p.entry.id not in failed]

    write_manifest(products, out / "manifest.csv")
    rows.sort(key=lambda r: r["path"])
    with (queries / "ground_truth.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=GROUND_TRUTH_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    write_credits(products, credits)

    docs.mkdir(parents=True, exist_ok=True)
    for category in sh3d.CATEGORIES:
        tiles = [(out / category / p.product_id / "front_three_quarter.jpg", p.product_id)
                 for p in products if p.category == category]
        contact_sheet(tiles, docs / f"contact_sheet_{category}.png")
    sample = [(queries / r["path"], Path(r["path"]).stem) for r in rows[:: max(1, len(rows) // 64)]][:64]
    contact_sheet(sample, docs / "contact_sheet_queries.png", thumb=160, columns=8)

    counts = Counter((p.category, p.colour is None) for p in products)
    for category in sh3d.CATEGORIES:
        print(f"  {category:6s}: {counts[category, True]} models + {counts[category, False]} colour variants")
    print(f"built {len(products)} products, {len(rows)} queries in {time.time() - start:.0f} s", flush=True)
