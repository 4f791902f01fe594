"""Build or update a store from a catalogue folder.

Indexing is a sync: images whose content is unchanged since the last build
keep their stored vectors and colours, new or changed ones are embedded and
their product's dominant colours computed, removed ones are dropped. Switching
backbone re-embeds everything.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from engine.backbone_specs import DEFAULT_BACKBONE, BackboneSpec, get_spec
from engine.batches import ImageJob, ImageResult, process_batch
from engine.catalogue import Catalogue, CatalogueError, CatalogueImage, file_digest, scan_catalogue
from engine.classify import fit_classifier, import_fitter_beside
from engine.colours import COLOUR_METHOD, Colour
from engine.errors import SearchError
from engine.networks import CORES, Backbone, load_backbone, use_threads
from engine.store.files import damaged_files, row_digest
from engine.store.meta import StoredImage, StoreMeta, StoreNotFoundError
from engine.store.versions import (Store, check_compatible, current_version, load_vectors, open_store, read_meta,
                                   read_version_meta, save_store, stored_spec)

# Every field of a catalogue image: a change to any of them (a new manifest field too) makes the index stale.
CATALOGUE_FIELDS = tuple(f.name for f in dataclasses.fields(CatalogueImage))
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
    repaired: str = ""  # what was wrong with the store before this run ("" if nothing)
    verified: str = ""  # how the vectors reused from a damaged or older store were checked
    coloured: int = 0  # reused images whose colours were computed (their store had none, or an older method's)


Previous = dict[str, tuple[np.ndarray, tuple[Colour, ...]]]  # image digest -> (vector, colours)
# An older store's vectors (no checksums) are reused only if this many of them, spread over the store,
# re-embed to what is stored: a zeroed, shuffled or foreign vectors file fails it.
SAMPLE_CHECKS = 8
SAME_VECTOR = 0.999  # cosine above which a re-embedded image counts as its stored vector


@dataclass
class Reusable:
    """Stored vectors and colours a rebuild may reuse, keyed by image digest, and how they were checked."""

    previous: Previous = field(default_factory=dict)
    verified: str = ""  # what was checked, for the report
    needs_sample: bool = False  # from a store without checksums: reuse only once a sample re-embeds to them


def _verified_rows(folder: Path, meta: StoreMeta, vectors: np.ndarray) -> tuple[list[int], str]:
    """The rows of a checksummed version that are what was written: all when the file matches its checksum,
    else those whose bytes match their item's row digest."""
    if not damaged_files(folder, {"vectors.npy": meta.checksums["vectors.npy"]}):
        return list(range(len(meta.images))), "every stored vector matched its checksum"
    rows = [item.row for item in meta.images if row_digest(vectors[item.row]) == item.vector_digest]
    return rows, f"{len(rows)} of {len(meta.images)} stored vectors matched their digests; the others are re-embedded"


def _previous_vectors(store: Path, spec: BackboneSpec) -> Reusable:
    """What a rebuild may reuse: the live version's vectors, or when that is damaged or of an older format
    the newest readable version's; nothing when none was built with ``spec`` as defined today."""
    versions = store / "versions"
    folders = []
    try:
        folders.append(current_version(store))
    except SearchError:
        pass
    if versions.is_dir():
        folders += sorted((p for p in versions.iterdir() if p.is_dir() and p not in folders), reverse=True)
    for folder in folders:
        try:
            meta = read_version_meta(folder)
            check_compatible(meta, spec)
            vectors = load_vectors(folder, meta, spec, finite=not meta.checksums)
        except SearchError:
            continue
        current = meta.colour_method == COLOUR_METHOD  # colours of another method are recomputed
        if meta.checksums:
            rows, verified = _verified_rows(folder, meta, vectors)
        else:  # unit vectors only; the sample check in index_catalogue decides on the rest
            norms = np.linalg.norm(vectors, axis=1)
            rows = list(np.flatnonzero(np.abs(norms - 1) < 1e-3))
            verified = ""
        previous = {meta.images[row].digest: (np.array(vectors[row]), meta.images[row].colours if current else ())
                    for row in rows}
        return Reusable(previous, verified, needs_sample=not meta.checksums)
    return Reusable(verified="no stored vector could be read; every image is embedded")


def _sample_matches(reusable: Reusable, paths: dict[str, Path], backbone: Backbone, min_side: int) -> bool:
    """Whether ``SAMPLE_CHECKS`` of the stored vectors, spread over the store, re-embed to what is stored."""
    digests = [digest for digest in reusable.previous if digest in paths]
    sample = digests[:: max(1, len(digests) // SAMPLE_CHECKS)][:SAMPLE_CHECKS]
    jobs = [ImageJob(i, str(paths[digest]), True) for i, digest in enumerate(sample)]
    results = process_batch(jobs, backbone, min_side)
    return all(result.vector is not None and float(result.vector @ reusable.previous[sample[result.position]][0])
               >= SAME_VECTOR for result in results)


def stored_backbone(store: str | Path) -> str | None:
    """The backbone name an existing store was built with, if it is readable and one this code knows."""
    try:
        return stored_spec(read_meta(store)).name
    except SearchError:
        return None


def index_catalogue(catalogue: str | Path, store: str | Path, **options) -> IndexReport:
    """Index (or re-sync) the catalogue folder ``catalogue`` into ``store``; ``options`` as ``index_scanned``."""
    return index_scanned(scan_catalogue(catalogue), store, **options)


def index_scanned(
    scanned: Catalogue,
    store: str | Path,
    backbone: str | None = None,
    progress: Progress | None = None,
    batch_size: int = 16,
    ray_address: str | None = None,
    ray_workers: int | None = None,
    feed: str = "",
) -> IndexReport:
    """Index (or re-sync) the listed catalogue images into ``store``.

    ``backbone`` defaults to the one the store was built with, else the
    product default. Unreadable images are skipped and listed in the report.
    A store that cannot be loaded as it is gets rebuilt, reusing whatever
    vectors of it are verified; ``IndexReport.repaired`` says what was wrong.
    ``ray_address`` ("local" for an instance on this machine, else a cluster's
    address) decodes and embeds on Ray, over ``ray_workers`` workers
    (``engine.ray_indexing``); the store written is the same. ``feed`` names the
    product feed the images were listed from, if any (``engine.feed_indexing``).
    """
    started = time.perf_counter()
    store = Path(store)
    backbone = backbone or stored_backbone(store) or DEFAULT_BACKBONE
    spec = get_spec(backbone)
    reusable, previous_count, repaired = _reusable(store, spec)
    skipped = list(scanned.skipped)
    readable = _readable(scanned, skipped)
    if reusable.needs_sample and reusable.previous:
        _check_sample(reusable, {digest: scanned.root / image.path for image, digest in readable}, spec)
    previous = reusable.previous
    to_embed = [i for i, (_, digest) in enumerate(readable) if digest not in previous]
    # Images from a store without colours (format 1) or with another method's: only their colours are computed.
    to_colour = [i for i, (_, digest) in enumerate(readable) if digest in previous and not previous[digest][1]]
    jobs = [ImageJob(i, str(scanned.root / readable[i][0].path), readable[i][1] not in previous)
            for i in to_embed + to_colour]
    batches = [jobs[start : start + batch_size] for start in range(0, len(jobs), batch_size)]
    import_fitter_beside()
    if ray_address is None:
        processed = _processed_here(batches, load_backbone(backbone) if to_embed else None, spec.preprocessing.size)
    else:
        from engine.ray_indexing import process_on_ray  # Ray is an optional extra (requirements-scale.txt)

        processed = process_on_ray(batches, backbone, spec.preprocessing.size, ray_address, ray_workers)
    new_vectors, new_colours = _collect(processed, readable, skipped, len(jobs), progress)
    images, vectors = _kept(readable, previous, new_vectors, new_colours)
    if not images:
        raise CatalogueError(f"none of the images in {scanned.root} could be read; nothing to index")
    classifier = fit_classifier(vectors, [image.category for image in images])
    save_store(store, spec, scanned.root, images, vectors, classifier, skipped, feed)
    reused = len(images) - len(new_vectors)
    return IndexReport(
        store=store, backbone=backbone, images=len(images), embedded=len(new_vectors), reused=reused,
        removed=max(0, previous_count - reused),
        images_per_category=dict(sorted(Counter(image.category for image in images).items())),
        products_per_category=dict(sorted(Counter(c for c, _ in {(i.category, i.product_id) for i in images}).items())),
        skipped=skipped, seconds=time.perf_counter() - started, repaired=repaired, verified=reusable.verified,
        coloured=len([i for i in to_colour if i in new_colours]),
    )


def _processed_here(batches: list[list[ImageJob]], backbone: Backbone | None,
                    min_side: int) -> Iterator[list[ImageResult]]:
    """``process_batch`` of every batch, in order, one batch per core at a time, each on one thread: a batch's
    decoding and colours (mostly one core's work) overlap another's network pass, and on small images one
    thread loses little (benchmarks/README.md, "ONNX Runtime")."""
    def on_one_thread(batch: list[ImageJob]) -> list[ImageResult]:
        use_threads(1)
        return process_batch(batch, backbone, min_side)

    with ThreadPoolExecutor(max_workers=CORES) as pool:
        yield from pool.map(on_one_thread, batches)


def _reusable(store: Path, spec: BackboneSpec) -> tuple[Reusable, int, str]:
    """What of the store may be reused, how many images it held, and what was wrong with it ("" if nothing)."""
    try:
        stored = open_store(store)
    except StoreNotFoundError:
        return Reusable(), 0, ""
    except SearchError as error:  # a damaged or older store: salvage what is verified
        return _previous_vectors(store, spec), 0, str(error)
    if stored.backbone != spec:  # another backbone: nothing to reuse
        return Reusable(), len(stored.images), ""
    # Opened: every file matched its checksum.
    return Reusable({image.digest: (stored.vectors[image.row], image.colours) for image in stored.images}), \
        len(stored.images), ""


def _readable(scanned: Catalogue, skipped: list[tuple[str, str]]) -> list[tuple[CatalogueImage, str]]:
    """The catalogue's images that can be read, each with its content digest; the others are added to ``skipped``."""
    readable = []
    for image in scanned.images:
        try:
            readable.append((image, file_digest(scanned.root / image.path)))
        except OSError as error:
            skipped.append((image.path, f"cannot be read ({error.strerror or error})"))
    return readable


def _check_sample(reusable: Reusable, paths: dict[str, Path], spec: BackboneSpec) -> None:
    """Keep an older store's vectors only if a sample of them re-embeds to what is stored; say which."""
    if _sample_matches(reusable, paths, load_backbone(spec.name), spec.preprocessing.size):
        reusable.verified = f"{SAMPLE_CHECKS} sampled stored vectors re-embedded to what is stored"
    else:
        reusable.verified = "sampled stored vectors did not re-embed to what is stored; every image is embedded"
        reusable.previous.clear()


def _collect(processed, readable: list, skipped: list[tuple[str, str]], total: int,
             progress: Progress | None) -> tuple[dict[int, np.ndarray], dict[int, tuple[Colour, ...]]]:
    """The vectors and colours of the processed batches by image number; failures are added to ``skipped``."""
    new_vectors: dict[int, np.ndarray] = {}
    new_colours: dict[int, tuple[Colour, ...]] = {}
    done = 0
    for results in processed:
        for result in results:
            if result.error:
                skipped.append((readable[result.position][0].path, result.error))
                continue
            new_colours[result.position] = result.colours
            if result.vector is not None:
                new_vectors[result.position] = result.vector
        done += len(results)
        if progress:
            progress(done, total)
    return new_vectors, new_colours


def _kept(readable: list[tuple[CatalogueImage, str]], previous: Previous, new_vectors: dict[int, np.ndarray],
          new_colours: dict[int, tuple[Colour, ...]]) -> tuple[list[StoredImage], np.ndarray]:
    """The images the new store holds (a vector and colours each, new or reused), numbered, and their vectors."""
    kept = []
    for i, (image, digest) in enumerate(readable):
        vector, colours = previous.get(digest, (None, ()))
        vector, colours = new_vectors.get(i, vector), new_colours.get(i, colours)
        if vector is not None and colours:
            kept.append((image, digest, vector, colours))
    images = [StoredImage(row=row, digest=digest, colours=colours, **dataclasses.asdict(image))
              for row, (image, digest, _, colours) in enumerate(kept)]
    vectors = np.stack([vector for _, _, vector, _ in kept]).astype(np.float32) if kept else np.zeros((0, 0), np.float32)
    return images, vectors


def index_is_current(catalogue: str | Path, store: str | Path) -> bool:
    """True when the store loads intact, is compatible with today's backbone code and matches the catalogue's files."""
    try:
        return catalogue_matches(open_store(store), catalogue)
    except SearchError:
        return False


def catalogue_matches(stored: Store, catalogue: str | Path) -> bool:
    """True when the loaded store holds exactly the catalogue's current files and their fields."""
    try:
        scanned = scan_catalogue(catalogue)
        skipped = {path for path, _ in stored.skipped}
        current = {
            (file_digest(Path(catalogue) / item.path), *(getattr(item, f) for f in CATALOGUE_FIELDS))
            for item in scanned.images
            if item.path not in skipped
        }
    except (SearchError, OSError):
        return False
    indexed = {(item.digest, *(getattr(item, f) for f in CATALOGUE_FIELDS)) for item in stored.images}
    return indexed == current


def open_current(catalogue: str | Path, store: str | Path, progress: Progress | None = None) -> Store:
    """The store, loaded once when it is intact and matches the catalogue; otherwise built, synced or repaired
    first (``index_catalogue``) and then loaded."""
    try:
        stored = open_store(store)
        if catalogue_matches(stored, catalogue):
            return stored
    except SearchError:
        pass  # missing or damaged: indexing builds or repairs it
    index_catalogue(catalogue, store, progress=progress)
    return open_store(store)
