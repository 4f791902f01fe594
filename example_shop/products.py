"""A made-up shop for the bundled catalogue: a product feed in Google Merchant Center's fields, with plausible
titles, prices, stock, brands and colours for each bundled product. The prices, stock and brands are invented
(the feed says so in each product's description); the images are the bundled catalogue's renders.

Beyond the bundled products (``count`` larger than the catalogue), further products are editions of them whose
images are the same renders mirrored and framed differently, so that every product has images of its own.
"""

from __future__ import annotations

import csv
import io
import random
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from engine.catalogue import scan_catalogue
from engine.colours import colour_name, dominant_colours, hex_to_rgb
from engine.images import load_image

SHOP = "https://shop.example"  # a reserved domain: the product links lead nowhere
BRANDS = ("Nordhem", "Casa Verde", "Atelier Loom", "Birch & Co", "Studio Tova", "Halden", "Maison Orme")
# Each category's price range in euros, and its Google product category.
PRICES = {"chair": (39, 449), "table": (59, 999), "sofa": (299, 2499), "bed": (179, 1599), "lamp": (15, 329)}
GOOGLE_CATEGORY = {"chair": "Furniture > Chairs", "table": "Furniture > Tables", "sofa": "Furniture > Sofas",
                   "bed": "Furniture > Beds & Accessories > Beds & Bed Frames",
                   "lamp": "Home & Garden > Lighting > Lamps"}
EDITIONS = ("", "Classic", "Studio", "Compact", "Grand", "Loft", "Nordic", "Heritage", "Urban", "Coast", "Alpine",
            "Atelier", "Terra", "Velvet", "Linea", "Aurora")
FIELDS = ("id", "title", "description", "link", "image_link", "additional_image_link", "price", "sale_price",
          "availability", "brand", "color", "product_type", "google_product_category")
MADE_UP = "Example shop: prices, stock and brand are made up for this demo."


@dataclass(frozen=True)
class ShopImage:
    """One image the shop serves: a bundled render, as it is (edition 0) or mirrored and framed (edition n)."""

    source: Path
    edition: int


@dataclass
class ExampleShop:
    """The feed's rows and the images behind its URLs (relative to the server's address)."""

    rows: list[dict[str, str]]
    images: dict[str, ShopImage]  # URL path ("/images/...") -> image


def example_shop(catalogue: Path, count: int | None = None, seed: int = 0) -> ExampleShop:
    """The made-up shop: ``count`` products (default: one per bundled product), their rows and images."""
    products: dict[str, list] = {}
    for image in scan_catalogue(catalogue).images:
        products.setdefault(image.product_id, []).append(image)
    bases = _interleaved(list(products.values()))
    count = count or len(bases)
    rng = random.Random(seed)
    colours = {}
    rows, images = [], {}
    for number in range(count):
        base = bases[number % len(bases)]
        edition = number // len(bases)
        first = base[0]
        if first.product_id not in colours:
            colours[first.product_id] = colour_name(hex_to_rgb(dominant_colours(load_image(catalogue / first.path))[0].hex))
        product_id = first.product_id if edition == 0 else f"{first.product_id}-e{edition}"
        # An edition has one image (the product's first render, framed its own way); the bundled product all.
        shown = base if edition == 0 else base[:1]
        paths = [f"/images/{product_id}/{n}.jpg" for n in range(len(shown))]
        images.update({path: ShopImage(catalogue / image.path, edition) for path, image in zip(paths, shown)})
        rows.append(_row(product_id, first, edition, paths, colours[first.product_id], rng))
    return ExampleShop(rows, images)


def _interleaved(products: list[list]) -> list[list]:
    """The products taken a category at a time in turn, so that the first few span every category."""
    by_category: dict[str, list] = {}
    for images in products:
        by_category.setdefault(images[0].category, []).append(images)
    queues = list(by_category.values())
    return [queue[n] for n in range(max(map(len, queues))) for queue in queues if n < len(queue)]


def _row(product_id: str, first, edition: int, paths: list[str], colour: str, rng: random.Random) -> dict[str, str]:
    low, high = PRICES[first.category]
    price = round(rng.uniform(low, high)) - 0.01
    on_sale = rng.random() < 0.15
    availability = rng.choices(("in_stock", "out_of_stock", "preorder", "backorder"), (80, 12, 5, 3))[0]
    name = f"{first.name} {EDITIONS[edition % len(EDITIONS)]}".strip() if edition else first.name
    return {
        "id": product_id, "title": name, "description": MADE_UP,
        "link": f"{SHOP}/products/{product_id}", "image_link": paths[0], "additional_image_link": ",".join(paths[1:]),
        "price": f"{price:.2f} EUR", "sale_price": f"{price * 0.8:.2f} EUR" if on_sale else "",
        "availability": availability, "brand": rng.choice(BRANDS), "color": colour,
        "product_type": f"Home > {first.category.capitalize()}s", "google_product_category": GOOGLE_CATEGORY[first.category],
    }


def feed_text(rows: list[dict[str, str]], base_url: str, kind: str = "tsv") -> bytes:
    """The feed as Merchant Center takes it: "tsv", "csv" or "xml" (RSS 2.0 with the g: namespace), its image
    links made absolute with ``base_url``."""
    rows = [{**row, "image_link": base_url + row["image_link"],
             "additional_image_link": ",".join(base_url + p for p in row["additional_image_link"].split(",") if p)}
            for row in rows]
    if kind == "xml":
        return _rss(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FIELDS, delimiter="\t" if kind == "tsv" else ",", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _rss(rows: list[dict[str, str]]) -> bytes:
    g = "http://base.google.com/ns/1.0"
    ElementTree.register_namespace("g", g)
    rss = ElementTree.Element("rss", version="2.0")
    channel = ElementTree.SubElement(rss, "channel")
    ElementTree.SubElement(channel, "title").text = "Example shop (made-up prices)"
    for row in rows:
        item = ElementTree.SubElement(channel, "item")
        for name in FIELDS:
            if name == "additional_image_link":
                for link in filter(None, row[name].split(",")):
                    ElementTree.SubElement(item, f"{{{g}}}{name}").text = link
            elif row[name]:
                tag = name if name in ("title", "link", "description") else f"{{{g}}}{name}"
                ElementTree.SubElement(item, tag).text = row[name]
    return ElementTree.tostring(rss, xml_declaration=True, encoding="utf-8")
