"""Persist and load a catalogue's search index.

A store folder holds complete, immutable versions and a pointer to the live one:

    <store>/CURRENT                  name of the live version (replaced atomically)
    <store>/versions/<version>/
        meta.json                    backbone spec, items (product, category, path, digest, colours)
        vectors.npy                  every item's embedding, so updates never re-embed old images
        classifier.npz               the category classifier
        all.usearch, <category>.usearch   cosine vector indexes; keys are row numbers of vectors.npy
        verified.json                which files were checked against their checksums (engine.store_files)

Each vector index is searched exactly (every vector compared) when it is small and through an HNSW graph
above ``EXACT_BELOW`` images (``choose_index``); the choice is recorded in ``meta.json``. Indexes and
vectors are opened memory-mapped, so app processes on one machine share one copy of a store in memory.

A save writes a new version folder, flushes it to the disk, and only then swaps ``CURRENT`` with
``os.replace``, so a crash mid-write leaves the previous version in use. ``meta.json`` records each
data file's checksum and each item's row digest; a load checks the files against them, so a damaged,
truncated or swapped file is reported instead of searched.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
# torch before usearch: with usearch's extension loaded first, a later ray.init (index --ray) aborts in
# C++ (std::regex_error "Invalid range in brace expression") whenever torch had not been loaded yet.
import torch  # noqa: F401
from usearch.index import Index

from engine.backbone_specs import BACKBONES, BackboneSpec
from engine.catalog import CatalogItem
from engine.classify import CategoryClassifier
from engine.colours import COLOUR_METHOD, Colour
from engine.errors import SearchError
from engine.store_files import atomic_write_text, damaged_files, file_checksum, fsync_path, row_digest, write_durably

# 2: items carry their product's dominant colours. 3: data files carry checksums and items their row's
# digest. An older store is stale; indexing updates it, reusing its vectors once a sample of them
# re-embeds to what is stored (engine.indexing).
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
ALL = "all"  # name of the index over every category

# The vector index, chosen by catalogue size from python -m benchmarks.scale (benchmarks/README.md): exact
# search below EXACT_BELOW images, where it is never wrong and within 0.1 ms of the graph; above it an HNSW
# graph of i8 vectors scaled per vector (index_input: half the memory of f16 and 0.7x its search time
# for 0.01 less recall), built with a wide expansion (recall@10 0.97 where 40 gives 0.93 at 1M, in the same memory),
# searched wider for large catalogues, where the same breadth finds fewer of the true neighbours (0.97
# at 100k with 64, at 1M with 256).
EXACT_BELOW = 1_000
HNSW_DTYPE = "i8"
HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 128
HNSW_EXPANSION_SEARCH = 64
WIDE_SEARCH_FROM = 300_000
HNSW_WIDE_EXPANSION_SEARCH = 256


class IndexNotFoundError(SearchError):
    """No index has been built in the store folder yet."""


class StaleIndexError(SearchError):
    """The index was built by another backbone, preprocessing or format than this code uses."""


class CorruptIndexError(SearchError):
    """The store's files are unreadable or inconsistent."""


@dataclass(frozen=True, kw_only=True)
class IndexedItem(CatalogItem):
    """A catalogue image as indexed: ``row`` is its row in the vectors and its key in usearch."""

    row: int
    digest: str  # content hash of the image file when it was embedded
    colours: tuple[Colour, ...] = ()  # the product's dominant colours in this image (engine.colours)
    vector_digest: str = ""  # engine.store_files.row_digest of its row of the vectors, set when saved


@dataclass
class StoredIndex:
    """Everything a search needs, loaded from one store version."""

    backbone: BackboneSpec
    gallery: Path
    items: list[IndexedItem]
    vectors: np.ndarray
    classifier: CategoryClassifier
    indexes: dict[str, VectorIndex]  # ALL and one per category
    created: str
    skipped: list[tuple[str, str]]

    @property
    def categories(self) -> list[str]:
        return self.classifier.categories


def spec_to_dict(spec: BackboneSpec) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


@dataclass(frozen=True)
class IndexChoice:
    """How one of the store's vector indexes searches: every vector compared ("exact") or an "hnsw" graph,
    over vectors of ``dtype``, with the graph's settings."""

    kind: str
    dtype: str
    connectivity: int = HNSW_CONNECTIVITY
    expansion_add: int = HNSW_EXPANSION_ADD
    expansion_search: int = HNSW_EXPANSION_SEARCH


def choose_index(count: int) -> IndexChoice:
    """The index for ``count`` vectors: exact below ``EXACT_BELOW``, else a graph, searched wider from
    ``WIDE_SEARCH_FROM`` vectors."""
    if count < EXACT_BELOW:
        return IndexChoice("exact", "f32")
    wide = count >= WIDE_SEARCH_FROM
    return IndexChoice("hnsw", HNSW_DTYPE, expansion_search=HNSW_WIDE_EXPANSION_SEARCH if wide else HNSW_EXPANSION_SEARCH)


@dataclass
class VectorIndex:
    """A usearch index searched the way its ``choice`` says."""

    index: Index
    choice: IndexChoice

    def __len__(self) -> int:
        return len(self.index)

    def search(self, vector: np.ndarray, count: int):
        """usearch ``Matches``: the ``count`` nearest keys (catalogue rows) and their cosine distances."""
        return self.index.search(index_input(vector, self.choice.dtype), count, exact=self.choice.kind == "exact")


def index_input(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """Vectors as an index of ``dtype`` is given them: float as they are; for "i8", each vector scaled so
    that its largest component is 127, then rounded.

    A cosine ignores each vector's scale, so this loses only the rounding. usearch's own conversion
    scales unit vectors by 127, which leaves a 1280-d vector's components a few levels apart (recall@10
    0.86 against 0.95 here at 100k, benchmarks/README.md).
    """
    if dtype != "i8":
        return vectors
    largest = np.maximum(np.abs(vectors).max(axis=-1, keepdims=True), 1e-12)
    return np.rint(vectors * (127 / largest)).astype(np.int8)


def build_usearch(vectors: np.ndarray, rows: np.ndarray, choice: IndexChoice, threads: int = 0) -> Index:
    """A cosine index over the given rows of ``vectors``, keyed by row number, built as ``choice`` says
    (on ``threads`` threads; 0: all cores)."""
    index = Index(ndim=vectors.shape[1], metric="cos", dtype=choice.dtype, connectivity=choice.connectivity,
                  expansion_add=choice.expansion_add, expansion_search=choice.expansion_search)
    # In chunks, so that a large catalogue's rows are copied (and quantised) a part at a time.
    for start in range(0, len(rows), 100_000):
        chunk = rows[start : start + 100_000]
        index.add(chunk.astype(np.uint64), index_input(vectors[chunk], choice.dtype), threads=threads)
    return index


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
    always see one complete version. Leftovers that would block the write (a
    ``CURRENT`` that is a folder, a ``versions`` that is a file) are cleared first.
    """
    store = Path(store)
    if len(items) != len(vectors) or any(item.row != row for row, item in enumerate(items)):
        raise ValueError("items must be numbered 0..N-1 in the same order as the vectors")
    if store.exists() and not store.is_dir():
        raise CorruptIndexError(f"the store {store} is a file, not a folder; pass a folder to --store")
    versions = store / "versions"
    if (store / "CURRENT").is_dir():
        _remove(store / "CURRENT")
    if versions.exists() and not versions.is_dir():
        _remove(versions)
    version = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder = versions / version
    folder.mkdir(parents=True)

    vectors = vectors.astype(np.float32)
    write_durably(folder / "vectors.npy", lambda handle: np.save(handle, vectors))
    write_durably(folder / "classifier.npz", lambda handle: np.savez(handle, **classifier.to_arrays()))
    categories = np.array([item.category for item in items])
    index_rows = {ALL: np.arange(len(items))}
    index_rows.update({category: np.flatnonzero(categories == category) for category in classifier.categories})
    choices = {name: choose_index(len(rows)) for name, rows in index_rows.items()}
    for name, rows in index_rows.items():
        build_usearch(vectors, rows, choices[name]).save(str(folder / f"{name}.usearch"))
        fsync_path(folder / f"{name}.usearch")
    names = ["vectors.npy", "classifier.npz", *(f"{name}.usearch" for name in index_rows)]
    items = [dataclasses.replace(item, vector_digest=row_digest(vectors[item.row])) for item in items]
    meta = StoreMeta(
        format_version=FORMAT_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        backbone=spec_to_dict(backbone),
        gallery=str(Path(gallery).resolve()),
        categories=list(classifier.categories),
        items=list(items),
        skipped=[tuple(entry) for entry in skipped],
        colour_method=COLOUR_METHOD,
        indexes=choices,
        checksums={name: file_checksum(folder / name) for name in names},
    )
    # meta.json last: a version folder without it is an unfinished write. Every file is on the disk
    # (atomic_write_text flushes the folder) before CURRENT names the version.
    atomic_write_text(folder / "meta.json", meta.to_json())
    atomic_write_text(store / "CURRENT", version + "\n")

    for old in versions.iterdir():
        if old.name != version:
            _remove(old)
    return folder


def _remove(path: Path) -> None:
    """Delete a file or folder tree, whatever it is (used on leftovers the store no longer needs)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class StoreMeta:
    """A store version's ``meta.json``: how it was built and what it holds, validated on reading."""

    format_version: int
    created: str
    backbone: dict  # the BackboneSpec as plain data (spec_to_dict)
    gallery: str
    categories: list[str]
    items: list[IndexedItem]
    skipped: list[tuple[str, str]]
    colour_method: int = 0  # engine.colours.COLOUR_METHOD the items' colours were computed with (0: none)
    indexes: dict[str, IndexChoice] = dataclasses.field(default_factory=dict)  # how each vector index searches
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)  # data file name -> SHA-256 (format 3)

    @property
    def backbone_name(self) -> str:
        return str(self.backbone.get("name", ""))

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["skipped"] = [list(entry) for entry in self.skipped]
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str, path: Path) -> StoreMeta:
        """Parse and check ``meta.json``; ``CorruptIndexError`` naming ``path`` for anything malformed."""

        def broken(why: str) -> CorruptIndexError:
            return CorruptIndexError(f"{path} is damaged ({why}); {REPAIR_HINT}")

        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise broken(f"not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise broken(f"expected a JSON object, found {type(data).__name__}")
        if data.get("format_version") not in READABLE_FORMATS:
            # A newer or unknown layout: not damage, but this code cannot read it.
            raise StaleIndexError(
                f"the index uses store format {data.get('format_version')}, this version reads {FORMAT_VERSION}; "
                "rebuild it with python -m engine index"
            )
        expected = {"created": str, "backbone": dict, "gallery": str, "categories": list, "items": list, "skipped": list}
        for key, kind in expected.items():
            if not isinstance(data.get(key), kind):
                raise broken(f"'{key}' is missing or not a {kind.__name__}")
        if not isinstance(data["backbone"].get("name"), str):
            raise broken("the backbone has no name")
        if not all(isinstance(c, str) and c for c in data["categories"]):
            raise broken("a category name is not a string")
        fields = {f.name for f in dataclasses.fields(IndexedItem)}
        if data["format_version"] < 3:
            fields.discard("vector_digest")
        if data["format_version"] == 1:
            fields.discard("colours")
        items = []
        for row, entry in enumerate(data["items"]):
            if not isinstance(entry, dict) or set(entry) != fields:
                raise broken(f"item {row} does not have exactly the fields {', '.join(sorted(fields))}")
            if not isinstance(entry["row"], int) or entry["row"] != row:
                raise broken(f"item {row} says it is row {entry['row']!r}")
            if not all(isinstance(entry[name], str) for name in fields - {"row", "colours"}):
                raise broken(f"item {row} has a field that is not text")
            if data["format_version"] >= 3 and not re.fullmatch(r"[0-9a-f]{16}", entry["vector_digest"]):
                raise broken(f"item {row} has no digest of its vector")
            if entry["category"] not in data["categories"]:
                raise broken(f"item {row} is in category {entry['category']!r}, which the store does not list")
            colours = _read_colours(entry.get("colours", []))
            if colours is None:
                raise broken(f"item {row} has colours that are not a list of {{hex, share}} entries")
            items.append(IndexedItem(**{**entry, "colours": colours}))
        skipped = []
        for entry in data["skipped"]:
            if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)):
                raise broken("a skipped-file entry is not a [path, reason] pair")
            skipped.append((entry[0], entry[1]))
        colour_method = data.get("colour_method", 0)
        if not isinstance(colour_method, int):
            raise broken("'colour_method' is not a whole number")
        indexes = {}
        if data["format_version"] >= 2:
            recorded = data.get("indexes")
            names = {ALL, *data["categories"]}
            fields = {f.name for f in dataclasses.fields(IndexChoice)}
            if not isinstance(recorded, dict) or set(recorded) != names or not all(
                    isinstance(choice, dict) and set(choice) == fields for choice in recorded.values()):
                raise broken(f"'indexes' does not describe the indexes {', '.join(sorted(names))}")
            indexes = {name: IndexChoice(**choice) for name, choice in recorded.items()}
            if not all(choice.kind in ("exact", "hnsw") for choice in indexes.values()):
                raise broken("an index is neither exact nor hnsw")
        checksums = data.get("checksums", {}) if data["format_version"] >= 3 else {}
        files = {"vectors.npy", "classifier.npz", *(f"{name}.usearch" for name in indexes)}
        if data["format_version"] >= 3 and not (isinstance(checksums, dict) and set(checksums) == files and all(
                isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) for value in checksums.values())):
            raise broken(f"'checksums' does not give the SHA-256 of {', '.join(sorted(files))}")
        return cls(data["format_version"], data["created"], data["backbone"], data["gallery"], data["categories"],
                   items, skipped, colour_method, indexes, checksums)


def _read_colours(entries: object) -> tuple[Colour, ...] | None:
    """An item's stored colours, or None when they are malformed."""
    if not isinstance(entries, list):
        return None
    colours = []
    for entry in entries:
        if not (isinstance(entry, dict) and set(entry) == {"hex", "share"} and isinstance(entry["hex"], str)
                and re.fullmatch(r"#[0-9a-f]{6}", entry["hex"]) and isinstance(entry["share"], (int, float))
                and 0 <= entry["share"] <= 1):
            return None
        colours.append(Colour(entry["hex"], float(entry["share"])))
    return tuple(colours)


REPAIR_HINT = "repair the store with python -m engine index"
REPAIR = "repair it with: python -m engine index --gallery <catalogue folder> --store {store}"


def current_version(store: str | Path) -> Path:
    """The live version folder of a store; ``IndexNotFoundError`` or ``CorruptIndexError`` if there is none."""
    store = Path(store)
    pointer = store / "CURRENT"
    if not store.exists() or not (pointer.exists() or (store / "versions").exists()):
        raise IndexNotFoundError(
            f"no index in {store}; build one with: python -m engine index --gallery <catalogue folder> --store {store}"
        )
    repair = REPAIR.format(store=store)
    if not pointer.is_file():
        raise CorruptIndexError(f"the store {store} has no readable CURRENT file naming its live version; {repair}")
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptIndexError(f"cannot read {pointer} ({error}); {repair}") from None
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise CorruptIndexError(f"{pointer} does not name a version ({name!r}); {repair}")
    folder = store / "versions" / name
    if not (folder / "meta.json").is_file():
        raise CorruptIndexError(f"the index in {store} is incomplete ({folder} has no meta.json); {repair}")
    return folder


def read_version_meta(folder: Path) -> StoreMeta:
    """The validated metadata of one version folder."""
    path = folder / "meta.json"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptIndexError(f"cannot read {path} ({error}); {REPAIR_HINT}") from None
    return StoreMeta.from_json(text, path)


def read_meta(store: str | Path) -> StoreMeta:
    """The live version's metadata, without loading vectors or indexes."""
    return read_version_meta(current_version(store))


def check_compatible(meta: StoreMeta, backbone: BackboneSpec) -> None:
    """Raise ``StaleIndexError`` unless the index was built the way ``backbone`` embeds today."""
    built_with = meta.backbone
    if built_with != spec_to_dict(backbone):
        raise StaleIndexError(
            f"the index was built with backbone {built_with.get('name')!r} "
            f"({built_with.get('layer')}/{built_with.get('pooling')}, {built_with.get('preprocessing')}), "
            f"which differs from {backbone.name!r} as defined now; rebuild it with python -m engine index"
        )


def stored_spec(meta: StoreMeta) -> BackboneSpec:
    """The spec, as this code defines it, of the backbone a store was built with."""
    if meta.backbone_name not in BACKBONES:
        raise StaleIndexError(
            f"the index was built with backbone {meta.backbone_name!r}, which this version does not know "
            f"(known: {', '.join(sorted(BACKBONES))}); rebuild it with python -m engine index"
        )
    return BACKBONES[meta.backbone_name]


def open_store(store: str | Path) -> StoredIndex:
    """Load a store with the backbone recorded in it (see ``load_index``)."""
    return load_index(store, stored_spec(read_meta(store)))


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
        why = "not a NumPy array file" if "pickle" in str(error) else str(error)
        raise CorruptIndexError(f"cannot read {path} ({why}); {REPAIR_HINT}") from None
    expected = (len(meta.items), backbone.feature_dim)
    if vectors.dtype != np.float32 or vectors.shape != expected or (finite and not _all_finite(vectors)):
        raise CorruptIndexError(
            f"{path} holds {vectors.dtype} vectors of shape {vectors.shape}, expected finite float32 {expected}; "
            f"{REPAIR_HINT}"
        )
    return vectors


def load_index(store: str | Path, backbone: BackboneSpec) -> StoredIndex:
    """Load the live version of a store built with ``backbone``, checking every file against the metadata.

    Raises ``IndexNotFoundError``, ``StaleIndexError`` or ``CorruptIndexError``
    with a message that says how to fix it.
    """
    folder = current_version(store)
    meta = read_version_meta(folder)
    if meta.format_version != FORMAT_VERSION or meta.colour_method != COLOUR_METHOD:
        lacks = "product colours" if meta.format_version == 1 else "checksums of its files"
        what = (f"store format {meta.format_version}, without {lacks}" if meta.format_version != FORMAT_VERSION
                else f"product colours of method {meta.colour_method}, this version computes method {COLOUR_METHOD}")
        raise StaleIndexError(
            f"the index in {store} was built by an older version ({what}); "
            f"{REPAIR.format(store=store).replace('repair it', 'update it')} (its vectors are checked and reused)"
        )
    check_compatible(meta, backbone)
    damaged = f"the index in {store} is damaged ({{}}); {REPAIR.format(store=store)}"
    changed = damaged_files(folder, meta.checksums)
    if changed:
        raise CorruptIndexError(damaged.format(
            f"{', '.join(changed)} {'is' if len(changed) == 1 else 'are'} not what was written: "
            "missing, or contents that differ from the checksum recorded in meta.json"))
    vectors = load_vectors(folder, meta, backbone)
    try:
        with np.load(folder / "classifier.npz", allow_pickle=False) as arrays:
            classifier = CategoryClassifier.from_arrays(arrays)
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise CorruptIndexError(damaged.format(f"classifier.npz: {error}")) from None
    if classifier.categories != meta.categories or classifier.weights.shape != (len(meta.categories), backbone.feature_dim):
        raise CorruptIndexError(damaged.format("classifier.npz does not match the store's categories"))
    categories = np.array([item.category for item in meta.items])
    indexes = {}
    for name in [ALL, *meta.categories]:
        path = folder / f"{name}.usearch"
        try:
            index = Index.restore(str(path), view=True) if path.is_file() else None
        except (OSError, RuntimeError, ValueError) as error:
            raise CorruptIndexError(damaged.format(f"{path.name}: {error}")) from None
        count = len(meta.items) if name == ALL else int((categories == name).sum())
        choice = meta.indexes[name]
        if (index is None or index.ndim != backbone.feature_dim or len(index) != count
                or str(index.dtype).split(".")[-1].lower() != choice.dtype):
            raise CorruptIndexError(damaged.format(f"{path.name} is missing or does not match the vectors"))
        index.expansion_search = choice.expansion_search
        indexes[name] = VectorIndex(index, choice)
    return StoredIndex(
        backbone=backbone,
        gallery=Path(meta.gallery),
        items=meta.items,
        vectors=vectors,
        classifier=classifier,
        indexes=indexes,
        created=meta.created,
        skipped=meta.skipped,
    )
