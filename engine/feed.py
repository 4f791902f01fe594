"""Read a shop's product feed: Google Merchant Center's fields (Meta's catalogue feeds use the same), as TSV,
CSV or RSS/Atom XML, gzipped or not, from a file or an HTTP(S) URL.

Each product becomes a ``FeedProduct``: its id, title, link, image links, price, sale price, availability,
brand, colour and product type, and the store category it maps to (``map_category``). Rows the store
cannot use (no id, no image link, a category that maps to none) are reported with their reason, never fatal.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidRequestError, SearchError
from engine.shop_fields import normalise_availability, normalise_price

# A feed larger than this is refused rather than read into memory (Merchant Center's own limit is 4 GB
# compressed over many files; one file of a million products is a few hundred MB).
MAX_FEED_BYTES = 512_000_000
FEED_TIMEOUT_S = 60.0
GOOGLE_NAMESPACE = "http://base.google.com/ns/1.0"
# The store's categories as words a feed's category or product type uses, tried in this order on each part of
# the category path from the most specific ("Sofa beds" is a sofa, "Table lamps" a lamp, "Desk chairs" a chair).
CATEGORY_WORDS = {
    "sofa": ("sofa", "couch", "settee", "loveseat", "chaise"),
    "lamp": ("lamp", "lighting", "light", "chandelier", "sconce", "lantern", "spotlight"),
    "chair": ("chair", "armchair", "stool", "bench", "ottoman", "pouf", "footstool", "recliner"),
    "table": ("table", "desk", "nightstand"),
    "bed": ("bed", "crib", "cot", "cradle", "daybed", "bunk"),
}


class FeedError(SearchError):
    """The feed cannot be read at all (missing, not a feed, no usable column)."""

    http_status = 400


@dataclass(frozen=True)
class FeedProduct:
    """One product of a feed, with its fields as the store keeps them."""

    product_id: str
    category: str
    name: str  # the feed's title
    url: str  # the feed's link: the product's page in the shop
    image_urls: tuple[str, ...]  # image_link first, then additional_image_link, without repeats
    price: str = ""  # "129.00 EUR"
    sale_price: str = ""
    availability: str = ""  # in_stock, out_of_stock, preorder or backorder
    brand: str = ""
    colour_name: str = ""  # the feed's color: the colour as the shop names it
    product_type: str = ""


@dataclass
class Feed:
    """The products read from a feed, and the rows left out with why."""

    source: str
    products: list[FeedProduct]
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (product id or row, reason)


def read_feed_bytes(source: str) -> bytes:
    """The feed's bytes, from a file or an HTTP(S) URL, ungzipped."""
    try:
        if source.startswith(("http://", "https://")):
            request = urllib.request.Request(source, headers={"User-Agent": "furniture-search-feed/1"})
            with urllib.request.urlopen(request, timeout=FEED_TIMEOUT_S) as answer:
                data = answer.read(MAX_FEED_BYTES + 1)
        else:
            with open(source, "rb") as handle:
                data = handle.read(MAX_FEED_BYTES + 1)
    except (OSError, ValueError) as error:
        raise FeedError(f"cannot read the feed {source}: {error}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.GzipFile(fileobj=io.BytesIO(data)).read(MAX_FEED_BYTES + 1)
        except (OSError, EOFError) as error:
            raise FeedError(f"the feed {source} is a damaged gzip file: {error}") from None
    if len(data) > MAX_FEED_BYTES:
        raise FeedError(f"the feed {source} is larger than {MAX_FEED_BYTES // 1_000_000} MB; split it")
    return data


def feed_rows(data: bytes, source: str) -> list[dict[str, str]]:
    """The feed's products as rows of field -> text, whatever its format (XML, TSV or CSV)."""
    text = data.decode("utf-8-sig", errors="replace")
    if text.lstrip().startswith("<"):
        return _xml_rows(data, source)
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        rows = [{_field_name(key): (value or "").strip() for key, value in row.items() if key} for row in reader]
    except csv.Error as error:
        raise FeedError(f"the feed {source} is not valid {'TSV' if delimiter == chr(9) else 'CSV'}: {error}") from None
    if reader.fieldnames is None or "id" not in {_field_name(name) for name in reader.fieldnames}:
        raise FeedError(f"the feed {source} has no 'id' column; expected Merchant Center's fields "
                        "(id, title, link, image_link, price, availability ...)")
    return rows


def _field_name(name: str) -> str:
    return name.strip().lower().removeprefix("g:")


def _xml_rows(data: bytes, source: str) -> list[dict[str, str]]:
    """RSS 2.0 ``<item>`` or Atom ``<entry>`` elements, their ``g:`` fields as text."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise FeedError(f"the feed {source} is not well-formed XML: {error}") from None
    rows = []
    for element in root.iter():
        if _local(element.tag) not in ("item", "entry"):
            continue
        row: dict[str, str] = {}
        for child in element:
            name = _local(child.tag)
            if name == "link" and child.get("href"):  # Atom's link
                row.setdefault("link", child.get("href", ""))
                continue
            value = (child.text or "").strip()
            if name == "additional_image_link" and row.get(name):
                row[name] += "," + value
            elif value:
                row.setdefault(name, value)
        rows.append(row)
    return rows


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def load_category_map(path: str | Path | None) -> dict[str, str]:
    """A shop's own category mapping: a JSON object of feed category, product type or Google category id ->
    store category (matched whole or as the start of a category path), lower-cased."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequestError(f"cannot read the category mapping {path}: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                             for k, v in data.items()):
        raise InvalidRequestError(f"the category mapping {path} must be a JSON object of text -> category name, "
                                  'e.g. {"Furniture > Tables > Nightstands": "table", "443": "chair"}')
    return {key.strip().lower(): value.strip() for key, value in data.items()}


def map_category(row: dict[str, str], mapping: dict[str, str]) -> str:
    """The store category of a feed row ("" for none): the shop's mapping first, on google_product_category then
    product_type (whole, or the longest path start), then the category words on each path part, most specific
    first, then on the title."""
    values = [row.get("google_product_category", ""), row.get("product_type", "")]
    for value in values:
        key = value.strip().lower()
        prefixes = [k for k in mapping if key == k or key.startswith(k + " >")]
        if prefixes:
            return mapping[max(prefixes, key=len)]
    for value in [*values, row.get("title", "")]:
        for part in reversed([p for p in re.split(r"\s*>\s*", value.lower()) if p]):
            for category, words in CATEGORY_WORDS.items():
                if any(re.search(rf"\b{word}s?\b", part) for word in words):
                    return category
    return ""


def image_links(row: dict[str, str]) -> tuple[str, ...]:
    """image_link then every additional_image_link (comma-separated in TSV and CSV), each once."""
    links = [row.get("image_link", ""), *re.split(r"\s*,\s*", row.get("additional_image_link", ""))]
    return tuple(dict.fromkeys(link.strip() for link in links if link.strip()))


def read_feed(source: str, category_map: dict[str, str] | None = None) -> Feed:
    """Read a feed (a file or an HTTP(S) URL; TSV, CSV or XML; gzipped or not) into products.

    Raises ``FeedError`` when the feed cannot be read at all; rows that cannot be used are in ``left_out``.
    """
    rows = feed_rows(read_feed_bytes(source), source)
    mapping = category_map or {}
    products, left_out, seen = [], [], set()
    for number, row in enumerate(rows, start=2):
        product_id = row.get("id", "").strip()
        where = product_id or f"row {number}"
        if not product_id:
            left_out.append((where, "no id"))
        elif product_id in seen:
            left_out.append((where, "the id appears more than once; the first row is kept"))
        elif not image_links(row):
            left_out.append((where, "no image_link"))
        elif not (category := map_category(row, mapping)):
            left_out.append((where, "its category maps to none of the store's ("
                                    f"{row.get('google_product_category') or row.get('product_type') or 'none given'!r}"
                                    "); add it to a --category-map file"))
        else:
            products.append(_product(product_id, category, row))
        seen.add(product_id)
    if not products:
        raise FeedError(f"no usable product in the feed {source} ({len(rows)} rows"
                        + (f"; e.g. {left_out[0][0]}: {left_out[0][1]}" if left_out else "") + ")")
    return Feed(source, products, left_out)


def _product(product_id: str, category: str, row: dict[str, str]) -> FeedProduct:
    return FeedProduct(
        product_id=product_id, category=category, name=row.get("title", "") or product_id,
        url=row.get("link", ""), image_urls=image_links(row),
        price=normalise_price(row.get("price", "")), sale_price=normalise_price(row.get("sale_price", "")),
        availability=normalise_availability(row.get("availability", "")), brand=row.get("brand", ""),
        colour_name=row.get("color", ""), product_type=row.get("product_type", ""),
    )
