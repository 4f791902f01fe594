"""Read a catalogue folder: which images belong to which product and category.

A catalogue is a folder laid out as either

    <category>/<image>                 one image = one product (id = file stem)
    <category>/<product_id>/<images>   several images of one product

with an optional ``manifest.csv`` or ``manifest.json`` at its root that adds
per-product fields (``name``, ``url`` (its product page), ``creator``, ``license``, ``source``,
``source_url`` (where the image or its 3D model comes from), and what a shop says of it: ``price``,
``sale_price``, ``availability``, ``brand``, ``colour_name``, ``product_type`` (``engine.shop_fields``)).
A shop's product feed gives the same records (``engine.feed_indexing``).
Files that are not images by extension are reported, never fatal; whether an
image actually decodes is found out when it is embedded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import SearchError
from engine.shop_fields import SHOP_FIELDS, normalise_availability, normalise_price

# The catalogue that ships with the code (rendered from Sweet Home 3D models): the app's default, and what the 8-bit
# embedding network is calibrated on (engine.quantise).
BUNDLED_CATALOGUE = Path(__file__).resolve().parent.parent / "reference_gallery"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
MANIFEST_FIELDS = ("name", "url", "creator", "license", "source", "source_url", *SHOP_FIELDS)
# Files a catalogue folder commonly holds that are not catalogue images and not worth reporting.
IGNORED_NAMES = {"manifest.csv", "manifest.json", "README.md", "CREDITS.md", ".DS_Store", "Thumbs.db"}


class CatalogueError(SearchError):
    """The catalogue folder cannot be used as given (missing, empty, malformed manifest)."""


@dataclass(frozen=True)
class CatalogueImage:
    """One catalogue image and the product it shows."""

    product_id: str
    category: str
    path: str  # relative to the catalogue root, with forward slashes
    name: str
    url: str = ""
    creator: str = ""
    license: str = ""
    source: str = ""
    source_url: str = ""
    # What the shop says of the product (engine.shop_fields); "" where it says nothing.
    price: str = ""  # "129.00 EUR"
    sale_price: str = ""
    availability: str = ""  # in_stock, out_of_stock, preorder or backorder
    brand: str = ""
    colour_name: str = ""  # the colour as the shop names it (a feed's "color")
    product_type: str = ""


@dataclass
class Catalogue:
    """The result of scanning a catalogue folder."""

    root: Path
    images: list[CatalogueImage]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    @property
    def categories(self) -> list[str]:
        return sorted({image.category for image in self.images})


def _read_manifest(root: Path) -> dict[str, dict[str, str]]:
    """Per-product fields from manifest.csv or manifest.json, keyed by product id."""
    csv_path, json_path = root / "manifest.csv", root / "manifest.json"
    try:
        if csv_path.is_file():
            with csv_path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        elif json_path.is_file():
            data = json.loads(json_path.read_text(encoding="utf-8"))
            rows = data if isinstance(data, list) else [dict(v, product_id=k) for k, v in data.items()]
        else:
            return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error, AttributeError, TypeError) as error:
        raise CatalogueError(f"could not read the catalogue manifest in {root}: {error}") from error
    manifest = {}
    for row in rows:
        if not isinstance(row, dict) or not row.get("product_id"):
            raise CatalogueError(f"every manifest row needs a 'product_id' (in {root}); got {row!r}")
        fields = {key: str(value or "") for key, value in row.items()}
        for key in ("price", "sale_price"):
            fields[key] = normalise_price(fields.get(key, ""))
        fields["availability"] = normalise_availability(fields.get("availability", ""))
        manifest[str(row["product_id"])] = fields
    return manifest


def _humanise(product_id: str) -> str:
    return product_id.replace("_", " ").replace("-", " ").strip().capitalize() or product_id


def scan_catalogue(root: str | Path) -> Catalogue:
    """List the catalogue's images with their product and category.

    Raises ``CatalogueError`` when the folder does not exist or holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise CatalogueError(f"catalogue folder not found: {root}")
    manifest = _read_manifest(root)
    items: list[CatalogueImage] = []
    skipped: list[tuple[str, str]] = []
    product_category: dict[str, str] = {}

    for category_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        category = category_dir.name
        for path in _walk(category_dir, root, skipped):
            relative = path.relative_to(root).as_posix()
            if path.name in IGNORED_NAMES or path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((relative, f"not an image file type ({path.suffix or 'no extension'})"))
                continue
            problem = _unusable_file(path)
            if problem:
                skipped.append((relative, problem))
                continue
            depth = len(path.relative_to(category_dir).parts)
            if depth > 2:
                skipped.append((relative, "too deeply nested; use <category>/<product_id>/<image>"))
                continue
            product_id = path.parent.name if depth == 2 else path.stem
            if product_category.setdefault(product_id, category) != category:
                raise CatalogueError(
                    f"product id {product_id!r} appears in two categories "
                    f"({product_category[product_id]} and {category}); product ids must be unique"
                )
            fields = manifest.get(product_id, {})
            items.append(
                CatalogueImage(
                    product_id=product_id,
                    category=category,
                    path=relative,
                    name=fields.get("name") or _humanise(product_id),
                    **{key: fields.get(key, "") for key in MANIFEST_FIELDS if key != "name"},
                )
            )
    for path in sorted(p for p in root.iterdir() if p.is_file() and p.name not in IGNORED_NAMES):
        skipped.append((path.name, "images must be inside a <category>/ folder"))
    if not items:
        raise CatalogueError(
            f"no images found in {root}; expected <category>/<image> or <category>/<product_id>/<image>"
        )
    return Catalogue(root=root, images=items, skipped=skipped)


def _walk(folder: Path, root: Path, skipped: list[tuple[str, str]], seen: frozenset[str] = frozenset()) -> list[Path]:
    """Every entry under ``folder`` that is not a folder, sorted; folders that cannot be listed go to ``skipped``.

    Linked folders are followed, except a link back into a folder being walked (it would never end).
    """
    seen = seen | {os.path.realpath(folder)}
    found = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        skipped.append((folder.relative_to(root).as_posix() + "/", f"folder cannot be read ({error.strerror or error})"))
        return found
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if os.path.realpath(entry) in seen:
                skipped.append((entry.relative_to(root).as_posix() + "/", "link back into its own folder; not followed"))
            else:
                found += _walk(entry, root, skipped, seen)
        else:
            found.append(entry)
    return found


def _unusable_file(path: Path) -> str:
    """Why ``path`` cannot be indexed as an image file ("" when it can be read)."""
    try:
        info = path.stat()  # follows symbolic links
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a folder, pipe or device)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return ""


def file_digest(path: str | Path) -> str:
    """Content hash of a file, used to tell which catalogue images changed since indexing."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
