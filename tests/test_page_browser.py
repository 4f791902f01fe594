"""What a shopper sees, driven in headless Chromium at 1280 px and at 390 px with touch: every control does what it
says, results are readable on a phone, and the page has names for what it shows (axe-core finds nothing serious)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import draw_furniture
from tests.test_app import CHROMIUM, ROOT, start_app, wait_until_indexed

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test does)")]
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True, "device_scale_factor": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from gradio_client import Client

    root = tmp_path_factory.mktemp("page")
    process, url = start_app(root)
    scene = Image.new("RGB", (1200, 600), (235, 230, 220))
    scene.paste(draw_furniture("chair", (30, 90, 200), 0, size=560), (20, 20))
    scene.paste(draw_furniture("lamp", (200, 40, 40), 1, size=560), (620, 20))
    scene.save(root / "scene.jpg", quality=92)
    wait_until_indexed(Client(url, verbose=False, download_files=False), root / "scene.jpg")
    yield url, root
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def searched(browser, url: str, photo: Path, device: dict):
    """A page on which ``photo`` was uploaded and its results (and pieces) shown."""
    page = browser.new_page(**device)
    page.goto(url)
    page.locator("#query-image input[type=file]").set_input_files(str(photo))
    page.locator("#results img").first.wait_for(timeout=60_000)
    # The pieces found come next (this scene has two), replacing the results with the best piece's.
    page.locator("#regions img").first.wait_for(timeout=60_000)
    page.get_by_text("Results for the ").first.wait_for(timeout=60_000)
    return page


def tap_on_picture(page, selector: str, x: int, y: int, touch: bool) -> None:
    """Tap (or click) the picture at pixel (x, y) of the image file it shows."""
    img = page.locator(f"{selector} img").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    scale = min(box["width"] / natural[0], box["height"] / natural[1])  # object-fit: contain
    left = box["x"] + (box["width"] - natural[0] * scale) / 2
    top = box["y"] + (box["height"] - natural[1] * scale) / 2
    point = (left + x * scale, top + y * scale)
    if touch:
        page.touchscreen.tap(*point)
    else:
        page.mouse.click(*point)


@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_crop_searched_is_the_crop_shown(server, browser, device):
    url, root = server
    page = searched(browser, url, root / "scene.jpg", device)
    page.get_by_text("Crop by hand").click()
    page.locator("#crop-picture img").first.wait_for(timeout=30_000)
    first = page.locator("#crop-picture img").first.get_attribute("src")
    # The lamp is the right half of the photo, which the page shows at 1024 x 512.
    tap_on_picture(page, "#crop-picture", 1000, 20, "has_touch" in device)
    page.wait_for_function(f"document.querySelector('#crop-picture img').src !== {json.dumps(first)}")
    second = page.locator("#crop-picture img").first.get_attribute("src")
    tap_on_picture(page, "#crop-picture", 530, 490, "has_touch" in device)
    page.wait_for_function(f"document.querySelector('#crop-picture img').src !== {json.dumps(second)}")
    page.get_by_role("button", name="Search the crop").click()
    page.get_by_text("Results for your crop.").wait_for(timeout=60_000)
    assert "It looks like a lamp" in page.locator("#summary").inner_text()
    page.close()


def test_picking_a_result_keeps_the_shoppers_photo_and_explains_the_match(server, browser):
    url, root = server
    page = searched(browser, url, root / "scene.jpg", DESKTOP)
    photo = page.locator("#regions img").first.get_attribute("src")  # a scene: the photo with its pieces drawn
    page.locator("#results .thumbnail-item").first.click()
    page.locator("#why img").first.wait_for(timeout=60_000)
    assert page.locator("#regions img").first.get_attribute("src") == photo
    picked = page.locator("#picked").inner_text()
    assert picked.startswith("Picked:") and "Why it matched your photo:" in picked
    assert page.locator("#summary").inner_text().startswith("Results for the picked ")
    # The results stay right below the summary, above the picked product.
    assert page.locator("#results").bounding_box()["y"] < page.locator("#picked").bounding_box()["y"]
    looks = page.locator("#results .thumbnail-item").evaluate_all(
        "bs => bs.map(b => { const s = getComputedStyle(b); return s.borderColor + s.boxShadow; })")
    assert len(set(looks)) == 1  # no tile still marked as the one picked
    page.close()


def test_colour_chips_work_by_keyboard_and_say_why_the_order(server, browser):
    url, root = server
    page = searched(browser, url, root / "scene.jpg", DESKTOP)
    chips = page.locator("#colour-chips input[type=radio]")
    chips.first.wait_for(state="attached", timeout=30_000)
    chips.first.focus()
    page.keyboard.press("Tab")  # each chip is reached with the tab key and picked with the space bar
    page.keyboard.press("Space")
    colour = page.locator("#colour-chips input:checked").get_attribute("value")
    assert colour != "Any colour"
    page.get_by_text(f"so the same look in {colour} comes first").wait_for(timeout=30_000)
    captions = page.locator("#results .caption-label").all_inner_texts()
    assert captions and all(re.fullmatch(rf".+ · \d+% alike · \d+% {colour}", text) for text in captions)
    page.close()


@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_scenes_pieces_are_drawn_on_the_photo_in_its_place_and_name_what_their_results_are_for(server, browser,
                                                                                                  device):
    url, root = server
    page = browser.new_page(**device)
    page.goto(url)
    photo = page.locator("#query-image")
    before = photo.bounding_box()
    page.locator("#query-image input[type=file]").set_input_files(str(root / "scene.jpg"))
    # One round trip: the first results shown are already the main piece's, with its box (none replaced later).
    page.locator("#results .thumbnail-item").first.wait_for(timeout=60_000)
    assert page.locator("#summary").inner_text().startswith("Results for the ")
    marked = page.locator("#regions img").first
    marked.wait_for(timeout=10_000)
    page.locator("#another-photo").wait_for(timeout=60_000)
    assert not photo.is_visible()  # one photo on the page: the shopper's, with its pieces drawn
    assert abs(page.locator("#regions").bounding_box()["y"] - before["y"]) < 5
    pieces = page.locator("#region-choice label").all_inner_texts()
    assert pieces[-1] == "Whole photo" and len(pieces) >= 3
    summary = page.locator("#summary").inner_text()
    first = pieces[0]
    assert summary.startswith(f"Results for the {first}.") and f"like a {first.split()[0]}" in summary
    if device is PHONE:  # the photo with its pieces and the first results on the first screen
        page.evaluate("window.scrollTo(0, 0)")
        assert page.locator("#results .thumbnail-item").first.bounding_box()["y"] + 60 < 844
    page.locator("#another-photo").click()
    photo.wait_for(timeout=10_000)
    assert not page.locator("#regions").is_visible() and not page.locator("#region-choice").is_visible()
    page.close()


def test_results_are_readable_on_a_phone(server, browser):
    url, root = server
    page = searched(browser, url, root / "scene.jpg", PHONE)
    grid = page.locator("#results .grid-wrap")
    assert grid.evaluate("g => g.scrollHeight <= g.clientHeight + 1")  # no box scrolling inside the page
    items = page.locator("#results .thumbnail-item")
    assert items.count() == 8
    for i in range(items.count()):
        image, caption = items.nth(i).locator("img").bounding_box(), items.nth(i).locator(".caption-label").bounding_box()
        assert caption["y"] >= image["y"] + image["height"] - 1  # the caption under the picture, not over it
        assert re.fullmatch(r"Test \w+ \d · \d+% alike", items.nth(i).locator(".caption-label").inner_text())
    # The photo and the first results on the first screen; the short explanation shown.
    page.evaluate("window.scrollTo(0, 0)")
    assert items.first.bounding_box()["y"] + 60 < 844
    assert page.get_by_text("find the most similar products").is_visible()
    assert not page.locator("#shop-filters").is_visible()  # no prices, stock or brands: no filters offered
    page.close()


def test_everything_shown_has_a_name_and_axe_finds_nothing_serious(server, browser, tmp_path):
    url, root = server
    page = searched(browser, url, root / "scene.jpg", DESKTOP)
    assert page.locator("#regions img").first.get_attribute("alt") == "Your photo with the furniture found boxed and named"
    labels = page.locator("#results .thumbnail-item").evaluate_all("bs => bs.map(b => b.getAttribute('aria-label'))")
    captions = page.locator("#results .caption-label").all_inner_texts()
    assert labels == captions  # a screen reader hears the product, not "Thumbnail 2 of 8"
    assert all(page.locator("#examples button").evaluate_all("bs => bs.map(b => !!b.getAttribute('aria-label'))"))
    assert "Use via API" not in page.locator("footer").inner_text()
    assert page.evaluate("fetch('/favicon.ico').then(r => r.headers.get('content-type'))") == "image/svg+xml"
    assert "Drop Image Here" not in page.content()
    page.add_script_tag(path=str(AXE))
    run = "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)"
    for state in ("after a search", "a result picked"):
        if state == "a result picked":
            page.locator("#results .thumbnail-item").first.click()
            page.locator("#why img").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)  # Gradio dims the outputs while an event runs: the state after it
            assert page.locator("#why img").first.get_attribute("alt")
        serious = [(v["id"], v["impact"], [node["target"] for node in v["nodes"]]) for v in page.evaluate(run)
                   if v["impact"] in ("serious", "critical")]
        assert serious == [], (state, serious)
    page.close()


def test_an_example_photo_is_searched_when_picked(server, browser):
    # The examples are files Gradio copied into this instance's uploads when the page was built: the request
    # guard lets them through, as it does the shopper's own uploads.
    url, _ = server
    page = browser.new_page(**DESKTOP)
    page.goto(url)
    page.locator("#examples button").first.click()
    page.locator("#results img").first.wait_for(timeout=60_000)
    page.get_by_text("Results for ").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)  # the photo as it is, or with its pieces drawn in its place: named either way
    shown = page.locator("#query-image img:visible, #regions img:visible")
    assert shown.count() == 1 and shown.get_attribute("alt").startswith("Your photo")
    page.close()


def test_a_large_photo_is_sent_upright_on_white_at_the_size_the_search_reads(server, browser, tmp_path):
    # As a phone stores a portrait photo: sideways, with EXIF orientation 6, and several MB of sensor noise.
    import numpy as np
    from urllib.parse import unquote

    url, root = server
    upright = np.asarray(Image.open(root / "scene.jpg").resize((2000, 4000)), dtype=np.int16)
    noisy = np.clip(upright + np.random.default_rng(0).integers(-20, 21, upright.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    large = tmp_path / "phone.jpg"
    Image.fromarray(noisy).transpose(Image.Transpose.ROTATE_90).save(large, quality=92, exif=exif.tobytes())
    assert large.stat().st_size > 1_000_000
    # A shop's cut-out: a PNG whose background is transparent.
    cutout = tmp_path / "cutout.png"
    rgba = np.zeros((2600, 2600, 4), np.uint8)
    rgba[300:2300, 300:2300, :3] = np.random.default_rng(1).integers(0, 256, (2000, 2000, 3))
    rgba[300:2300, 300:2300, 3] = 255
    Image.fromarray(rgba).save(cutout)
    assert cutout.stat().st_size > 1_000_000
    for photo in (root / "scene.jpg", large, cutout):
        page = browser.new_page(**PHONE)
        sent = []  # the uploaded file, as the page fetches it back to show it (the examples are fetched alike)
        page.on("request", lambda request: sent.append(unquote(request.url.split("file=", 1)[1]))
                if "/gradio_api/file=" in request.url and unquote(request.url).rsplit("/", 1)[1].startswith(photo.stem + ".")
                else None)
        page.goto(url)
        page.locator("#query-image input[type=file]").set_input_files(str(photo))
        page.locator("#results img").first.wait_for(timeout=60_000)
        received = Path(sent[0])
        if photo == large:  # shrunk to 2048 px on its longer side, turned upright, its EXIF left out
            with Image.open(received) as image:
                assert image.size == (1024, 2048) and image.getexif().get(0x0112) is None
            assert received.stat().st_size < large.stat().st_size / 2
        elif photo == cutout:  # its transparency on white, as the server would flatten it
            with Image.open(received) as image:
                assert image.size == (2048, 2048) and min(image.convert("RGB").getpixel((5, 5))) >= 245
        else:  # a small photo goes as chosen
            assert received.read_bytes() == photo.read_bytes()
        page.close()
    # The large photo dropped on the upload area instead: shrunk alike.
    page = browser.new_page(**DESKTOP)
    sent = []
    page.on("request", lambda request: sent.append(unquote(request.url.split("file=", 1)[1]))
            if "/gradio_api/file=" in request.url and unquote(request.url).endswith("/phone.jpg") else None)
    page.goto(url)
    page.locator("#query-image input[type=file]").wait_for(state="attached", timeout=60_000)
    page.evaluate("""async ([data, name]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const dropped = new DataTransfer();
        dropped.items.add(new File([bytes], name, { type: "image/jpeg" }));
        const area = document.querySelector("#query-image input[type=file]").parentElement;
        for (const type of ["dragenter", "dragover", "drop"]) {
            area.dispatchEvent(new DragEvent(type, { dataTransfer: dropped, bubbles: true, cancelable: true }));
        }
    }""", [base64.b64encode(large.read_bytes()).decode(), large.name])
    page.locator("#results img").first.wait_for(timeout=60_000)
    with Image.open(sent[0]) as image:
        assert image.size == (1024, 2048)
    page.close()


# Records, from before a photo is chosen, what the page's "Searching…" line said and whether Gradio's own progress
# ("processing | 0.3s" on each output) was ever drawn: a text that is there and not see-through.
WATCH_SEARCHING = """() => {
  const note = () => document.querySelector("#searching [role=status]").textContent;
  const drawn = (node) => {
    for (let element = node.parentElement; element; element = element.parentElement) {
      const style = getComputedStyle(element);
      if (style.display === "none" || style.visibility === "hidden" || style.opacity === "0") return false;
    }
    return true;
  };
  const progress = () => {
    const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (texts.nextNode()) if (texts.currentNode.textContent.includes("processing") && drawn(texts.currentNode)) return true;
    return false;
  };
  window.seen = {notes: [note()], progress: false};
  new MutationObserver(() => {
    if (window.seen.notes.at(-1) !== note()) window.seen.notes.push(note());
    window.seen.progress ||= progress();
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def test_a_search_says_searching_in_one_still_line_until_its_answer_or_error_is_in(server, browser, tmp_path):
    url, root = server
    page = browser.new_page(**DESKTOP)
    page.goto(url)
    page.locator("#query-image input[type=file]").wait_for(state="attached")
    page.locator("#searching [role=status]").wait_for(state="attached")  # drawn with the results column
    page.evaluate(WATCH_SEARCHING)
    page.locator("#query-image input[type=file]").set_input_files(str(root / "scene.jpg"))
    page.locator("#regions img").first.wait_for(timeout=60_000)
    page.wait_for_function("() => !document.body.classList.contains('searching')", timeout=10_000)
    seen = page.evaluate("window.seen")
    assert seen["notes"] == ["", "Searching…", ""] and not seen["progress"]
    assert not page.locator("#searching").is_visible()
    # Asked for twice at once, the search runs once, and the line goes with its answer.
    page.evaluate(WATCH_SEARCHING)
    page.locator("#find-similar").click()
    page.locator("#find-similar").click()
    page.wait_for_function("() => window.seen.notes.length >= 3", timeout=60_000)
    page.wait_for_function("() => !document.body.classList.contains('searching')", timeout=10_000)
    assert page.evaluate("window.seen")["notes"] == ["", "Searching…", ""]
    # A photo that cannot be searched: the error is shown and the line goes.
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    page.locator("#another-photo").click()
    page.evaluate(WATCH_SEARCHING)
    page.locator("#query-image input[type=file]").set_input_files(str(broken))
    page.get_by_text("cannot be read").first.wait_for(timeout=30_000)
    page.wait_for_function("() => !document.body.classList.contains('searching')", timeout=10_000)
    assert page.evaluate("window.seen")["notes"] == ["", "Searching…", ""]
    assert not page.locator("#searching").is_visible()
    page.close()


def test_the_benchmarks_search_asked_as_the_browser_asks_gets_its_answer_or_says_it_failed(server, tmp_path):
    import httpx

    from benchmarks.app import protocol_search, search_photo_index

    url, root = server
    event = search_photo_index(url)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    with httpx.Client(timeout=60) as http:
        protocol_search(http, url, event, root / "scene.jpg")
        with pytest.raises(RuntimeError, match="cannot be read"):
            protocol_search(http, url, event, broken)
