"""End to end: the real app in a subprocess, queried over HTTP and in headless Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import draw_furniture, make_catalogue

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(root: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    """Start app.py on a small catalogue (no index yet) under ``root``; environment overrides in ``settings``."""
    catalogue = make_catalogue(root / "catalogue")
    port = free_port()
    env = dict(
        os.environ,
        FURNITURE_CATALOGUE=str(catalogue),
        FURNITURE_STORE=str(root / "store"),
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        **settings,
    )
    log = open(root / "app.log", "w")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, (root / "app.log").read_text()
            time.sleep(0.5)
    process.kill()
    pytest.fail("app did not start:\n" + (root / "app.log").read_text())


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The app on a small catalogue with no index yet; yield (url, tmp folder)."""
    root = tmp_path_factory.mktemp("app")
    process, url = start_app(root)
    yield url, root
    process.terminate()
    process.wait(timeout=20)


def wait_until_indexed(client, photo, timeout=180):
    """The first start builds the index in the background; searches say so until it is ready."""
    from gradio_client import handle_file

    deadline = time.time() + timeout
    while True:
        try:
            return client.predict(handle_file(str(photo)), 4, "auto", api_name="/search_photo")
        except Exception as error:  # gradio_client re-raises the app's gr.Error as AppError
            if "Not ready" not in str(error) and "ndexing" not in str(error) and "Loading" not in str(error):
                raise
            if time.time() > deadline:
                raise
            time.sleep(1)


def test_search_through_gradio_client(app_server):
    from gradio_client import Client, handle_file

    url, root = app_server
    photo = root / "query.jpg"
    draw_furniture("lamp", (200, 40, 40), 1, size=600).save(photo)
    client = Client(url, verbose=False, download_files=False)
    marked, pieces, confidences, summary, results, colour = wait_until_indexed(client, photo)
    assert not marked["visible"] and not pieces["visible"]  # a product shot: searched whole, no pieces
    assert colour["value"] == "Any colour" and len(colour["choices"]) >= 2  # the colour chips, offered afresh
    assert confidences["label"] == "lamp"
    assert "It looks like a **lamp**" in summary
    assert len(results) == 4
    assert all(item["caption"].endswith("% alike") for item in results)

    bad = root / "bad.jpg"
    bad.write_bytes(b"GIF89a broken")
    with pytest.raises(Exception, match="damaged|incomplete|not a supported|could not"):
        client.predict(handle_file(str(bad)), 4, "auto", api_name="/search_photo")


def test_result_images_are_served_by_id_not_by_a_server_path(app_server):
    """Result thumbnails come from /api/images/<id>, straight from the catalogue: no path of the server in the
    page, and nothing hashed or copied into Gradio's cache on a search."""
    from gradio_client import Client, handle_file

    url, root = app_server
    photo = root / "static-query.jpg"
    draw_furniture("chair", (30, 90, 200), 2, size=400).save(photo)
    wait_until_indexed(Client(url, verbose=False, download_files=False), photo)
    *_, results, _ = Client(url, verbose=False, download_files=False).predict(
        handle_file(str(photo)), 3, "auto", api_name="/search_photo")
    assert all(item["image"]["url"].startswith(f"{url}/api/images/") for item in results)
    assert str(root) not in json.dumps(results)
    served = urllib.request.urlopen(results[0]["image"]["url"], timeout=5).read()
    catalogue = {path.read_bytes() for path in (root / "catalogue").rglob("*.jpg")}
    assert served in catalogue


def test_no_file_outside_the_catalogue_is_served(app_server):
    url, _ = app_server
    for path in ("/etc/passwd", str(ROOT / "app.py"), str(ROOT / "engine" / "search.py")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/gradio_api/file={path}", timeout=5)
        assert refused.value.code in (403, 404)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)")
def test_upload_in_headless_chromium_shows_results(app_server, tmp_path):
    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    url, root = app_server
    photo = tmp_path / "chair.jpg"
    draw_furniture("chair", (30, 90, 200), 0, size=500).save(photo)
    wait_until_indexed(Client(url, verbose=False, download_files=False), photo)

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        for width, height in ((1280, 900), (390, 844)):  # desktop, phone
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.locator("#query-image input[type=file]").set_input_files(str(photo))
            page.get_by_role("button", name="Find similar").click()
            results = page.locator("#results img")
            results.first.wait_for(timeout=60_000)
            assert results.count() >= 4
            assert "chair" in page.locator("#results").inner_text()
            # Phone first: the first results and the predicted category on the first screen, without scrolling.
            page.evaluate("window.scrollTo(0, 0)")
            assert results.first.bounding_box()["y"] + 60 < height
            assert page.locator("#summary").bounding_box()["y"] < results.first.bounding_box()["y"]
            page.screenshot(path=str(tmp_path / f"app-{width}.png"), full_page=True)
            if width == 1280:
                # The colours among the results are offered as chips; picking one refines the results.
                chips = page.locator("#colour-chips label")
                chips.first.wait_for(timeout=30_000)
                picked_colour = chips.nth(1).inner_text().strip()
                chips.nth(1).click()
                page.get_by_text(f"so the same look in {picked_colour} comes first").wait_for(timeout=30_000)
                assert page.locator("#colour-chips input:checked").get_attribute("value") == picked_colour
                # A click on a result: the product, why it matched the photo, and more like it.
                results.first.click()
                page.locator("#why img").first.wait_for(timeout=60_000)
                assert "Picked:" in page.locator("#picked").inner_text()
            page.close()
        browser.close()


def test_api_edges_get_messages(app_server):
    """What an API caller may send: text for k, a category by name, a decompression bomb to the crop endpoint,
    "more like this" without a selection. Each gets our message (or works), never Gradio's generic error."""
    from gradio_client import Client, handle_file

    from tests.test_page_handlers import huge_png

    url, root = app_server
    photo = root / "api-lamp.jpg"
    draw_furniture("lamp", (200, 40, 40), 2, size=400).save(photo)
    client = Client(url, verbose=False, download_files=False)
    wait_until_indexed(client, photo)
    for k in ("abc", None, 0):
        with pytest.raises(Exception, match="Results must be a whole number"):
            client.predict(handle_file(str(photo)), k, "auto", api_name="/search_photo")
    *_, summary, results, _ = client.predict(handle_file(str(photo)), 3, "chair", api_name="/search_photo")
    assert "Only chair products were searched" in summary and len(results) == 3
    bomb = huge_png(root / "bomb.png")
    with pytest.raises(Exception, match="too large"):
        client.predict(handle_file(str(bomb)), 4, "auto", api_name="/search_photo")
    with pytest.raises(Exception, match="tap two opposite corners"):
        client.predict(handle_file(str(photo)), 4, "auto", api_name="/search_crop")
    with pytest.raises(Exception, match="Click one of the results"):
        client.predict(None, 4, "auto", api_name="/more_like_this")


def test_uploads_expire(tmp_path):
    """An uploaded photo is deleted once its lifetime is over (FURNITURE_UPLOAD_LIFETIME_S; an hour by default)."""
    from gradio_client import Client

    (tmp_path / "tmp").mkdir()
    process, url = start_app(tmp_path, FURNITURE_UPLOAD_LIFETIME_S="3", TMPDIR=str(tmp_path / "tmp"))
    cache = tmp_path / "tmp" / "furniture-search" / str(process.pid) / "uploads"  # this instance's own folder
    try:
        photo = tmp_path / "my-photo.jpg"
        draw_furniture("lamp", (200, 40, 40), 1, size=400).save(photo)
        wait_until_indexed(Client(url, verbose=False, download_files=False), photo)
        assert list(cache.rglob("my-photo.jpg")), "the upload should be in Gradio's cache while in use"
        deadline = time.time() + 30
        while list(cache.rglob("my-photo.jpg")) and time.time() < deadline:
            time.sleep(1)
        assert not list(cache.rglob("my-photo.jpg"))
    finally:
        process.terminate()
        process.wait(timeout=20)
