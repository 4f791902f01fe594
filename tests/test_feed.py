"""Reading a shop's product feed: TSV, CSV, RSS and Atom XML, gzipped; rows that cannot be used are reported."""

from __future__ import annotations

import gzip
import json

import pytest

from engine.errors import InvalidRequestError
from engine.feed import FeedError, load_category_map, map_category, read_feed
from engine.shop_fields import format_price, normalise_availability, normalise_price, price_text

HEADER = "id\ttitle\tlink\timage_link\tadditional_image_link\tprice\tsale_price\tavailability\tbrand\tcolor\tproduct_type\tgoogle_product_category"
ROWS = [
    "c1\tOak chair\thttps://s.example/c1\thttps://i.example/c1.jpg\thttps://i.example/c1b.jpg,https://i.example/c1.jpg\t129.00 EUR\t99 EUR\tin stock\tNordhem\toak\tHome > Chairs\tFurniture > Chairs",
    "t1\tSide table\thttps://s.example/t1\thttps://i.example/t1.jpg\t\tEUR 1.299,50\t\tout_of_stock\tHalden\twhite\t\tFurniture > Tables > Nightstands",
    "\tNo id\t\thttps://i.example/x.jpg\t\t1 EUR\t\t\t\t\t\t",
    "c1\tRepeated\t\thttps://i.example/y.jpg\t\t1 EUR\t\t\t\t\t\tFurniture > Chairs",
    "r1\tWool rug\t\thttps://i.example/r1.jpg\t\t50 EUR\t\tin_stock\t\t\t\tHome & Garden > Decor > Rugs",
    "l1\tNo picture lamp\t\t\t\t20 EUR\t\tin_stock\t\t\t\tHome & Garden > Lighting > Lamps",
]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_merchant_tsv_feed_becomes_products_with_their_shop_fields(tmp_path):
    feed = read_feed(write(tmp_path / "feed.tsv", "\n".join([HEADER, *ROWS]) + "\n"))
    chair, table = feed.products
    assert (chair.product_id, chair.category, chair.name, chair.url) == ("c1", "chair", "Oak chair", "https://s.example/c1")
    assert chair.image_urls == ("https://i.example/c1.jpg", "https://i.example/c1b.jpg")  # each once, main first
    assert (chair.price, chair.sale_price, chair.availability, chair.brand, chair.colour_name) == (
        "129.00 EUR", "99.00 EUR", "in_stock", "Nordhem", "oak")
    assert (table.category, table.price, table.availability) == ("table", "1299.50 EUR", "out_of_stock")
    reasons = dict(feed.left_out)
    assert reasons["row 4"] == "no id"
    assert reasons["c1"].startswith("the id appears more than once")
    assert "maps to none" in reasons["r1"] and "--category-map" in reasons["r1"]
    assert reasons["l1"] == "no image_link"


def test_csv_rss_atom_and_gzip_feeds_read_the_same(tmp_path):
    tsv = read_feed(write(tmp_path / "feed.tsv", "\n".join([HEADER, ROWS[0]]))).products
    csv_text = HEADER.replace("\t", ",") + "\n" + ",".join(
        f'"{v}"' for v in ROWS[0].split("\t"))
    assert read_feed(write(tmp_path / "feed.csv", csv_text)).products == tsv
    (tmp_path / "feed.tsv.gz").write_bytes(gzip.compress(("\n".join([HEADER, ROWS[0]])).encode()))
    assert read_feed(str(tmp_path / "feed.tsv.gz")).products == tsv
    rss = """<?xml version="1.0"?><rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel><item>
      <g:id>c1</g:id><title>Oak chair</title><link>https://s.example/c1</link>
      <g:image_link>https://i.example/c1.jpg</g:image_link>
      <g:additional_image_link>https://i.example/c1b.jpg</g:additional_image_link>
      <g:price>129.00 EUR</g:price><g:sale_price>99 EUR</g:sale_price><g:availability>in stock</g:availability>
      <g:brand>Nordhem</g:brand><g:color>oak</g:color><g:product_type>Home &gt; Chairs</g:product_type>
      <g:google_product_category>Furniture &gt; Chairs</g:google_product_category></item></channel></rss>"""
    assert read_feed(write(tmp_path / "feed.xml", rss)).products == tsv
    atom = ('<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0"><entry>'
            '<g:id>c1</g:id><title>Oak chair</title><link href="https://s.example/c1"/>'
            '<g:image_link>https://i.example/c1.jpg</g:image_link><g:price>10 USD</g:price></entry></feed>')
    (product,) = read_feed(write(tmp_path / "atom.xml", atom)).products
    assert (product.url, product.category, product.price) == ("https://s.example/c1", "chair", "10.00 USD")


def test_what_is_not_a_feed_is_refused_with_the_reason(tmp_path):
    with pytest.raises(FeedError, match="cannot read the feed"):
        read_feed(str(tmp_path / "missing.tsv"))
    with pytest.raises(FeedError, match="no 'id' column"):
        read_feed(write(tmp_path / "page.tsv", "hello\tworld\n1\t2\n"))
    with pytest.raises(FeedError, match="not well-formed XML"):
        read_feed(write(tmp_path / "bad.xml", "<rss><channel><item></rss>"))
    with pytest.raises(FeedError, match="no usable product"):
        read_feed(write(tmp_path / "rugs.tsv", "\n".join([HEADER, ROWS[4]])))
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(FeedError, match="damaged gzip"):
        read_feed(str(tmp_path / "broken.gz"))


def test_categories_come_from_the_shops_mapping_then_the_words_of_the_most_specific_part():
    assert map_category({"google_product_category": "Furniture > Sofas > Sofa Beds"}, {}) == "sofa"
    assert map_category({"google_product_category": "Home & Garden > Lighting > Table Lamps"}, {}) == "lamp"
    assert map_category({"google_product_category": "Furniture > Tables > Nightstands"}, {}) == "table"
    assert map_category({"product_type": "Office > Desk Chairs"}, {}) == "chair"
    assert map_category({"google_product_category": "Furniture > Beds & Accessories > Beds & Bed Frames"}, {}) == "bed"
    assert map_category({"google_product_category": "Furniture > Bedside cabinets"}, {}) == ""
    assert map_category({"title": "Velvet armchair"}, {}) == "chair"  # no category at all: the title's words
    mapping = {"furniture > cabinets": "cabinet", "443": "chair"}
    assert map_category({"google_product_category": "Furniture > Cabinets > Wardrobes"}, mapping) == "cabinet"
    assert map_category({"google_product_category": "443"}, mapping) == "chair"


def test_a_category_map_file_is_checked(tmp_path):
    assert load_category_map(write(tmp_path / "m.json", json.dumps({"Rugs": "rug"}))) == {"rugs": "rug"}
    with pytest.raises(InvalidRequestError, match="JSON object of text -> category"):
        load_category_map(write(tmp_path / "bad.json", json.dumps(["rug"])))
    with pytest.raises(InvalidRequestError, match="cannot read the category mapping"):
        load_category_map(tmp_path / "none.json")


def test_prices_and_availability_are_kept_in_one_form_and_shown_as_a_shop_shows_them():
    assert normalise_price("129 EUR") == normalise_price("EUR 129.00") == "129.00 EUR"
    assert normalise_price("1,299.50 USD") == "1299.50 USD"
    assert normalise_price("1.299,50 EUR") == "1299.50 EUR"
    assert normalise_price("cheap") == normalise_price("12.00") == ""
    assert normalise_availability("Out of stock") == "out_of_stock"
    assert normalise_availability("maybe") == ""
    assert format_price("1299.50 EUR") == "€1,299.50"
    assert format_price("99.00 SEK") == "99.00 SEK"
    assert price_text("129.00 EUR", "99.00 EUR") == "€99.00 (was €129.00)"
