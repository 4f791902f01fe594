"""Shared fixtures: a small catalogue drawn by the tests themselves, and its index."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from engine.shop_fields import SHOP_FIELDS

CATEGORIES = ("chair", "lamp", "table")
PRODUCTS_PER_CATEGORY = 4
VIEWS_PER_PRODUCT = 2


def draw_furniture(category: str, colour: tuple[int, int, int], variant: int, size: int = 256) -> Image.Image:
    """A flat drawing of a piece of furniture on white, distinct per category and colour."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    shift = 6 * variant
    s = size / 256
    if category == "chair":
        draw.rectangle([80 * s + shift, 40 * s, 100 * s + shift, 200 * s], fill=colour)  # back
        draw.rectangle([80 * s + shift, 130 * s, 180 * s + shift, 148 * s], fill=colour)  # seat
        draw.rectangle([160 * s + shift, 148 * s, 172 * s + shift, 220 * s], fill=colour)  # front leg
        draw.rectangle([84 * s + shift, 148 * s, 96 * s + shift, 220 * s], fill=colour)  # back leg
    elif category == "lamp":
        draw.polygon([(90 * s + shift, 50 * s), (166 * s + shift, 50 * s), (190 * s + shift, 110 * s), (66 * s + shift, 110 * s)], fill=colour)
        draw.rectangle([124 * s + shift, 110 * s, 132 * s + shift, 210 * s], fill=(60, 60, 60))
        draw.ellipse([96 * s + shift, 204 * s, 160 * s + shift, 222 * s], fill=(60, 60, 60))
    else:
        draw.rectangle([40 * s, 100 * s + shift, 216 * s, 118 * s + shift], fill=colour)  # top
        for x in (50, 196):
            draw.rectangle([x * s, 118 * s + shift, (x + 10) * s, 210 * s], fill=colour)
    return image


def product_colour(category_index: int, product: int) -> tuple[int, int, int]:
    rng = random.Random(category_index * 100 + product)
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def make_catalogue(root: Path) -> Path:
    """Write a catalogue in the <category>/<product_id>/<image> layout, with a manifest."""
    lines = ["product_id,name,category,url,creator,license,source"]
    for ci, category in enumerate(CATEGORIES):
        for product in range(PRODUCTS_PER_CATEGORY):
            product_id = f"{category}-{product}"
            folder = root / category / product_id
            folder.mkdir(parents=True)
            for view in range(VIEWS_PER_PRODUCT):
                draw_furniture(category, product_colour(ci, product), view).save(folder / f"view{view}.jpg", quality=92)
            lines.append(f"{product_id},Test {category} {product},{category},,Tests,CC0-1.0,drawn by the tests")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    return make_catalogue(tmp_path / "catalogue")


@pytest.fixture(scope="session")
def built_store(tmp_path_factory) -> tuple[Path, Path]:
    """A catalogue and its index, built once per test session (read-only for tests)."""
    from engine.indexing import index_catalogue

    root = tmp_path_factory.mktemp("shared")
    catalogue = make_catalogue(root / "catalogue")
    store = root / "store"
    index_catalogue(catalogue, store)
    return catalogue, store


@pytest.fixture(scope="session")
def search_engine(built_store):
    from engine.search import SearchEngine

    catalogue, store = built_store
    return SearchEngine.open(store)


def as_older_format(meta: dict, version: int) -> dict:
    """A ``meta.json`` of today's format as an older version wrote it: no shop fields or feed (format 3), no
    checksums or row digests either (format 2), and no colours either (format 1); up to format 2 the
    catalogue called "gallery" and its images "items"."""
    meta["format_version"] = version
    del meta["feed"]
    for image in meta["images"]:
        for name in SHOP_FIELDS:
            del image[name]
    if version == 3:
        return meta
    del meta["checksums"]
    meta["gallery"], meta["items"] = meta.pop("catalogue"), meta.pop("images")
    for image in meta["items"]:
        del image["vector_digest"]
        if version == 1:
            del image["colours"]
    return meta


@pytest.fixture(scope="session")
def shop_store(tmp_path_factory) -> Path:
    """The example shop's first 12 products indexed from its feed, served on 127.0.0.1 (read-only for tests)."""
    from engine.feed_indexing import index_feed
    from example_shop.products import example_shop
    from example_shop.server import ShopServer

    store = tmp_path_factory.mktemp("shop") / "store"
    with ShopServer(example_shop(Path(__file__).resolve().parent.parent / "reference_gallery", count=12)) as server:
        index_feed(server.url("tsv"), store)
    return store
