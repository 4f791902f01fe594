"""Benchmark: a phone's photo sent from the page, as chosen against shrunk in the browser first (issue #28).

    python -m benchmarks.upload [--rounds 4]

A phone's 12 MP photo is 2-5 MB, and on a phone's network sending it is most of the wait. The page shrinks
photos over 1 MB to 2048 px on their longer side before sending them (``web/shrink.js``). This benchmark makes
phone-like photos of ~4 MB (the three drawn scenes at 12 MP with sensor noise, stored sideways with EXIF
orientation 6), starts ``app.py`` on 127.0.0.1 with the bundled catalogue, and times in headless Chromium
(390 px, touch) photo chosen → results visible, alternating the page as it is and the page sending the photo as
chosen (the shrinking skipped: the baseline, same run), on two networks: the loopback as it is, and a phone's
network emulated by Chromium (5 Mbit/s up, 20 down, 40 ms). Results go to ``benchmarks/results/upload.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS, FILE_INPUT, RESULT_SOURCES, RESULTS_SHOWN
from benchmarks.common import DEFAULT_CATALOGUE, RESULTS, ROOT, machine_info, machine_line, markdown_table, percentile
from benchmarks.load import DEFAULT_STORE, free_port, start_app, wait_until_ready

SCENES = ("scene_000.jpg", "scene_001.jpg", "scene_002.jpg")
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True, "device_scale_factor": 2}
NETWORKS = {"loopback": None,
            "phone network (5 Mbit/s up, 20 down, 40 ms)": {"offline": False, "latency": 40,
                                                            "downloadThroughput": 20e6 / 8,
                                                            "uploadThroughput": 5e6 / 8}}


def phone_photos(folder: Path, count: int) -> list[Path]:
    """``count`` ~4 MB portrait photos as phones store them: sideways with EXIF orientation 6, sensor noise."""
    photos = []
    for number in range(count):
        scene = Image.open(ROOT / "benchmarks" / "scenes" / SCENES[number % len(SCENES)]).convert("RGB")
        upright = np.asarray(scene.resize((3024, 4032), Image.BICUBIC), dtype=np.int16)
        noise = np.random.default_rng(number).integers(-14, 15, upright.shape)
        exif = Image.Exif()
        exif[0x0112] = 6
        photo = folder / f"phone-{number}.jpg"
        Image.fromarray(np.clip(upright + noise, 0, 255).astype(np.uint8)).transpose(Image.Transpose.ROTATE_90).save(
            photo, quality=92, exif=exif.tobytes())
        photos.append(photo)
    return photos


def chosen_to_results(page, url: str, photo: Path, shrink: bool) -> float:
    """Seconds from ``photo`` chosen in the page's file input (the page opened afresh) to its results visible."""
    page.goto(url)
    page.locator(FILE_INPUT).wait_for(state="attached", timeout=60_000)
    previous = page.evaluate(RESULT_SOURCES)
    # shrink.js reads the input's data-shrunk as "already shrunk": the photo then goes as chosen, as before it shrank any.
    page.evaluate("([selector, shrink]) => { const input = document.querySelector(selector);"
                  " if (shrink) delete input.dataset.shrunk; else input.dataset.shrunk = 'yes'; }", [FILE_INPUT, shrink])
    started = time.perf_counter()
    page.locator(FILE_INPUT).set_input_files(str(photo))
    page.wait_for_function(RESULTS_SHOWN, arg=previous, timeout=180_000, polling=10)
    return time.perf_counter() - started


def measure(url: str, photos: list[Path], conditions: dict | None) -> dict[str, list[float]]:
    """Per way of sending, seconds photo chosen → results, alternating (the first photo warms the page up)."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"as chosen": [], "shrunk in the browser": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(**PHONE)
        if conditions:
            session = page.context.new_cdp_session(page)
            session.send("Network.enable")
            session.send("Network.emulateNetworkConditions", conditions)
        chosen_to_results(page, url, photos[0], shrink=True)
        for number, photo in enumerate(photos[1:]):
            shrink = number % 2 == 1
            times["shrunk in the browser" if shrink else "as chosen"].append(chosen_to_results(page, url, photo, shrink))
        browser.close()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="photos per way of sending and network (at most 10)")
    parser.add_argument("--output", type=Path, default=RESULTS / "upload.md")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds 1-10 (this benchmark stays bounded)")
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="furniture-upload-bench-"))
    photos = phone_photos(work, 1 + 2 * args.rounds)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_app(port, DEFAULT_CATALOGUE, DEFAULT_STORE, work / "app.log")
    try:
        wait_until_ready(url, photos[0], process)
        results = {network: measure(url, photos, conditions) for network, conditions in NETWORKS.items()}
    finally:
        process.terminate()
        process.wait(timeout=30)
    rows = [[network, way, f"{percentile(seconds, 50) * 1000:.0f} ms", f"{percentile(seconds, 95) * 1000:.0f} ms"]
            for network, ways in results.items() for way, seconds in ways.items()]
    megabytes = np.mean([photo.stat().st_size for photo in photos]) / 1e6
    text = "\n\n".join([
        "# A phone's photo sent from the page: as chosen, or shrunk in the browser first",
        machine_line(info) + " Command: `python -m benchmarks.upload`.",
        f"Headless Chromium at 390 px with touch; 12 MP portrait photos as phones store them (~{megabytes:.1f} MB, "
        "sideways with EXIF orientation 6), the three drawn scenes in turn; the two ways alternated, the page's "
        f"first photo not counted, the page opened afresh for each; {args.rounds} photos each way and network. "
        "Photo chosen → results visible:",
        markdown_table(["network", "the photo sent", "p50", "p95"], rows),
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n", encoding="utf-8")
    args.output.with_suffix(".json").write_text(json.dumps({"machine": info, "photo_mb": megabytes, **results},
                                                           indent=1), encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
