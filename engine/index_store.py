"""Persist and load a catalogue's search index.

A store folder holds complete, immutable versions and a pointer to the live one:

    <store>/CURRENT                  name of the live version (replaced atomically)
    <store>/versions/<version>/
        meta.json                    backbone spec, items (product, category, path, digest)
        vectors.npy                  every item's embedding, so updates never re-embed old images
        classifier.npz               the category classifier
        all.usearch, <category>.usearch   cosine HNSW indexes; keys are row numbers of vectors.npy

A save writes a new version folder and only then swaps ``CURRENT`` with
``os.replace``, so a crash mid-write leaves the previous version in use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from usearch.index import Index

from engine.backbones import BackboneSpec
from engine.catalog import CatalogItem
from engine.classify import CategoryClassifier

FORMAT_VERSION = 1
ALL = "all"  # name of the index over every category


class IndexNotFoundError(FileNotFoundError):
    """No index has been built in the store folder yet."""


class StaleIndexError(RuntimeError):
    """The index was built by another backbone, preprocessing or format than this code uses."""


class CorruptIndexError(RuntimeError):
    """The store's files are unreadable or inconsistent."""


@dataclass(frozen=True, kw_only=True)
class IndexedItem(CatalogItem):
    """A catalogue image as indexed: ``row`` is its row in the vectors and its key in usearch."""

    row: int
    digest: str  # content hash of the image file when it was embedded


@dataclass
class StoredIndex:
    """Everything a search needs, loaded from one store version."""

    backbone: BackboneSpec
    gallery: Path
    items: list[IndexedItem]
    vectors: np.ndarray
    classifier: CategoryClassifier
    indexes: dict[str, Index]  # ALL and one per category
    created: str
    skipped: list[tuple[str, str]]

    @property
    def categories(self) -> list[str]:
        return self.classifier.categories


def spec_to_dict(spec: BackboneSpec) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def build_usearch(vectors: np.ndarray, rows: np.ndarray) -> Index:
    """A cosine HNSW index over the given rows of ``vectors``, keyed by row number."""
    index = Index(ndim=vectors.shape[1], metric="cos", dtype="f32")
    if len(rows):
        index.add(rows.astype(np.uint64), vectors[rows])
    return index


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def save_index(
    store: str | Path,
    backbone: BackboneSpec,
    gallery: str | Path,
    items: list[IndexedItem],
    vectors: np.ndarray,
    classifier: CategoryClassifier,
    skipped: list[tuple[str, str]] = (),
) -> Path:
    """Write a new store version and make it the live one; returns its folder.

    Older versions are removed only after the switch, so readers and crashes
    always see one complete version.
    """
    store = Path(store)
    if len(items) != len(vectors) or any(item.row != row for row, item in enumerate(items)):
        raise ValueError("items must be numbered 0..N-1 in the same order as the vectors")
    version = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    versions = store / "versions"
    folder = versions / version
    folder.mkdir(parents=True)

    np.save(folder / "vectors.npy", vectors.astype(np.float32))
    np.savez(folder / "classifier.npz", **classifier.to_arrays())
    categories = np.array([item.category for item in items])
    build_usearch(vectors, np.arange(len(items))).save(str(folder / f"{ALL}.usearch"))
    for category in classifier.categories:
        build_usearch(vectors, np.flatnonzero(categories == category)).save(str(folder / f"{category}.usearch"))
    meta = {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "backbone": spec_to_dict(backbone),
        "gallery": str(Path(gallery).resolve()),
        "categories": classifier.categories,
        "items": [dataclasses.asdict(item) for item in items],
        "skipped": [list(entry) for entry in skipped],
    }
    # meta.json last: a version folder without it is an unfinished write.
    _atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1))
    _atomic_write_text(store / "CURRENT", version + "\n")

    for old in versions.iterdir():
        if old.name != version:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def current_version(store: str | Path) -> Path:
    """The live version folder of a store, or ``IndexNotFoundError``."""
    store = Path(store)
    pointer = store / "CURRENT"
    if not pointer.is_file():
        raise IndexNotFoundError(
            f"no index in {store}; build one with: python -m engine index --gallery <catalogue folder> --store {store}"
        )
    folder = store / "versions" / pointer.read_text(encoding="utf-8").strip()
    if not (folder / "meta.json").is_file():
        raise CorruptIndexError(f"the index in {store} is incomplete ({folder} has no meta.json); rebuild it")
    return folder


def read_meta(store: str | Path) -> dict:
    """The live version's metadata, without loading vectors or indexes."""
    folder = current_version(store)
    try:
        return json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CorruptIndexError(f"cannot read {folder / 'meta.json'}: {error}; rebuild the index") from error


def check_compatible(meta: dict, backbone: BackboneSpec) -> None:
    """Raise ``StaleIndexError`` unless the index was built the way ``backbone`` embeds today."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise StaleIndexError(
            f"the index uses store format {meta.get('format_version')}, this version reads {FORMAT_VERSION}; rebuild it"
        )
    built_with = meta.get("backbone", {})
    if built_with != spec_to_dict(backbone):
        raise StaleIndexError(
            f"the index was built with backbone {built_with.get('name')!r} "
            f"({built_with.get('layer')}/{built_with.get('pooling')}, {built_with.get('preprocessing')}), "
            f"which differs from {backbone.name!r} as defined now; rebuild it with python -m engine index"
        )


def load_index(store: str | Path, backbone: BackboneSpec) -> StoredIndex:
    """Load the live version of a store built with ``backbone``.

    Raises ``IndexNotFoundError``, ``StaleIndexError`` or ``CorruptIndexError``
    with a message that says how to fix it.
    """
    meta = read_meta(store)
    check_compatible(meta, backbone)
    folder = current_version(store)
    try:
        vectors = np.load(folder / "vectors.npy")
        with np.load(folder / "classifier.npz") as arrays:
            classifier = CategoryClassifier.from_arrays(arrays)
        names = [ALL, *classifier.categories]
        indexes = {name: Index.restore(str(folder / f"{name}.usearch")) for name in names}
        items = [IndexedItem(**item) for item in meta["items"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CorruptIndexError(f"the index in {store} is damaged ({error}); rebuild it") from error
    if any(index is None for index in indexes.values()) or len(vectors) != len(items):
        raise CorruptIndexError(f"the index in {store} is inconsistent; rebuild it")
    return StoredIndex(
        backbone=backbone,
        gallery=Path(meta["gallery"]),
        items=items,
        vectors=vectors,
        classifier=classifier,
        indexes=indexes,
        created=meta.get("created", ""),
        skipped=[tuple(entry) for entry in meta.get("skipped", [])],
    )
