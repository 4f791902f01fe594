"""Build or update a store from a catalogue folder.

Indexing is a sync: images whose content is unchanged since the last build
keep their stored vectors, new or changed ones are embedded, removed ones are
dropped. Switching backbone re-embeds everything.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.backbones import DEFAULT_BACKBONE, get_spec, load_backbone
from engine.catalog import CatalogItem, file_digest, scan_catalog
from engine.classify import fit_classifier
from engine.embed import embed_images
from engine.images import ImageDecodeError, load_image
from engine.index_store import (
    IndexedItem,
    IndexNotFoundError,
    StaleIndexError,
    check_compatible,
    current_version,
    read_meta,
    save_index,
)

Progress = Callable[[int, int], None]  # (images done, images to embed)


@dataclass
class IndexReport:
    """What an indexing run did."""

    store: Path
    backbone: str
    images: int
    embedded: int
    reused: int
    removed: int
    images_per_category: dict[str, int]
    products_per_category: dict[str, int]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def _previous_vectors(store: Path, backbone_name: str) -> tuple[dict[str, np.ndarray], int]:
    """Vectors of the store's current version keyed by image digest (empty if absent or incompatible)."""
    try:
        meta = read_meta(store)
        check_compatible(meta, get_spec(backbone_name))
        vectors = np.load(current_version(store) / "vectors.npy")
    except (IndexNotFoundError, StaleIndexError, ValueError, OSError):
        return {}, 0
    items = meta["items"]
    return {item["digest"]: vectors[item["row"]] for item in items}, len(items)


def stored_backbone(store: str | Path) -> str | None:
    """The backbone name an existing store was built with, or None."""
    try:
        return read_meta(store)["backbone"]["name"]
    except (IndexNotFoundError, KeyError, OSError, ValueError):
        return None


def index_catalog(
    gallery: str | Path,
    store: str | Path,
    backbone: str | None = None,
    progress: Progress | None = None,
    batch_size: int = 16,
) -> IndexReport:
    """Index (or re-sync) the catalogue folder ``gallery`` into ``store``.

    ``backbone`` defaults to the one the store was built with, else the
    product default. Unreadable images are skipped and listed in the report.
    """
    started = time.perf_counter()
    store = Path(store)
    backbone = backbone or stored_backbone(store) or DEFAULT_BACKBONE
    spec = get_spec(backbone)
    catalog = scan_catalog(gallery)
    previous, previous_count = _previous_vectors(store, backbone)

    digests = [file_digest(catalog.root / item.path) for item in catalog.items]
    to_embed = [i for i, digest in enumerate(digests) if digest not in previous]
    new_vectors: dict[int, np.ndarray] = {}
    skipped = list(catalog.skipped)
    if to_embed:
        extractor = load_backbone(backbone)
        for start in range(0, len(to_embed), batch_size):
            chunk, images = [], []
            for i in to_embed[start : start + batch_size]:
                try:
                    images.append(load_image(catalog.root / catalog.items[i].path, min_side=spec.preprocessing.size))
                    chunk.append(i)
                except ImageDecodeError as error:
                    skipped.append((catalog.items[i].path, str(error)))
            for i, vector in zip(chunk, embed_images(extractor, images, batch_size)):
                new_vectors[i] = vector
            if progress:
                progress(min(start + batch_size, len(to_embed)), len(to_embed))

    kept: list[tuple[CatalogItem, str, np.ndarray]] = []
    for i, (item, digest) in enumerate(zip(catalog.items, digests)):
        vector = previous.get(digest) if i not in new_vectors else new_vectors[i]
        if vector is not None:
            kept.append((item, digest, vector))
    if not kept:
        raise ValueError(f"none of the images in {catalog.root} could be read; nothing to index")

    items = [
        IndexedItem(row=row, digest=digest, **dataclasses.asdict(item))
        for row, (item, digest, _) in enumerate(kept)
    ]
    vectors = np.stack([vector for _, _, vector in kept]).astype(np.float32)
    classifier = fit_classifier(vectors, [item.category for item in items])
    save_index(store, spec, catalog.root, items, vectors, classifier, skipped)

    reused = len(kept) - len(new_vectors)
    return IndexReport(
        store=store,
        backbone=backbone,
        images=len(items),
        embedded=len(new_vectors),
        reused=reused,
        removed=max(0, previous_count - reused),
        images_per_category=dict(sorted(Counter(item.category for item in items).items())),
        products_per_category=dict(sorted(Counter(c for c, _ in {(i.category, i.product_id) for i in items}).items())),
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )


def index_is_current(gallery: str | Path, store: str | Path) -> bool:
    """True when the store exists, is compatible with today's backbone code and matches the catalogue's files."""
    try:
        meta = read_meta(store)
        check_compatible(meta, get_spec(meta["backbone"]["name"]))
        catalog = scan_catalog(gallery)
    except (IndexNotFoundError, StaleIndexError, ValueError, KeyError, OSError):
        return False
    fields = ("path", "product_id", "category", "name", "url", "creator", "license", "source")
    indexed = {(item["digest"], *(item[f] for f in fields)) for item in meta["items"]}
    skipped = {path for path, _ in meta.get("skipped", [])}
    current = {
        (file_digest(Path(gallery) / item.path), *(getattr(item, f) for f in fields))
        for item in catalog.items
        if item.path not in skipped
    }
    return indexed == current
