"""What the page shows, made from engine records: sentences, captions, pictures, credits."""

from __future__ import annotations

from types import SimpleNamespace

from PIL import Image

import page
from engine.catalogue import CatalogueImage, scan_catalogue
from engine.responses import SearchResponse, SearchResult

ROOT = page.WEB.parent


def response(probabilities, close_match=True, colour="", searched=("chair",)):
    result = SearchResult("p1", "Oak chair", "chair", 0.79, "chair/p1.jpg", 0, colour_match=0.6)
    category = max(probabilities, key=probabilities.get)
    return SearchResponse(category, probabilities, list(searched), [result], close_match, [], colour)


def test_the_summary_says_one_thing_a_sentence_without_jargon():
    sure = page.summary(response({"chair": 0.9, "lamp": 0.1}))
    assert sure == "**Results for your photo.** It looks like a **chair** (90% sure)."
    unsure = page.summary(response({"lamp": 0.43, "sofa": 0.41, "chair": 0.16}, close_match=False), "auto", "the bed")
    assert unsure.split("\n\n") == [
        "**Results for the bed.** It looks like a **lamp** (43% sure).",
        "It could also be a sofa (41%), so both were searched.",
        "**No close match in this catalogue.** These are the nearest products, but they do not look alike.",
    ]
    assert "Every category was searched, as asked." in page.summary(response({"chair": 1.0}), "all")
    assert "Only chair products were searched, as asked." in page.summary(response({"chair": 1.0}), "chair")
    for jargon in ("auto", "searched chair,", "unsure between"):
        assert jargon not in unsure


def test_results_out_of_likeness_order_are_explained():
    ordered = response({"sofa": 0.9, "bed": 0.1})
    ordered.results = [SearchResult("a", "Couch", "sofa", 0.60, "a.jpg", 0), SearchResult("b", "Bed", "bed", 0.65, "b.jpg", 1)]
    assert "Products of the likelier kind come first" in page.summary(ordered)
    ordered.results.reverse()
    assert "likelier kind" not in page.summary(ordered)


def test_captions_name_the_product_and_say_how_alike_in_percent():
    result = response({"chair": 1.0}).results[0]
    assert page.caption(result) == "Oak chair · 79% alike"
    assert page.caption(result, "grey") == "Oak chair · 79% alike · 60% grey"
    colour = page.summary(response({"chair": 1.0}, colour="grey"))
    assert "ranked by look and by how much of each product is grey" in colour


def test_pieces_are_named_by_category_numbered_when_several():
    assert page.region_labels(["bed", "chair", "lamp", "chair"]) == ["bed", "chair", "lamp", "chair 2"]
    assert [choice for _, choice in page.category_choices(["bed", "chair"])] == ["auto", "all", "bed", "chair"]
    assert page.category_choices([])[0] == ("Guess from the photo", "auto")


def test_the_crop_is_the_box_between_two_taps_and_is_drawn_so():
    assert page.crop_box([[10, 20]]) is None
    assert page.crop_box([[90, 20], [10, 80]]) == (10, 20, 90, 80)
    photo = Image.new("RGB", (100, 100), "white")
    drawn = page.crop_preview(photo, [[90, 20], [10, 80]])
    assert drawn.getpixel((50, 50)) == (255, 255, 255)  # inside: as it is
    assert drawn.getpixel((50, 95))[0] < 255  # outside: dimmed


def test_product_details_link_the_product_page_credit_the_creator_and_explain_the_picture():
    shop = CatalogueImage("oak-chair", "chair", "chair/oak.jpg", "Oak chair", url="https://shop.example/oak-chair",
                          creator="Doug C", license="CC0")
    assert page.product_details(shop, explained=False) == (
        "Picked: **Oak chair** (chair) · [product page ↗](https://shop.example/oak-chair) · by Doug C · CC0. "
        "The results are now more like it.")
    odd = CatalogueImage("lamp", "lamp", "lamp/lamp.jpg", "Lamp", url="javascript:alert(1)",
                         source_url="javascript:alert(2)")
    details = page.product_details(odd, explained=True)
    assert "javascript" not in details and "Why it matched your photo" in details


def test_a_shops_product_shows_its_price_stock_brand_and_a_link_to_buy_it():
    item = CatalogueImage("oak-chair", "chair", "a.jpg", "Oak chair", url="https://shop.example/p/oak",
                          price="129.00 EUR", sale_price="99.00 EUR", availability="in_stock", brand="Nordhem")
    assert page.product_details(item, explained=False).startswith(
        "Picked: **Oak chair** (chair) · €99.00 (was €129.00) · in stock · Nordhem · "
        "[view in shop ↗](https://shop.example/p/oak)")
    result = SearchResult("oak-chair", "Oak chair", "chair", 0.79, "a.jpg", 0, price="1299.00 SEK",
                          availability="out_of_stock")
    assert page.caption(result) == "Oak chair · 1,299.00 SEK · out of stock · 79% alike"


def test_the_page_filters_are_those_the_shop_fields_allow_and_say_what_they_ask():
    images = [CatalogueImage("a", "chair", "a.jpg", "A", price="10.00 EUR", brand="Halden"),
              CatalogueImage("b", "chair", "b.jpg", "B", price="12.00 USD", sale_price="9.00 EUR", brand="birch"),
              CatalogueImage("c", "lamp", "c.jpg", "C")]
    assert page.shop_filters(images) == page.ShopFilters("EUR", (), False, ("birch", "Halden"))
    assert not page.shop_filters(images[2:]).any
    priced = [CatalogueImage(str(n), "chair", "a.jpg", "A", price=f"{p}.00 EUR", availability="in_stock")
              for n, p in enumerate((19, 240, 680))]
    filters = page.shop_filters(priced)
    assert filters == page.ShopFilters("EUR", (25, 50, 100, 200, 300, 500), True, ())
    assert page.price_choices(filters)[:3] == [("Any price", 0), ("Under €25", 25), ("Under €50", 50)]
    assert page.filter_where(300, True, "Halden", "EUR") == "price<300 EUR; availability=in_stock; brand=Halden"
    assert page.filter_where(None, False, page.ANY_BRAND) == ""
    assert page.filter_where(0, False, None) == ""  # an emptied price box is no cap


def test_the_bundled_catalogue_links_each_render_to_its_models_source_and_is_credited():
    images = scan_catalogue(ROOT / "reference_gallery").images
    assert all(image.source_url.startswith(("https://", "http://")) for image in images)
    blend_swap = next(image for image in images if image.product_id == "chair-bs0-armchair")
    assert "[image source ↗](http://www.blendswap.com)" in page.product_details(blend_swap, explained=False)
    credits = page.credits_markdown(ROOT / "reference_gallery")
    assert credits.startswith(f"Product images of {len({i.product_id for i in images})} products:")
    assert page.credits_markdown(ROOT / "no-such-folder").startswith("The catalogue cannot be listed")
