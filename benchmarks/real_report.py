"""The real-photo benchmark's report (``benchmarks/results/real.md``): its figures beside the ones it started
from, the dataset authors' notebook's, and the page's scene-or-piece decision before issue #25."""

from __future__ import annotations

from benchmarks.common import machine_line, markdown_table

# The figures this benchmark started from (issue #15, measured through the CLI before this benchmark existed).
ISSUE_BASELINE = {
    "own_r1": 0.79, "own_r10": 0.93, "bundled_accuracy": 0.84,
    "rooms_r10_regions": {"chair": 0.45, "table": 0.50, "sofa": 0.32, "bed": 0.60, "lamp": 0.14},
    "rooms_r10_whole": {"chair": 0.14, "table": 0.23, "sofa": 0.50, "bed": 0.47, "lamp": 0.14},
}
# The dataset authors' notebook (VGG19 features, a YOLO crop of the class), R@10 per class; lamps and beds not reported.
NOTEBOOK_R10 = {"chair": 0.664, "sofa": 0.417, "table": 0.432}
CATEGORIES = ("bed", "chair", "lamp", "sofa", "table")
# The decision before issue #25 (a plain border and no second region at half the best's confidence), same dev set.
SCENE_OR_PIECE_BEFORE = {"one_piece_rate": 159 / 232, "scene_rate": 103 / 103}


def render_markdown(results: dict) -> str:
    """The report of one run's ``results`` (as ``benchmarks.real`` saves them)."""
    return "\n".join(_catalogue_lines(results) + _room_lines(results))


def _catalogue_lines(results: dict) -> list[str]:
    """The header, the own catalogue's and the bundled catalogue's tables, and the scene-or-piece decision's."""
    own, bundled, base = results["own"], results["bundled"], ISSUE_BASELINE
    return [
        "# Real-photo benchmark (IKEA interior dataset, dev queries)",
        "",
        machine_line(results["machine"]),
        f"Command: `{results['command']}` ({results['seconds']:.0f} s). Dev queries only: "
        f"{len(results['dev_products'])} products, {results['dev_rooms']} rooms. Tables of figures only; "
        "the dataset's images are IKEA's (non-commercial use) and are not in this repository.",
        "",
        "## Own catalogue: 452 real product photos, queried with phone-like photos of the dev products",
        "",
        f"Indexed {own['images_indexed']} images in {own['index_seconds']:.1f} s. Queries: "
        f"{', '.join(results['variants'])} (see `phone_photo` in `benchmarks/phone_photo.py`), one per dev product each.",
        "",
        markdown_table(
            ["", "queries", "R@1", "R@10", "mAP@10", "category accuracy"],
            [["issue #15 as filed", "-", base["own_r1"], base["own_r10"], "-", "-"],
             ["this run, all", own["queries"], own["r1"], own["r10"], own["map10"], own["category_accuracy"]],
             *[[f"this run, {v}", s["queries"], s["r1"], s["r10"], s["map10"], s["category_accuracy"]]
               for v, s in own["by_variant"].items()]],
        ),
        "",
        "## Bundled (rendered) catalogue: the dev products' real product photos",
        "",
        markdown_table(
            ["", "queries", "category accuracy", *CATEGORIES, "close match", "top score p10 / p50 / p90"],
            [["issue #15 as filed", "-", base["bundled_accuracy"], 0.79, "-", 0.84, "-", 0.85, "-", "-"],
             ["this run", bundled["queries"], bundled["accuracy"], *(bundled["per_category"].get(c, "-") for c in CATEGORIES),
              bundled["close_match_rate"], " / ".join(f"{bundled['top_score'][p]:.2f}" for p in ("p10", "p50", "p90"))]],
        ),
        "",
        "## Scene or one piece: the page's decision on the dev product photos and the dev room photos",
        "",
        "A product photo should be searched as one piece (its results kept), a room as a scene (its pieces searched); "
        "goal of issue #25: 95% right on each.",
        "",
        markdown_table(
            ["", "product photos judged one piece", "rooms judged scenes"],
            [["before #25 (plain border and no second region at half the best's confidence)",
              SCENE_OR_PIECE_BEFORE["one_piece_rate"], SCENE_OR_PIECE_BEFORE["scene_rate"]],
             ["this run (plain border, or no region)", bundled["one_piece_rate"], bundled["scene_rate"]]],
        ),
        "",
    ]


def _room_lines(results: dict) -> list[str]:
    """The rooms' recall per class (whole photo and regions, beside the notebook's), region search as the app runs
    it, and the latency."""
    room, base = results["rooms"], ISSUE_BASELINE
    ks = list(next(iter(room["whole"].values())))  # the ranks recall was measured at
    rows = [[c, room["rooms_per_class"][c], NOTEBOOK_R10.get(c, "-"), base["rooms_r10_whole"][c],
             base["rooms_r10_regions"][c], *(room["whole"][c][k] for k in ks), *(room["regions"][c][k] for k in ks)]
            for c in CATEGORIES if c in room["whole"]]
    return [
        "## Rooms: the dev room photos, searched per class in that class (recall of the room's items of the class)",
        "",
        "Whole: `search --category c`. Regions: `search --regions --category c` (up to 4 regions of class c), "
        "the results of its regions merged by similarity.",
        "",
        markdown_table(
            ["class", "rooms", "notebook R@10", "issue: whole R@10", "issue: regions R@10",
             *(f"whole R@{k}" for k in ks), *(f"regions R@{k}" for k in ks)],
            rows,
        ),
        "",
        "Region search as the app runs it (`category=\"auto\"`, up to 4 regions). The dataset has no boxes; these "
        "stand in for box precision and recall:",
        "",
        markdown_table(
            ["", "regions labelled with a class of the room's catalogued items", "the room's classes with a region of "
             "that class", "regions per photo"],
            [[variant, f"{v['labelled_as_room_class']:.0%}", f"{v['room_classes_boxed']:.0%}", f"{v['per_photo']:.1f}"]
             for variant, v in room["auto_regions"].items()],
        ),
        "",
        "## Latency on the room photos (engine, one process)",
        "",
        markdown_table(
            ["", "p50 ms", "p95 ms"],
            [[name, figures["p50"], figures["p95"]] for name, figures in results["latency"].items()],
        ),
        "",
        "Each region search runs right after the room's whole-photo search; with the detector it reuses that search's "
        "detections. (The page runs a scene's region search alone, its detector pass included.)",
        "",
    ]
