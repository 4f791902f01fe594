"""Screenshot the running app after a search, at desktop and phone widths, in headless Chromium.

    python scripts/screenshot_app.py --url http://127.0.0.1:7860 --photo PHOTO --out docs/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}


def screenshot(url: str, photo: Path, out: Path, prefix: str = "screenshot", regions: bool = False,
               colour: str | None = None) -> list[Path]:
    """Upload ``photo``, wait for results (and the marked regions if ``regions``; then pick the ``colour``
    chip if given), save one full-page PNG per viewport and the phone's first screen; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for name, (width, height) in VIEWPORTS.items():
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.goto(url)
            page.locator("#query-image input[type=file]").set_input_files(str(photo))
            page.get_by_role("button", name="Find similar").click()
            page.locator("#results img").first.wait_for(timeout=120_000)
            if regions:
                page.locator("#regions img").first.wait_for(timeout=120_000)
            if colour:
                page.locator("#colour-chips label", has_text=colour).first.click()
                page.get_by_text(f"the same look in {colour} first").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # let thumbnails finish loading
            path = out / f"{prefix}-{name}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
            if name == "phone":  # what a person sees without scrolling
                page.evaluate("window.scrollTo(0, 0)")
                saved.append(out / f"{prefix}-{name}-first-screen.png")
                page.screenshot(path=str(saved[-1]))
            page.close()
        browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7860")
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--prefix", default="screenshot")
    parser.add_argument("--regions", action="store_true", help="also wait for the furniture found in the photo")
    parser.add_argument("--colour", help="then pick this colour chip (its name, as shown)")
    args = parser.parse_args()
    for path in screenshot(args.url, args.photo, args.out, args.prefix, args.regions, args.colour):
        print(path)


if __name__ == "__main__":
    main()
