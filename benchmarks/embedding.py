"""The embedding's levers on the dev real photos, each alone and combined (issue #26).

    python -m benchmarks.embedding --ikea DIR [--views 8] [--work DIR]

Every lever is measured on the same vectors: the engine's backbone embeds, once, each
dev query of ``benchmarks.real`` (the whole photo, its flip, and the crops of the
detector's six best pieces), the own catalogue's 452 product photos, the bundled
rendered catalogue, the dev products' real photos and the dev rooms' regions of each
class (their proposal-pass embeddings and their crops). The levers then change only
which of these vectors are searched and how they are mapped:

* **pieces**: how many of the detector's pieces a search adds to the whole photo;
* **flip**: the whole photo averaged with its mirror image;
* **region crop**: a room's region embedded from its proposal-pass cells and its crop together;
* **render projection**: a linear map (identity plus rank 128) trained with a supervised
  contrastive loss on domain-randomised views (``buildtime.domain_views``) of the bundled
  renders: what we could train here and ship (no IKEA image is used);
* **index-time adaptation**: the same trained on views of the shop's own photos when it
  indexes them (here the 452 IKEA catalogue photos: it is the shop's data, never shipped).

Searches are plain cosine similarity, each product at its best vector (the engine also
weighs in the category prior, so its figures differ by about 0.01). Writes
``benchmarks/results/embedding.{md,json}``: figures only, no image.
"""

from __future__ import annotations

import argparse
import pickle
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import RESULTS, machine_info, machine_line, markdown_table, save_results
from benchmarks.phone_photo import VARIANTS
from benchmarks.real import MAX_REGIONS, QUERIES_FOLDER, ikea_arguments, index_own_catalogue, load_dataset, phone_queries
from buildtime.domain_views import cut_out, domain_view
from engine.images import load_image, preprocess
from engine.indexing import index_catalogue, index_is_current
from engine.regions import crop_region, propose_regions
from engine.search import REGION_DECODE_SIDE, SearchEngine
from engine.vectors import normalise

PIECES = 6  # pieces captured per query; a lever searches the first 2, 4 or 6
CLASSES = ("bed", "chair", "lamp", "sofa", "table")


def raw_vectors(engine: SearchEngine, images: list[Image.Image], batch: int = 16) -> np.ndarray:
    """The backbone's pooled vectors, before normalising (a projection maps these)."""
    backbone = engine.backbone
    out = [np.zeros((0, backbone.spec.feature_dim), np.float32)]
    for start in range(0, len(images), batch):
        out.append(backbone.embed(preprocess(images[start:start + batch], backbone.spec.preprocessing)))
    return np.concatenate(out)


def _query_vectors(engine: SearchEngine, path: Path) -> dict[str, np.ndarray]:
    photo = load_image(path, min_side=engine.settings.detection_min_side, max_side=engine.settings.search_max_side)
    found = engine.detector.detect(photo, engine.settings.main_piece_score, engine.settings.detection_side)
    images = [photo, photo.transpose(Image.FLIP_LEFT_RIGHT), *[crop_region(photo, d.box) for d in found[:PIECES]]]
    vectors = raw_vectors(engine, images)
    return {"whole": vectors[0], "flip": vectors[1], "pieces": vectors[2:]}


def _room_regions(engine: SearchEngine, room: Path, category: str) -> dict[str, np.ndarray]:
    """As ``SearchEngine.search_regions(room, category=category)`` finds them: pooled cells and crops apart."""
    photo = load_image(room, min_side=REGION_DECODE_SIDE, max_side=engine.settings.region_max_side)
    regions = propose_regions(engine.backbone, engine.proposal_sample, photo, MAX_REGIONS, engine.window_scorer,
                              category, engine.detector, engine.settings.detection_side)
    pooled = np.array([r.embedding for r in regions], np.float32).reshape(len(regions), -1)
    return {"pooled": pooled, "crops": raw_vectors(engine, [crop_region(photo, r.box) for r in regions])}


def view_vectors(engine: SearchEngine, paths: list[Path], keys: list[str], views: int, seed: int) -> dict:
    """Raw vectors of ``views`` domain-randomised views of each photo, labelled by its product (``keys``)."""
    cuts = [cut_out(load_image(path, max_side=640)) for path in paths]
    rng = random.Random(seed)
    images = [domain_view(cut, cuts, rng) for cut in cuts for _ in range(views)]
    products = sorted(set(keys))
    labels = np.repeat([products.index(key) for key in keys], views)
    return {"vectors": raw_vectors(engine, images), "labels": labels}


def capture(ikea: Path, split: Path, store: Path, catalogue: Path, work: Path, views: int) -> dict:
    """Every vector the levers need, computed once (cached in ``work``)."""
    cached = work / f"embedding-vectors-{views}.pkl"
    if cached.is_file():
        return pickle.loads(cached.read_bytes())
    dataset = load_dataset(ikea, split)
    own, _ = index_own_catalogue(dataset, work)
    images = own.stored.images
    started = time.perf_counter()
    shop_views = view_vectors(own, [own.item_path(i) for i in images], [i.product_id for i in images], views, 1)
    adapt_seconds = time.perf_counter() - started
    if not index_is_current(catalogue, store):
        index_catalogue(catalogue, store)
    bundled = SearchEngine.open(store, catalogue)
    gallery = bundled.stored.images
    data = {
        "catalogue": raw_vectors(own, [load_image(own.item_path(i), min_side=224) for i in images]),
        "catalogue_ids": [i.product_id for i in images], "catalogue_categories": [i.category for i in images],
        "queries": [(pid, variant, _query_vectors(own, path))
                    for path, pid, variant in phone_queries(dataset, work / QUERIES_FOLDER, VARIANTS)],
        "gallery": raw_vectors(bundled, [load_image(bundled.item_path(i), min_side=224) for i in gallery]),
        "gallery_categories": [i.category for i in gallery],
        "photos": [(dataset.catalogue[pid], raw_vectors(bundled, [load_image(dataset.product_images[pid], min_side=224)])[0])
                   for pid in dataset.dev_products],
        "rooms": [(c, [p for p in items if dataset.catalogue[p] == c], _room_regions(own, room, c))
                  for room, items in dataset.dev_rooms.items() for c in sorted({dataset.catalogue[p] for p in items})],
        "shop_views": shop_views, "adapt_seconds": adapt_seconds,
        "render_views": view_vectors(bundled, [bundled.item_path(i) for i in gallery], [i.product_id for i in gallery],
                                     views, 2),
    }
    cached.write_bytes(pickle.dumps(data))
    return data


def train_projection(vectors: np.ndarray, labels: np.ndarray, rank: int = 128, steps: int = 1000,
                     keep: float = 1e-2, temperature: float = 0.05, seed: int = 0) -> np.ndarray:
    """A map identity + U V^T [D, D] pulling views of one product together (supervised contrastive loss over
    batches of 48 products x 4 views), ``keep`` weighing how far it may move from the ImageNet embedding."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(normalise(vectors)).float()
    y = torch.from_numpy(labels).long()
    dim = x.shape[1]
    u = (torch.randn(dim, rank, generator=generator) * 0.01).requires_grad_()
    v = torch.zeros(dim, rank, requires_grad=True)
    optimiser = torch.optim.Adam([u, v], lr=2e-3)
    rows_of = [torch.nonzero(y == label).flatten() for label in range(int(y.max()) + 1)]
    with torch.enable_grad():
        for _ in range(steps):
            chosen = torch.randperm(len(rows_of), generator=generator)[:48]
            rows = torch.cat([rows_of[c][torch.randint(len(rows_of[c]), (4,), generator=generator)] for c in chosen])
            z = torch.nn.functional.normalize(x[rows] + (x[rows] @ v) @ u.T, dim=1)
            same = y[rows][:, None] == y[rows][None]
            own = torch.eye(len(rows), dtype=torch.bool)
            logits = (z @ z.T / temperature).masked_fill(own, -1e9)
            log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            positives = same & ~own
            loss = (-(log_p * positives).sum(1) / positives.sum(1)).mean() + keep * (u @ v.T).pow(2).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return (torch.eye(dim) + u @ v.T).detach().numpy()


@dataclass(frozen=True)
class Lever:
    """One combination of levers: ``projection`` is "", "render" (one map for every store) or "adapted" (each
    store's map trained on views of its own images: the shop's photos, the bundled renders)."""

    name: str
    pieces: int = 2
    flip: bool = False
    region_crop: bool = False
    projection: str = ""


LEVERS = (
    Lever("before #26: whole photo + 2 pieces; regions from the proposal cells"),
    Lever("whole photo + 4 pieces", pieces=4),
    Lever("whole photo + 6 pieces", pieces=6),
    Lever("whole photo flip-averaged + 2 pieces", flip=True),
    Lever("regions from the proposal cells and their crop", region_crop=True),
    Lever("adopted: 4 pieces, regions from cells and crop", pieces=4, region_crop=True),
    Lever("adopted + projection trained on the renders", pieces=4, region_crop=True, projection="render"),
    Lever("adopted + index-time adaptation", pieces=4, region_crop=True, projection="adapted"),
)


def _project(raw: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    unit = normalise(np.atleast_2d(raw))
    return unit if projection is None else normalise(unit @ projection.T)


def _own(data: dict, lever: Lever, projection: np.ndarray | None) -> dict:
    catalogue = _project(data["catalogue"], projection)
    row_of = {pid: row for row, pid in enumerate(data["catalogue_ids"])}
    ranks: dict[str, list[int]] = {variant: [] for variant in VARIANTS}
    for pid, variant, vectors in data["queries"]:
        whole = normalise(normalise(vectors["whole"]) + normalise(vectors["flip"])) if lever.flip else vectors["whole"]
        scores = (_project(np.vstack([whole, *vectors["pieces"][:lever.pieces]]), projection) @ catalogue.T).max(0)
        ranks[variant].append(int((scores > scores[row_of[pid]]).sum()))
    every = [rank for values in ranks.values() for rank in values]
    figures = {"r1": float(np.mean(np.array(every) == 0)), "r10": float(np.mean(np.array(every) < 10))}
    return figures | {f"{variant}_r1": float(np.mean(np.array(values) == 0)) for variant, values in ranks.items()}


def _bundled(data: dict, projection: np.ndarray | None) -> dict:
    from engine.classify import fit_classifier

    classifier = fit_classifier(_project(data["gallery"], projection), data["gallery_categories"])
    right: dict[str, list[bool]] = {c: [] for c in CLASSES}
    for category, vector in data["photos"]:
        probabilities = classifier.predict_proba(_project(vector, projection))[0]
        right[category].append(classifier.categories[int(probabilities.argmax())] == category)
    return {"accuracy": float(np.mean([r for values in right.values() for r in values]))} | {
        c: float(np.mean(values)) for c, values in right.items() if values}


def _rooms(data: dict, lever: Lever, projection: np.ndarray | None) -> dict:
    catalogue = _project(data["catalogue"], projection)
    ids, categories = np.array(data["catalogue_ids"]), np.array(data["catalogue_categories"])
    recalls: dict[str, list[float]] = {c: [] for c in CLASSES}
    for category, relevant, regions in data["rooms"]:
        if not len(regions["pooled"]):
            recalls[category].append(0.0)
            continue
        vectors = normalise(regions["pooled"] + normalise(regions["crops"])) if lever.region_crop else regions["pooled"]
        in_class = categories == category
        scores = (_project(vectors, projection) @ catalogue[in_class].T).max(0)
        top = set(ids[in_class][np.argsort(-scores)[:10]])
        recalls[category].append(len(top & set(relevant)) / len(relevant))
    return {c: float(np.mean(values)) for c, values in recalls.items() if values}


def measure(data: dict) -> list[dict]:
    started = time.perf_counter()
    render = train_projection(data["render_views"]["vectors"], data["render_views"]["labels"])
    shop = train_projection(data["shop_views"]["vectors"], data["shop_views"]["labels"])
    train_seconds = (time.perf_counter() - started) / 2
    maps = {"": (None, None), "render": (render, render), "adapted": (shop, render)}  # (own store, bundled store)
    rows = []
    for lever in LEVERS:
        own_map, bundled_map = maps[lever.projection]
        rows.append({"lever": lever.name, "own": _own(data, lever, own_map), "bundled": _bundled(data, bundled_map),
                     "rooms": _rooms(data, lever, own_map),
                     "embeddings_per_query": 1 + lever.flip + lever.pieces,
                     "index_seconds": (data["adapt_seconds"] + train_seconds) if lever.projection == "adapted" else 0.0})
    return rows


def _figure(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(results: dict) -> str:
    rows = [[r["lever"], f"{r['own']['r1']:.3f}", f"{r['own']['r10']:.3f}",
             *[f"{r['own'][f'{v}_r1']:.3f}" for v in VARIANTS], f"{r['bundled']['accuracy']:.3f}",
             *[_figure(r["bundled"].get(c), 2) for c in CLASSES], *[_figure(r["rooms"].get(c), 3) for c in CLASSES],
             f"≤ {r['embeddings_per_query']}", f"{r['index_seconds']:.0f}"] for r in results["levers"]]
    headers = ["lever", "own R@1", "own R@10", *[f"{v} R@1" for v in VARIANTS], "bundled category",
               *[f"bundled {c}" for c in CLASSES], *[f"rooms {c} R@10" for c in CLASSES],
               "embeddings per query", "index s (452 photos)"]
    return "\n".join([
        "# The embedding's levers on the dev real photos (issue #26)", "",
        f"{machine_line(results['machine'])}", "",
        f"Command: `{results['command']}` ({results['seconds']:.0f} s). Dev queries only; figures only, no image. "
        f"{results['views']} domain-randomised views per image train each projection. Plain cosine search, each "
        "product at its best vector (the engine adds the category prior: its figures differ by about 0.01).", "",
        markdown_table(headers, rows), ""])


def main(argv: list[str] | None = None) -> None:
    parser = ikea_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--views", type=int, default=8, help="domain-randomised views per image for the projections")
    parser.add_argument("--output", type=Path, default=RESULTS / "embedding")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="furniture-embedding-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        data = capture(args.ikea, args.split, args.store, args.catalogue, work, args.views)
    results = {"machine": machine_info(), "command": "python -m benchmarks.embedding --ikea DIR",
               "views": args.views, "levers": measure(data), "seconds": time.perf_counter() - started}
    markdown = render_markdown(results)
    print(markdown)
    save_results(args.output, markdown, results)


if __name__ == "__main__":
    main()
