"""Accessibility of the page as a shopper meets it: axe-core's violations, by impact, at 1280 and 390 px.

    python -m benchmarks.accessibility [--port 7897]

Starts ``app.py`` on 127.0.0.1 with the bundled catalogue, and in headless Chromium at each width uploads a
room scene (pieces found), then picks a result (the "why this match" picture shown) and opens "Crop by hand",
running axe-core (``make test`` installs it from npm into ``.cache/axe``) on each of those three states.
Results go to ``benchmarks/results/accessibility.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS
from benchmarks.common import DEFAULT_CATALOGUE, RESULTS, ROOT, machine_info, machine_line
from benchmarks.load import DEFAULT_STORE, free_port, start_app, wait_until_ready

AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"1280 px": {"viewport": {"width": 1280, "height": 900}},
          "390 px (touch)": {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}}
IMPACTS = ("critical", "serious", "moderate", "minor")
PHOTO = ROOT / "benchmarks" / "scenes" / "scene_001.jpg"


def violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    return page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map("
                         "v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, "
                         "where: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))")


def audit(url: str) -> dict[str, dict[str, list[dict]]]:
    """For each width, each state's violations."""
    from playwright.sync_api import sync_playwright

    found: dict[str, dict[str, list[dict]]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for width, device in WIDTHS.items():
            page = browser.new_page(**device)
            page.goto(url)
            page.locator("#query-image input[type=file]").set_input_files(str(PHOTO))
            page.locator("#regions img").first.wait_for(timeout=120_000)
            page.get_by_text("Results for the ").first.wait_for(timeout=60_000)
            states = {"after a search": violations(page)}
            page.locator("#results .thumbnail-item").first.click()
            page.locator("#why img").first.wait_for(timeout=60_000)
            states["a result picked"] = violations(page)
            page.get_by_text("Crop by hand").click()
            page.locator("#crop-picture img").first.wait_for(timeout=60_000)
            states["crop by hand open"] = violations(page)
            found[width] = states
            page.close()
        browser.close()
    return found


def table(found: dict[str, dict[str, list[dict]]]) -> str:
    lines = ["| width | state | " + " | ".join(IMPACTS) + " | rules |", "|---|---|" + "---|" * (len(IMPACTS) + 1)]
    for width, states in found.items():
        for state, rules in states.items():
            counts = [str(sum(rule["nodes"] for rule in rules if rule["impact"] == impact)) for impact in IMPACTS]
            names = ", ".join(f"{rule['id']} ({rule['impact']}: {', '.join(rule['where'])})" for rule in rules) or "none"
            lines.append(f"| {width} | {state} | " + " | ".join(counts) + f" | {names} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not AXE.is_file():
        raise SystemExit(f"axe-core is not installed at {AXE}; run: make {AXE.relative_to(ROOT)}")
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        process = start_app(port, DEFAULT_CATALOGUE, DEFAULT_STORE, Path(scratch) / "app.log")
        try:
            wait_until_ready(url, PHOTO, process)
            found = audit(url)
        finally:
            process.terminate()
            process.wait(timeout=30)
    report = (f"# Accessibility (axe-core 4.14.1)\n\n{machine_line(machine_info())}\n\n`python -m benchmarks.accessibility`: "
              f"violations (elements) by impact, on the bundled catalogue with `{PHOTO.relative_to(ROOT)}`.\n\n"
              f"{table(found)}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accessibility.md").write_text(report)
    (args.out / "accessibility.json").write_text(json.dumps(found, indent=1))
    print(report)


if __name__ == "__main__":
    main()
