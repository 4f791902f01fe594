"""A store on disk: complete, immutable versions and a pointer to the live one, saved and opened.

    <store>/CURRENT                  name of the live version (replaced atomically)
    <store>/versions/<version>/
        meta.json                    backbone, images (product, category, path, digests, colours), checksums
        vectors.npy                  every image's embedding, so updates never re-embed old images
        classifier.npz               the category classifier
        all.usearch, <category>.usearch   cosine vector indexes; keys are row numbers of vectors.npy
        verified.json                which files were checked against their checksums (engine.store.files)

Vector indexes and vectors are opened memory-mapped, so app processes on one machine share one copy of a
store in memory. A save writes a new version folder, flushes it to the disk, and only then swaps ``CURRENT``
with ``os.replace``, so a crash mid-write leaves the previous version in use. ``meta.json`` records each
data file's checksum and each image's row digest; opening checks the files against them, so a damaged,
truncated or swapped file is reported instead of searched. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.backbone_specs import BACKBONES, BackboneSpec
from engine.classify import CategoryClassifier
from engine.colours import COLOUR_METHOD
from engine.store.files import atomic_write_text, damaged_files, file_checksum, fsync_path, row_digest, write_durably
from engine.store.meta import (ALL, FORMAT_VERSION, REPAIR, REPAIR_HINT, DamagedStoreError, StoredImage,
                               StoreNotFoundError, StaleStoreError, StoreMeta)
from engine.store.vector_index import IndexChoice, VectorIndex, build_usearch, choose_index, open_index

@dataclass
class Store:
    """Everything a search needs, loaded from one store version."""

    backbone: BackboneSpec
    catalogue: Path
    images: list[StoredImage]
    vectors: np.ndarray
    classifier: CategoryClassifier
    indexes: dict[str, VectorIndex]  # ALL and one per category
    created: str
    skipped: list[tuple[str, str]]
    feed: str = ""  # the product feed it was built from ("" for a catalogue folder)

    @property
    def categories(self) -> list[str]:
        return self.classifier.categories


def save_store(
    store: str | Path,
    backbone: BackboneSpec,
    catalogue: str | Path,
    images: list[StoredImage],
    vectors: np.ndarray,
    classifier: CategoryClassifier,
    skipped: list[tuple[str, str]] = (),
    feed: str = "",
) -> Path:
    """Write a new store version and make it the live one; returns its folder.

    Older versions are removed only after the switch, so readers and crashes
    always see one complete version. Leftovers that would block the write (a
    ``CURRENT`` that is a folder, a ``versions`` that is a file) are cleared first.
    """
    store = Path(store)
    if len(images) != len(vectors) or any(image.row != row for row, image in enumerate(images)):
        raise ValueError("images must be numbered 0..N-1 in the same order as the vectors")
    versions = _versions_folder(store)
    version = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder = versions / version
    folder.mkdir(parents=True)
    vectors = vectors.astype(np.float32)
    choices, checksums = _write_data(folder, vectors, classifier, [image.category for image in images])
    meta = StoreMeta(
        format_version=FORMAT_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        backbone=backbone,
        catalogue=str(Path(catalogue).resolve()),
        categories=list(classifier.categories),
        images=[dataclasses.replace(image, vector_digest=row_digest(vectors[image.row])) for image in images],
        skipped=[tuple(entry) for entry in skipped],
        colour_method=COLOUR_METHOD,
        indexes=choices,
        checksums=checksums,
        feed=feed,
    )
    # meta.json last: a version folder without it is an unfinished write. Every file is on the disk
    # (atomic_write_text flushes the folder) before CURRENT names the version.
    atomic_write_text(folder / "meta.json", meta.to_json())
    atomic_write_text(store / "CURRENT", version + "\n")
    for old in versions.iterdir():
        if old.name != version:
            _remove(old)
    return folder


def _versions_folder(store: Path) -> Path:
    """The store's ``versions`` folder, with leftovers that would block a write cleared away."""
    if store.exists() and not store.is_dir():
        raise DamagedStoreError(f"the store {store} is a file, not a folder; pass a folder to --store")
    if (store / "CURRENT").is_dir():
        _remove(store / "CURRENT")
    versions = store / "versions"
    if versions.exists() and not versions.is_dir():
        _remove(versions)
    return versions


def _write_data(folder: Path, vectors: np.ndarray, classifier: CategoryClassifier,
                categories: list[str]) -> tuple[dict[str, IndexChoice], dict[str, str]]:
    """Write and flush a version's data files: vectors, classifier, one vector index over all and one per
    category. Returns each vector index's choice and each file's checksum."""
    write_durably(folder / "vectors.npy", lambda handle: np.save(handle, vectors))
    write_durably(folder / "classifier.npz", lambda handle: np.savez(handle, **classifier.to_arrays()))
    labels = np.array(categories)
    index_rows = {ALL: np.arange(len(vectors))}
    index_rows.update({category: np.flatnonzero(labels == category) for category in classifier.categories})
    choices = {name: choose_index(len(rows)) for name, rows in index_rows.items()}
    for name, rows in index_rows.items():
        build_usearch(vectors, rows, choices[name]).save(str(folder / f"{name}.usearch"))
        fsync_path(folder / f"{name}.usearch")
    names = ["vectors.npy", "classifier.npz", *(f"{name}.usearch" for name in index_rows)]
    return choices, {name: file_checksum(folder / name) for name in names}


def _remove(path: Path) -> None:
    """Delete a file or folder tree, whatever it is (used on leftovers the store no longer needs)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def current_version(store: str | Path) -> Path:
    """The live version folder of a store; ``StoreNotFoundError`` or ``DamagedStoreError`` if there is none."""
    store = Path(store)
    pointer = store / "CURRENT"
    if not store.exists() or not (pointer.exists() or (store / "versions").exists()):
        raise StoreNotFoundError(
            f"no index in {store}; build one with: python -m engine index --catalogue <catalogue folder> --store {store}"
        )
    repair = REPAIR.format(store=store)
    if not pointer.is_file():
        raise DamagedStoreError(f"the store {store} has no readable CURRENT file naming its live version; {repair}")
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise DamagedStoreError(f"cannot read {pointer} ({error}); {repair}") from None
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise DamagedStoreError(f"{pointer} does not name a version ({name!r}); {repair}")
    folder = store / "versions" / name
    if not (folder / "meta.json").is_file():
        raise DamagedStoreError(f"the index in {store} is incomplete ({folder} has no meta.json); {repair}")
    return folder


def read_version_meta(folder: Path) -> StoreMeta:
    """The validated metadata of one version folder."""
    path = folder / "meta.json"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DamagedStoreError(f"cannot read {path} ({error}); {REPAIR_HINT}") from None
    return StoreMeta.from_json(text, path)


def read_meta(store: str | Path) -> StoreMeta:
    """The live version's metadata, without loading vectors or indexes."""
    return read_version_meta(current_version(store))


def check_compatible(meta: StoreMeta, backbone: BackboneSpec) -> None:
    """Raise ``StaleStoreError`` unless the store was built the way ``backbone`` embeds today."""
    built = meta.backbone
    if built != backbone:
        raise StaleStoreError(
            f"the store was built with backbone {built.name!r} ({built.layer}/{built.pooling}, {built.preprocessing}), "
            f"which differs from {backbone.name!r} as defined now; rebuild it with python -m engine index"
        )


def stored_spec(meta: StoreMeta) -> BackboneSpec:
    """The spec, as this code defines it, of the backbone a store was built with."""
    if meta.backbone.name not in BACKBONES:
        raise StaleStoreError(
            f"the store was built with backbone {meta.backbone.name!r}, which this version does not know "
            f"(known: {', '.join(sorted(BACKBONES))}); rebuild it with python -m engine index"
        )
    return BACKBONES[meta.backbone.name]


def _all_finite(vectors: np.ndarray, chunk: int = 65_536) -> bool:
    """``np.isfinite(vectors).all()`` a chunk at a time (a whole-store mask would be a byte per number)."""
    return all(np.isfinite(vectors[start : start + chunk]).all() for start in range(0, len(vectors), chunk))


def load_vectors(folder: Path, meta: StoreMeta, backbone: BackboneSpec, finite: bool = True) -> np.ndarray:
    """A version's vectors, checked against its items and the backbone's width (and, with ``finite``, that
    every number is finite; ``index`` reads a damaged file's rows without it, and checks each by its digest)."""
    path = folder / "vectors.npy"
    try:
        # Memory-mapped: processes sharing the store share its pages, and a million vectors load at once.
        vectors = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        why = str(error) if isinstance(error, OSError) else "not a NumPy array file"
        raise DamagedStoreError(f"cannot read {path} ({why}); {REPAIR_HINT}") from None
    expected = (len(meta.images), backbone.feature_dim)
    if vectors.dtype != np.float32 or vectors.shape != expected or (finite and not _all_finite(vectors)):
        raise DamagedStoreError(
            f"{path} holds {vectors.dtype} vectors of shape {vectors.shape}, expected finite float32 {expected}; "
            f"{REPAIR_HINT}"
        )
    return vectors


def open_store(store: str | Path, backbone: BackboneSpec | None = None) -> Store:
    """Open the live version of a store, checking every file against its metadata. ``backbone`` is the one
    the caller embeds with (the store must have been built with it); by default, the one recorded.

    Raises ``StoreNotFoundError``, ``StaleStoreError`` or ``DamagedStoreError``
    with a message that says how to fix it.
    """
    folder = current_version(store)
    meta = read_version_meta(folder)
    backbone = backbone or stored_spec(meta)
    if meta.format_version != FORMAT_VERSION or meta.colour_method != COLOUR_METHOD:
        lacks = {1: "product colours", 2: "checksums of its files"}.get(meta.format_version, "shop fields")
        what = (f"store format {meta.format_version}, without {lacks}" if meta.format_version != FORMAT_VERSION
                else f"product colours of method {meta.colour_method}, this version computes method {COLOUR_METHOD}")
        raise StaleStoreError(
            f"the index in {store} was built by an older version ({what}); "
            f"{REPAIR.format(store=store).replace('repair it', 'update it')} (its vectors are checked and reused)"
        )
    check_compatible(meta, backbone)
    damaged = f"the index in {store} is damaged ({{}}); {REPAIR.format(store=store)}"
    changed = damaged_files(folder, meta.checksums)
    if changed:
        raise DamagedStoreError(damaged.format(
            f"{', '.join(changed)} {'is' if len(changed) == 1 else 'are'} not what was written: "
            "missing, or contents that differ from the checksum recorded in meta.json"))
    return Store(
        backbone=backbone,
        catalogue=Path(meta.catalogue),
        images=meta.images,
        vectors=load_vectors(folder, meta, backbone),
        classifier=_load_classifier(folder, meta, backbone, damaged),
        indexes=_load_vector_indexes(folder, meta, backbone, damaged),
        created=meta.created,
        skipped=meta.skipped,
        feed=meta.feed,
    )


def _load_classifier(folder: Path, meta: StoreMeta, backbone: BackboneSpec, damaged: str) -> CategoryClassifier:
    try:
        with np.load(folder / "classifier.npz", allow_pickle=False) as arrays:
            classifier = CategoryClassifier.from_arrays(arrays)
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise DamagedStoreError(damaged.format(f"classifier.npz: {error}")) from None
    if classifier.categories != meta.categories or classifier.weights.shape != (len(meta.categories), backbone.feature_dim):
        raise DamagedStoreError(damaged.format("classifier.npz does not match the store's categories"))
    return classifier


def _load_vector_indexes(folder: Path, meta: StoreMeta, backbone: BackboneSpec, damaged: str) -> dict[str, VectorIndex]:
    """The vector index over all images and one per category, memory-mapped, each checked against the metadata."""
    categories = np.array([item.category for item in meta.images])
    indexes = {}
    for name in [ALL, *meta.categories]:
        path = folder / f"{name}.usearch"
        try:
            index = open_index(path)
        except (OSError, RuntimeError, ValueError) as error:
            raise DamagedStoreError(damaged.format(f"{path.name}: {error}")) from None
        count = len(meta.images) if name == ALL else int((categories == name).sum())
        choice = meta.indexes[name]
        if (index is None or index.ndim != backbone.feature_dim or len(index) != count
                or str(index.dtype).split(".")[-1].lower() != choice.dtype):
            raise DamagedStoreError(damaged.format(f"{path.name} is missing or does not match the vectors"))
        index.expansion_search = choice.expansion_search
        indexes[name] = VectorIndex(index, choice)
    return indexes
