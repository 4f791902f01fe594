"""A shop's page, from its feed URL, driven in headless Chromium at 1280 px and 390 px: each result shows its price
and stock, the filters narrow the results, and a picked product links to the shop."""

from __future__ import annotations

import re

import pytest

from example_shop.products import MADE_UP, example_shop
from example_shop.server import ShopServer
from tests.test_app import ROOT, start_app
from tests.test_page_browser import AXE, DESKTOP, PHONE, browser  # noqa: F401 (the browser fixture)
from tests.test_page_browser import pytestmark  # noqa: F401 (slow; needs Chromium)

CAPTION = re.compile(r".+ · €([\d,]+\.\d\d)( \(was €[\d,.]+\))? · (in stock|out of stock|pre-order|back-order) · "
                     r"\d+% alike")
PHOTO = ROOT / "reference_gallery" / "chair" / "chair-bs0-armchair" / "front.jpg"


@pytest.fixture(scope="module")
def shop_page(tmp_path_factory):
    """The app started on the example shop's feed URL (its first 40 products), served on 127.0.0.1."""
    root = tmp_path_factory.mktemp("shop-page")
    with ShopServer(example_shop(ROOT / "reference_gallery", count=40)) as server:
        process, url = start_app(root, FURNITURE_FEED=server.url("tsv"), FURNITURE_NOTICE=MADE_UP)
        yield url
        process.terminate()
        process.wait(timeout=20)


def searched(browser, url: str, device: dict):
    page = browser.new_page(**device)
    page.goto(url)
    page.get_by_text("Catalogue: 40 products").wait_for(timeout=180_000)  # indexed from the feed
    page.locator("#query-image input[type=file]").set_input_files(str(PHOTO))
    page.locator("#results img").first.wait_for(timeout=60_000)
    return page


def captions(page, some: bool = True) -> list[re.Match]:
    texts = page.locator("#results .caption-label").all_inner_texts()
    assert texts or not some
    matches = [CAPTION.fullmatch(text) for text in texts]
    assert all(matches), texts
    return matches


def wait_for_summary(page, text: str) -> None:
    page.locator("#summary").get_by_text(text).first.wait_for(timeout=60_000)


@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_results_show_price_and_stock_and_the_filters_narrow_them(shop_page, browser, device):
    page = searched(browser, shop_page, device)
    assert page.get_by_text(MADE_UP).is_visible()
    captions(page)
    assert page.locator("#shop-filters").is_visible()
    assert page.locator("#max-price input").input_value() == "Any price"
    page.locator("#in-stock input").check()
    wait_for_summary(page, "Only products that meet your filters (availability=in_stock)")
    assert {match.group(3) for match in captions(page)} == {"in stock"}
    page.locator("#max-price input").click()
    options = page.get_by_role("option")
    cap = options.nth(options.count() // 2)  # "Any price", then the caps from the lowest
    limit = float(cap.get_attribute("aria-label").removeprefix("Under €").replace(",", ""))
    cap.click()
    wait_for_summary(page, f"price<{limit:g} EUR; availability=in_stock")
    shown = captions(page, some=False)
    assert all(float(match.group(1).replace(",", "")) < limit for match in shown)
    if len(shown) < 8:  # fewer than asked for meet the filter: the page says so
        assert page.locator("#summary").get_by_text(f"Only {len(shown)} products meet the filter").count()
    page.close()


def test_a_picked_product_links_to_the_shop(shop_page, browser):
    page = searched(browser, shop_page, DESKTOP)
    first = page.locator("#results .thumbnail-item").first
    first.scroll_into_view_if_needed()
    first.click()
    link = page.locator("#picked a", has_text="view in shop")
    link.wait_for(timeout=60_000)
    assert link.get_attribute("href").startswith("https://shop.example/products/")
    page.wait_for_timeout(1000)  # the state after the event, not Gradio's dimmed outputs during it
    page.add_script_tag(path=str(AXE))  # the filters and prices have names and contrast, as the rest of the page
    violations = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")
    assert [v["id"] for v in violations if v["impact"] in ("serious", "critical")] == []
    page.close()
