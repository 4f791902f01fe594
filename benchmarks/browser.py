"""The page in headless Chromium, as the benchmarks drive it: the browser, what counts as "shown", and where the
time goes between a photo chosen and its results shown.

A photo chosen on the page is uploaded (``POST /gradio_api/upload``), then searched through Gradio's queue (``POST
/gradio_api/queue/join``, the answer streamed back on ``GET /gradio_api/queue/data``), then drawn. ``photo_rounds``
notes when each of these ends, so that the browser's figure splits into the upload, the wait before the search
is asked for, the server's answer, and the drawing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.load import cpu_seconds

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FILE_INPUT = "#query-image input[type=file]"

# True once the results show a new set of images, every one of them loaded.
RESULTS_SHOWN = """previous => {
    const images = [...document.querySelectorAll('#results img')];
    const sources = images.map(i => i.src).join(' ');
    return images.length > 0 && sources !== previous && images.every(i => i.complete && i.naturalWidth > 0);
}"""
RESULT_SOURCES = "() => [...document.querySelectorAll('#results img')].map(i => i.src).join(' ')"
# True once the marked photo (the region boxes) shows a new, loaded image.
REGIONS_SHOWN = """previous => {
    const image = document.querySelector('#regions img');
    return image !== null && image.src !== previous && image.complete && image.naturalWidth > 0;
}"""
REGIONS_SOURCE = "() => document.querySelector('#regions img')?.src ?? ''"
# The steps of a photo's search, in order, each the first request after the one before that matches:
# (step, "request" when it is sent or "requestfinished" when its answer is in, method, path).
STEPS = (("uploaded", "requestfinished", "POST", "/gradio_api/upload"),
         ("asked", "request", "POST", "/gradio_api/queue/join"),
         ("answered", "requestfinished", "GET", "/gradio_api/queue/data"))


class Timeline:
    """When each of ``STEPS`` happened after ``start()``, from the page's requests."""

    def __init__(self, page) -> None:
        self.started = 0.0
        self.seen: list[tuple[float, str, str, str]] = []
        page.on("request", lambda request: self._note("request", request))
        page.on("requestfinished", lambda request: self._note("requestfinished", request))

    def _note(self, kind: str, request) -> None:
        if self.started:
            self.seen.append((time.perf_counter() - self.started, kind, request.method, request.url))

    def start(self) -> None:
        self.seen.clear()
        self.started = time.perf_counter()

    def steps(self) -> dict[str, float]:
        """Seconds from ``start()`` to each step, in order (a step not seen, and those after it, left out)."""
        found: dict[str, float] = {}
        after = 0.0
        for step, kind, method, path in STEPS:
            times = [t for t, k, m, url in self.seen if k == kind and m == method and path in url and t >= after]
            if not times:
                break
            found[step] = after = min(times)
        return found


def browser_cpu_seconds() -> float:
    """CPU time used so far by this machine's Chromium processes: the page's own work, which here shares the
    server's cores."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "chromium":
                total += cpu_seconds(int(pid))
        except OSError:
            continue  # gone meanwhile
    return total


def photo_rounds(url: str, photos: list[Path], timeout_s: float) -> list[dict[str, float]]:
    """Per photo chosen in headless Chromium at 1280 px (the first warms the page up and is not counted): seconds
    until each step of ``STEPS``, until the results are visible ("results") and until the boxes are ("boxes"); the
    CPU Chromium used meanwhile ("browser_cpu")."""
    from playwright.sync_api import sync_playwright

    rounds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        timeline = Timeline(page)
        page.goto(url)
        page.locator(FILE_INPUT).wait_for(state="attached", timeout=timeout_s * 1000)
        for round_number, photo in enumerate(photos):
            previous_results, previous_regions = page.evaluate(RESULT_SOURCES), page.evaluate(REGIONS_SOURCE)
            if page.locator("#another-photo").is_visible():  # a scene's photo stands in the upload's place
                page.locator("#another-photo").click()
                page.locator(FILE_INPUT).wait_for(state="attached", timeout=timeout_s * 1000)
            cpu = browser_cpu_seconds()
            timeline.start()
            page.locator(FILE_INPUT).set_input_files(str(photo))
            page.wait_for_function(RESULTS_SHOWN, arg=previous_results, timeout=timeout_s * 1000, polling=10)
            results = time.perf_counter() - timeline.started
            page.wait_for_function(REGIONS_SHOWN, arg=previous_regions, timeout=timeout_s * 1000, polling=10)
            if round_number:
                boxes = time.perf_counter() - timeline.started
                rounds.append({**timeline.steps(), "results": results, "boxes": boxes,
                               "browser_cpu": browser_cpu_seconds() - cpu})
        browser.close()
    return rounds
