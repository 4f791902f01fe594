"""Build or update a store from a shop's product feed: read the feed (``engine.feed``), fetch its images into
the store's image cache (``engine.feed_images``), and index them as products with their feed fields
(``engine.indexing``).

A re-run with a changed feed is a sync like a catalogue folder's: images unchanged since the last run (the
server says "not modified", or the same bytes come back) keep their vectors, changed fields are updated,
products gone from the feed are removed, and the new version replaces the old one atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.catalogue import Catalogue, CatalogueImage
from engine.feed import FeedProduct, read_feed
from engine.feed_images import FetchProgress, FetchSettings, fetch_images
from engine.indexing import IndexReport, Progress, index_scanned

# The store's own folder of the feed's images (one file per image URL, and their HTTP validators).
IMAGE_CACHE = "feed-images"


@dataclass
class FeedReport:
    """What indexing a feed did: the feed's products, the images fetched, and the index built."""

    index: IndexReport
    products: int  # usable products in the feed
    left_out: list[tuple[str, str]] = field(default_factory=list)  # feed rows not indexed: (id or row, why)
    failed_images: list[tuple[str, str]] = field(default_factory=list)  # (image URL, why)
    without_images: list[str] = field(default_factory=list)  # products left out: none of their images could be used
    downloaded: int = 0  # images fetched in this run
    unchanged: int = 0  # images the cache already had, unchanged on the server
    fetch_seconds: float = 0.0


def feed_catalogue(products: list[FeedProduct], fetched: dict, cache: Path) -> Catalogue:
    """The feed's products as a catalogue of the cached images: one catalogue image per image fetched."""
    images = [
        CatalogueImage(product_id=product.product_id, category=product.category, path=fetched[url].file,
                       name=product.name, url=product.url, source="product feed", source_url=url,
                       price=product.price, sale_price=product.sale_price, availability=product.availability,
                       brand=product.brand, colour_name=product.colour_name, product_type=product.product_type)
        for product in products for url in product.image_urls if fetched[url].file
    ]
    return Catalogue(root=cache, images=images, skipped=[])


def index_feed(
    source: str,
    store: str | Path,
    category_map: dict[str, str] | None = None,
    backbone: str | None = None,
    fetch_settings: FetchSettings = FetchSettings(),
    fetch_progress: FetchProgress | None = None,
    progress: Progress | None = None,
) -> FeedReport:
    """Index (or re-sync) the products of the feed ``source`` (a file or an HTTP(S) URL) into ``store``.

    Rows that cannot be used, images that fail and products none of whose images can be used are listed in the
    report and never stop the run. Raises ``FeedError`` when the feed cannot be read at all, and
    ``CatalogueError`` when no image at all could be indexed.
    """
    feed = read_feed(source, category_map)
    cache = Path(store) / IMAGE_CACHE
    started = time.perf_counter()
    urls = [url for product in feed.products for url in product.image_urls]
    fetched = fetch_images(urls, cache, fetch_settings, fetch_progress)
    fetch_seconds = time.perf_counter() - started
    catalogue = feed_catalogue(feed.products, fetched, cache)
    report = index_scanned(catalogue, store, backbone, progress, feed=source)
    by_file = {image.path: image.source_url for image in catalogue.images}
    # Images that fetched but would not decode are named by their URL, as the shop knows them.
    report.skipped = [(by_file.get(path, path), why) for path, why in report.skipped]
    indexed = {image.product_id for image in catalogue.images} - _undecoded_products(catalogue, report)
    return FeedReport(
        index=report, products=len(feed.products), left_out=feed.left_out,
        failed_images=[(url, outcome.error) for url, outcome in fetched.items() if not outcome.file],
        without_images=[product.product_id for product in feed.products if product.product_id not in indexed],
        downloaded=sum(outcome.downloaded for outcome in fetched.values()),
        unchanged=sum(bool(outcome.file) and not outcome.downloaded for outcome in fetched.values()),
        fetch_seconds=fetch_seconds,
    )


def _undecoded_products(catalogue: Catalogue, report: IndexReport) -> set[str]:
    """Products every fetched image of which failed to decode when embedded."""
    failed = {url for url, _ in report.skipped}
    images: dict[str, list[str]] = {}
    for image in catalogue.images:
        images.setdefault(image.product_id, []).append(image.source_url)
    return {product for product, urls in images.items() if all(url in failed for url in urls)}

