"""A store version's metadata (``meta.json``): how it was built and what it holds, checked on reading."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.backbone_specs import BackboneSpec, Preprocessing
from engine.catalogue import CatalogueImage
from engine.colours import Colour
from engine.errors import SearchError
from engine.shop_fields import SHOP_FIELDS
from engine.store.vector_index import IndexChoice

# 2: items carry their product's dominant colours. 3: data files carry checksums and items their row's
# digest. 4: images carry what the shop says of the product (engine.shop_fields) and the store the feed it
# was built from. An older store is stale; indexing updates it, reusing its vectors (checked by their
# checksums, or for formats 1 and 2 once a sample of them re-embeds to what is stored: engine.indexing).
FORMAT_VERSION = 4
READABLE_FORMATS = (1, 2, 3, 4)
ALL = "all"  # name of the index over every category

class StoreNotFoundError(SearchError):
    """No index has been built in the store folder yet."""


class StaleStoreError(SearchError):
    """The index was built by another backbone, preprocessing or format than this code uses."""


class DamagedStoreError(SearchError):
    """The store's files are unreadable or inconsistent."""


@dataclass(frozen=True, kw_only=True)
class StoredImage(CatalogueImage):
    """A catalogue image as stored: ``row`` is its row in the vectors and its key in the vector indexes."""

    row: int
    digest: str  # content hash of the image file when it was embedded
    colours: tuple[Colour, ...] = ()  # the product's dominant colours in this image (engine.colours)
    vector_digest: str = ""  # engine.store.files.row_digest of its row of the vectors, set when saved


def _read_backbone(data: dict) -> BackboneSpec | None:
    """The recorded backbone as a spec, or None when it is described in a shape this code does not know."""
    try:
        prep = data["preprocessing"]
        preprocessing = Preprocessing(prep["size"], tuple(prep["mean"]), tuple(prep["std"]), prep["fit"])
        return BackboneSpec(**{**data, "preprocessing": preprocessing})
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class StoreMeta:
    """A store version's ``meta.json``: how it was built and what it holds, validated on reading."""

    format_version: int
    created: str
    backbone: BackboneSpec
    catalogue: str  # the catalogue folder it was built from
    categories: list[str]
    images: list[StoredImage]
    skipped: list[tuple[str, str]]
    colour_method: int = 0  # engine.colours.COLOUR_METHOD the images' colours were computed with (0: none)
    indexes: dict[str, IndexChoice] = dataclasses.field(default_factory=dict)  # how each vector index searches
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)  # data file name -> SHA-256 (format 3)
    feed: str = ""  # the product feed it was built from (format 4; "" for a catalogue folder)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["skipped"] = [list(entry) for entry in self.skipped]
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str, path: Path) -> StoreMeta:
        """Parse and check ``meta.json``; ``DamagedStoreError`` naming ``path`` for anything malformed."""

        def broken(why: str) -> DamagedStoreError:
            return DamagedStoreError(f"{path} is damaged ({why}); {REPAIR_HINT}")

        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise broken(f"not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise broken(f"expected a JSON object, found {type(data).__name__}")
        version = data.get("format_version")
        if version not in READABLE_FORMATS:
            # A newer or unknown layout: not damage, but this code cannot read it.
            raise StaleStoreError(f"the store uses format {version}, this version reads {FORMAT_VERSION}; "
                                  "rebuild it with python -m engine index")
        if version < 3:  # the words formats 1 and 2 used
            data = {**data, "catalogue": data.get("gallery"), "images": data.get("items")}
        expected = {"created": str, "backbone": dict, "catalogue": str, "categories": list, "images": list,
                    "skipped": list}
        for key, kind in expected.items():
            if not isinstance(data.get(key), kind):
                raise broken(f"'{key}' is missing or not a {kind.__name__}")
        if not isinstance(data["backbone"].get("name"), str):
            raise broken("the backbone has no name")
        backbone = _read_backbone(data["backbone"])
        if backbone is None:
            raise StaleStoreError(f"the store was built with backbone {data['backbone']['name']!r} as an older version "
                                  "described it; rebuild it with python -m engine index")
        if not all(isinstance(c, str) and c for c in data["categories"]):
            raise broken("a category name is not a string")
        if not isinstance(data.get("colour_method", 0), int):
            raise broken("'colour_method' is not a whole number")
        if not isinstance(data.get("feed", ""), str):
            raise broken("'feed' is not text")
        indexes = _read_indexes(data, broken)
        return cls(version, data["created"], backbone, data["catalogue"], data["categories"],
                   _read_images(data, broken), _read_skipped(data["skipped"], broken), data.get("colour_method", 0),
                   indexes, _read_checksums(data, indexes, broken), data.get("feed", ""))


def _read_images(data: dict, broken) -> list[StoredImage]:
    """The recorded images, each with exactly its format's fields, numbered in order, in a listed category."""
    version = data["format_version"]
    fields = {f.name for f in dataclasses.fields(StoredImage)}
    if version < 4:
        fields -= set(SHOP_FIELDS)
    if version < 3:
        fields.discard("vector_digest")
    if version == 1:
        fields.discard("colours")
    images = []
    for row, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or set(entry) != fields:
            raise broken(f"image {row} does not have exactly the fields {', '.join(sorted(fields))}")
        if not isinstance(entry["row"], int) or entry["row"] != row:
            raise broken(f"image {row} says it is row {entry['row']!r}")
        if not all(isinstance(entry[name], str) for name in fields - {"row", "colours"}):
            raise broken(f"image {row} has a field that is not text")
        if version >= 3 and not re.fullmatch(r"[0-9a-f]{16}", entry["vector_digest"]):
            raise broken(f"image {row} has no digest of its vector")
        if entry["category"] not in data["categories"]:
            raise broken(f"image {row} is in category {entry['category']!r}, which the store does not list")
        colours = _read_colours(entry.get("colours", []))
        if colours is None:
            raise broken(f"image {row} has colours that are not a list of {{hex, share}} entries")
        images.append(StoredImage(**{**entry, "colours": colours}))
    return images


def _read_skipped(entries: list, broken) -> list[tuple[str, str]]:
    if not all(isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)
               for entry in entries):
        raise broken("a skipped-file entry is not a [path, reason] pair")
    return [(entry[0], entry[1]) for entry in entries]


def _read_indexes(data: dict, broken) -> dict[str, IndexChoice]:
    """How each vector index searches (format 2 on): one over all images and one per category."""
    if data["format_version"] < 2:
        return {}
    recorded = data.get("indexes")
    names = {ALL, *data["categories"]}
    fields = {f.name for f in dataclasses.fields(IndexChoice)}
    if not isinstance(recorded, dict) or set(recorded) != names or not all(
            isinstance(choice, dict) and set(choice) == fields for choice in recorded.values()):
        raise broken(f"'indexes' does not describe the indexes {', '.join(sorted(names))}")
    indexes = {name: IndexChoice(**choice) for name, choice in recorded.items()}
    if not all(choice.kind in ("exact", "hnsw") for choice in indexes.values()):
        raise broken("an index is neither exact nor hnsw")
    return indexes


def _read_checksums(data: dict, indexes: dict[str, IndexChoice], broken) -> dict[str, str]:
    """Each data file's SHA-256 (format 3 on)."""
    if data["format_version"] < 3:
        return {}
    checksums = data.get("checksums")
    files = {"vectors.npy", "classifier.npz", *(f"{name}.usearch" for name in indexes)}
    if not (isinstance(checksums, dict) and set(checksums) == files and all(
            isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) for value in checksums.values())):
        raise broken(f"'checksums' does not give the SHA-256 of {', '.join(sorted(files))}")
    return checksums


def _read_colours(entries: object) -> tuple[Colour, ...] | None:
    """An image's stored colours, or None when they are malformed."""
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
REPAIR = "repair it with: python -m engine index --catalogue <catalogue folder> --store {store}"
