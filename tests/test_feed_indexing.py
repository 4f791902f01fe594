"""From a shop's feed URL to a store: the example shop's server on 127.0.0.1 with every fault mixed in; a re-run
fetches and embeds only what changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.feed_images import FetchSettings
from engine.feed_indexing import IMAGE_CACHE, index_feed
from engine.search import SearchEngine
from example_shop.products import example_shop
from example_shop.server import FAULT_PERIOD, FAULTS, ShopServer

ROOT = Path(__file__).resolve().parent.parent
# Quick retries, and a timeout well under the server's stalled answers.
QUICK = FetchSettings(timeout_s=1.0, backoff_s=0.05)


@pytest.fixture()
def shop():
    """Twelve products of the bundled catalogue, three images each; products 1-11 hold one fault each."""
    return example_shop(ROOT / "reference_gallery", count=12)


def product_with(fault: str, shop) -> dict:
    number = next(n for n, name in FAULTS.items() if name == fault)
    assert number < len(shop.rows) < FAULT_PERIOD
    return shop.rows[number]


def test_every_fault_is_listed_with_its_reason_and_the_good_images_are_indexed(shop, tmp_path):
    with ShopServer(shop, faults=True) as server:
        report = index_feed(server.url("tsv"), tmp_path / "store", fetch_settings=QUICK)
    failed = {url.removeprefix(server.base_url): why for url, why in report.failed_images}
    first = {fault: product_with(fault, shop)["image_link"] for fault in FAULTS.values()}
    assert failed[first["404"]] == "HTTP 404 Not Found"
    assert failed[first["stalled"]].startswith("could not connect or read") and "after 3 tries" in failed[first["stalled"]]
    assert failed[first["html"]] == "served as text/html, not an image"
    assert failed[first["truncated"]].startswith("truncated")
    assert failed[first["huge"]].startswith("too large (60 MB")
    assert failed[first["garbage"]].startswith("not a decodable image")
    for fine in ("slow", "redirect", "flaky", "shared"):  # answered late, moved, busy once, listed twice: all fetched
        assert first[fine] not in failed
    missing = product_with("all-missing", shop)["id"]
    assert report.without_images == [missing]
    assert len(failed) == 6 + 3  # one image of each failing product, all three of the missing one
    engine = SearchEngine.open(tmp_path / "store")
    stored = {image.product_id: image for image in engine.stored.images}
    assert set(stored) == {row["id"] for row in shop.rows} - {missing}
    row = shop.rows[0]
    item = stored[row["id"]]
    assert (item.name, item.url, item.brand, item.colour_name) == (row["title"], row["link"], row["brand"], row["color"])
    assert item.price == row["price"] and item.availability == row["availability"]
    assert engine.stored.feed == server.url("tsv")


def test_a_rerun_fetches_and_embeds_only_what_changed_and_drops_what_left(shop, tmp_path):
    store = tmp_path / "store"
    with ShopServer(shop) as server:
        first = index_feed(server.url("tsv"), store, fetch_settings=QUICK)
        assert (first.downloaded, first.unchanged, first.index.embedded) == (36, 0, 36)
        again = index_feed(server.url("tsv"), store, fetch_settings=QUICK)
        assert (again.downloaded, again.unchanged, again.index.embedded) == (0, 36, 0)
        assert server.state.not_modified == 36  # asked "changed since?", answered 304
        changed = server.change(0.25, seed=3)  # 3 products: new prices; 2 of them a new first image too
        gone = shop.rows.pop()
        assert gone["id"] not in changed
        third = index_feed(server.url("xml"), store, fetch_settings=QUICK)
    # Removed: the gone product's three images and the two changed images' old versions.
    assert (third.downloaded, third.index.embedded, third.index.removed) == (2, 2, 5)
    stored = {image.product_id: image for image in SearchEngine.open(store).stored.images}
    assert gone["id"] not in stored
    assert all(stored[row["id"]].price == row["price"] for row in shop.rows)
    cached = json.loads((store / IMAGE_CACHE / "cache.json").read_text())
    assert len(cached) == 33 and len(list((store / IMAGE_CACHE).glob("*.jpg"))) == 33  # the gone product's too


def test_the_cli_indexes_a_feed_and_filters_by_price_and_stock(shop, tmp_path, capsys):
    with ShopServer(shop, faults=True) as server:
        assert main(["index", "--feed", server.url("tsv.gz"), "--store", str(tmp_path / "store")]) == 0
    printed = capsys.readouterr().out
    assert "feed: 12 products" in printed and "HTTP 404 Not Found" in printed
    assert "products left out, none of their images could be used" in printed
    photo = ROOT / "reference_gallery" / "chair" / "chair-bs0-armchair" / "front.jpg"
    assert main(["search", "--store", str(tmp_path / "store"), "--k", "20", "--where", "price<400",
                 "--where", "availability=in_stock", str(photo)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["where"] == "price<400; availability=in_stock" and line["results"]
    paid = [float((r.get("sale_price") or r["price"]).split()[0]) for r in line["results"]]
    assert max(paid) < 400 and {r["availability"] for r in line["results"]} == {"in_stock"}
    assert main(["search", "--store", str(tmp_path / "store"), "--where", "price=cheap", str(photo)]) == 2
    assert "compare prices with <" in capsys.readouterr().err


@pytest.mark.slow
def test_the_feed_benchmark_measures_indexing_a_rerun_faults_and_filtered_search(tmp_path):
    from benchmarks import feed

    feed.main(["--products", "12", "--fault-products", "12", "--output", str(tmp_path / "feed")])
    results = json.loads((tmp_path / "feed.json").read_text())
    first, again, faulty = (results["runs"][name] for name in ("first", "again", "faults"))
    assert (first["downloaded"], first["embedded"]) == (36, 36)
    assert again["unchanged"] == 36 - again["downloaded"] and again["embedded"] == again["downloaded"] >= 1
    assert faulty["failed"] == 9 and faulty["peak_mb"] > 100
    assert all(row["compared_recall"] == 1.0 for row in results["filtered_search"])
    assert "| faults, 2 s timeout | 12 |" in (tmp_path / "feed.md").read_text()
