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
               colour: str | None = None, pick: bool = False, crop: tuple[int, int, int, int] | None = None) -> list[Path]:
    """Upload ``photo``, wait for results (and the marked regions if ``regions``; then pick the ``colour``
    chip if given, pick the first result if ``pick``, or crop the photo's box ``crop``, in the page's
    1024 px copy, and search it), save one full-page PNG per viewport and the phone's first screen;
    returns their paths."""
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
                page.get_by_text(f"so the same look in {colour} comes first").wait_for(timeout=60_000)
            if pick:
                page.locator("#results .thumbnail-item").first.click()
                page.locator("#why img").first.wait_for(timeout=60_000)
            if crop:
                crop_photo(page, crop)
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


def crop_photo(page, box: tuple[int, int, int, int]) -> None:
    """Open "Crop by hand", tap the box's two corners on the photo and search the crop."""
    page.get_by_text("Crop by hand").click()
    img = page.locator("#crop-picture img").first
    img.wait_for(timeout=60_000)
    for x, y in (box[:2], box[2:]):
        before = img.get_attribute("src")
        img.scroll_into_view_if_needed()
        frame = img.bounding_box()
        natural = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
        scale = min(frame["width"] / natural[0], frame["height"] / natural[1])
        page.mouse.click(frame["x"] + (frame["width"] - natural[0] * scale) / 2 + x * scale,
                         frame["y"] + (frame["height"] - natural[1] * scale) / 2 + y * scale)
        page.wait_for_function(f"document.querySelector('#crop-picture img').src !== '{before}'")
    page.get_by_role("button", name="Search the crop").click()
    page.get_by_text("Results for your crop.").wait_for(timeout=60_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7860")
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--prefix", default="screenshot")
    parser.add_argument("--regions", action="store_true", help="also wait for the furniture found in the photo")
    parser.add_argument("--colour", help="then pick this colour chip (its name, as shown)")
    parser.add_argument("--pick", action="store_true", help="then pick the first result")
    parser.add_argument("--crop", help="then crop this box of the page's 1024 px copy: X0,Y0,X1,Y1")
    args = parser.parse_args()
    crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
    for path in screenshot(args.url, args.photo, args.out, args.prefix, args.regions, args.colour, args.pick, crop):
        print(path)


if __name__ == "__main__":
    main()
