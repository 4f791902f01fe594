"""Region boxes on real rooms against hand-labelled boxes (IKEA interior dataset, dev rooms).

    python -m benchmarks.boxes --ikea DIR [--labels benchmarks/room_boxes.json]

``DIR`` is a checkout of the public repository IvonaTau/ikea; its room photos are IKEA's, for non-commercial use:
this command reads them and writes tables of figures only (``benchmarks/results/boxes.{md,json}``). The labels
(``benchmarks/room_boxes.json``) are boxes drawn by hand on the dev rooms of the real-photo split.

Three sources of boxes are scored, per class and ignoring the class:

a. the page's pieces: ``search_regions(photo, k=1, max_regions=4)``, what a shopper is shown;
b. the same with ``max_regions=12`` (the most the engine gives): the recall more boxes would buy;
c. the raw detector (``engine.detector``) on the photo as region search decodes it, at region search's threshold
   (``engine.regions.DETECTION_SCORE``) and at the main pieces' (``SearchSettings.main_piece_score``), with no
   overlap suppression: what the detector itself finds before the engine picks from it.

Scoring is PASCAL VOC's: a box counts when its IoU with a labelled box is at least 0.5, greedily best first.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from benchmarks.common import DEFAULT_CATALOGUE, RESULTS, ROOT, machine_info, machine_line, markdown_table, save_results

CLASSES = ("bed", "sofa", "chair", "table", "lamp")
ANY = "any"  # the row of all classes together
IOU_MATCH = 0.5  # PASCAL VOC's threshold
DEFAULT_LABELS = ROOT / "benchmarks" / "room_boxes.json"
DEFAULT_STORE = ROOT / "index_store" / "default"
PAGE_REGIONS = 4  # the page asks for 4 regions (page.py)
MOST_REGIONS = 12  # engine.requests.MAX_REGIONS

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Labelled:
    """A hand-labelled piece of furniture; a difficult one (tiny, cut by the frame, hidden) is neither required
    nor, when boxed, a false positive."""

    box: Box
    category: str
    difficult: bool = False


@dataclass(frozen=True)
class Predicted:
    """A box shown or found, with the score that orders it (a confidence, or minus its rank)."""

    box: Box
    category: str
    score: float


@dataclass
class Counts:
    """Counts of one class. Predicted boxes are counted under their own class (true_boxes, false_boxes), labels
    under theirs (found, missed): ignoring the class, a chair's label found by a box called a table counts as a
    found chair and a true table box, so recall and precision each keep the class that defines them."""

    true_boxes: int = 0
    false_boxes: int = 0
    found: int = 0
    missed: int = 0

    def add(self, other: Counts) -> None:
        self.true_boxes += other.true_boxes
        self.false_boxes += other.false_boxes
        self.found += other.found
        self.missed += other.missed

    @property
    def precision(self) -> float | None:
        shown = self.true_boxes + self.false_boxes
        return self.true_boxes / shown if shown else None

    @property
    def recall(self) -> float | None:
        required = self.found + self.missed
        return self.found / required if required else None


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_boxes(predicted: Sequence[Predicted], labelled: Sequence[Labelled], by_class: bool = True,
                threshold: float = IOU_MATCH) -> dict[str, Counts]:
    """Counts per class (and under ``ANY``) for one photo, matching greedily by score.

    Each box, best first, takes the unmatched label (of its class when ``by_class``) of highest IoU, if that IoU
    reaches ``threshold``; an unmatched box is a false positive, so a second box on one piece is one. A box on a
    difficult label is neither true nor false, and the label stays free (VOC does the same: several boxes on a
    piece nobody requires cost nothing); difficult labels are never missed.
    """
    counts: dict[str, Counts] = defaultdict(Counts)
    taken = [False] * len(labelled)
    for box in sorted(predicted, key=lambda p: -p.score):  # sorted() is stable: equal scores keep their order
        best, best_iou = None, threshold
        for index, label in enumerate(labelled):
            if taken[index] or (by_class and label.category != box.category):
                continue
            overlap = iou(box.box, label.box)
            if overlap >= best_iou:
                best, best_iou = index, overlap
        if best is None:
            counts[box.category].false_boxes += 1
        elif not labelled[best].difficult:
            taken[best] = True
            counts[box.category].true_boxes += 1
            counts[labelled[best].category].found += 1
    for index, label in enumerate(labelled):
        if not taken[index] and not label.difficult:
            counts[label.category].missed += 1
    total = Counts()
    for per_class in list(counts.values()):
        total.add(per_class)
    counts[ANY] = total
    return dict(counts)


def add_counts(into: dict[str, Counts], more: dict[str, Counts]) -> None:
    for category, counts in more.items():
        into.setdefault(category, Counts()).add(counts)


def load_labels(path: Path) -> dict[str, list[Labelled]]:
    """The rooms of ``room_boxes.json``: file name -> its labelled pieces."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: [Labelled(tuple(piece["box"]), piece["class"], bool(piece.get("difficult"))) for piece in pieces]
            for name, pieces in data["rooms"].items()}


# ---------------------------------------------------------------------------------------------------------------------
# The sources of boxes


@dataclass
class Source:
    """One source of boxes: its counts per class with and without the class, boxes shown and time taken."""

    name: str
    by_class: dict[str, Counts] = field(default_factory=dict)
    any_class: dict[str, Counts] = field(default_factory=dict)
    boxes: int = 0
    seconds: float = 0.0

    def score(self, predicted: list[Predicted], labelled: list[Labelled]) -> None:
        add_counts(self.by_class, match_boxes(predicted, labelled, by_class=True))
        add_counts(self.any_class, match_boxes(predicted, labelled, by_class=False))
        self.boxes += len(predicted)


def _region_boxes(engine, photo: Path, max_regions: int) -> tuple[list[Predicted], bool]:
    """The boxes region search shows, ranked as given (best first), and whether it judged the photo a product shot
    (then the page shows no box: it searches the photo whole)."""
    found = engine.search_regions(photo, k=1, max_regions=max_regions)
    if found.product_shot:
        return [], True
    return [Predicted(tuple(m.region.box), m.region.category, -rank) for rank, m in enumerate(found.matches)], False


def _detector_boxes(engine, photo: Path, threshold: float) -> list[Predicted]:
    """The detector's boxes at ``threshold`` on the photo decoded as region search decodes it (engine.search), in the
    photo's pixels."""
    from engine.images import full_size, load_image
    from engine.search import REGION_DECODE_SIDE

    decoded = load_image(photo, min_side=REGION_DECODE_SIDE, max_side=engine.settings.region_max_side)
    width, height = full_size(decoded)
    sx, sy = width / decoded.width, height / decoded.height
    return [Predicted((round(d.box[0] * sx), round(d.box[1] * sy), min(width, round(d.box[2] * sx)),
                       min(height, round(d.box[3] * sy))), d.category, d.score)
            for d in engine.detector.detect(decoded, threshold, engine.settings.detection_side)]


def run_sources(engine, rooms: dict[str, list[Labelled]], images: Path) -> tuple[list[Source], int]:
    """Score every source on every labelled room; returns the sources and how many rooms were taken for product
    shots by the page's region search."""
    from engine.regions import DETECTION_SCORE

    thresholds = {f"c. raw detector, score >= {DETECTION_SCORE} (region search's)": DETECTION_SCORE,
                  f"c. raw detector, score >= {engine.settings.main_piece_score} (main pieces')":
                      engine.settings.main_piece_score}
    sources = [Source(f"a. page's pieces (max_regions={PAGE_REGIONS})"),
               Source(f"b. region search, max_regions={MOST_REGIONS}"), *(Source(name) for name in thresholds)]
    product_shots = 0
    for index, (name, labelled) in enumerate(sorted(rooms.items())):
        photo = images / name
        for source, regions in zip(sources[:2], (PAGE_REGIONS, MOST_REGIONS)):
            started = time.perf_counter()
            predicted, shot = _region_boxes(engine, photo, regions)
            source.seconds += time.perf_counter() - started
            product_shots += int(shot and regions == PAGE_REGIONS)  # the page asks for 4
            source.score(predicted, labelled)
        for source, threshold in zip(sources[2:], thresholds.values()):
            engine.detector.forget()  # time the network, not the kept detections of region search
            started = time.perf_counter()
            predicted = _detector_boxes(engine, photo, threshold)
            source.seconds += time.perf_counter() - started
            source.score(predicted, labelled)
        print(f"{index + 1}/{len(rooms)} {name}", flush=True)
    return sources, product_shots


# ---------------------------------------------------------------------------------------------------------------------
# Report


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def source_rows(source: Source) -> list[list[object]]:
    """Table rows of one source: per class, then all classes."""
    rows = []
    for category in (*CLASSES, ANY):
        strict = source.by_class.get(category, Counts())
        loose = source.any_class.get(category, Counts())
        rows.append([category, strict.found + strict.missed, _ratio(strict.precision), _ratio(strict.recall),
                     f"{strict.true_boxes} / {strict.false_boxes} / {strict.missed}",
                     _ratio(loose.precision), _ratio(loose.recall)])
    return rows


def source_figures(source: Source) -> dict:
    def figures(counts: dict[str, Counts]) -> dict:
        return {c: {"tp": n.true_boxes, "fp": n.false_boxes, "fn": n.missed, "found": n.found,
                    "precision": n.precision, "recall": n.recall} for c, n in counts.items()}

    return {"boxes": source.boxes, "seconds": source.seconds, "by_class": figures(source.by_class),
            "any_class": figures(source.any_class)}


HEADERS = ["class", "labels", "precision", "recall", "TP / FP / FN", "any-class precision", "any-class recall"]


def render_markdown(results: dict, sources: list[Source]) -> str:
    rooms, labels = results["rooms"], results["labels"]
    lines = [
        "# Region boxes on real rooms (hand-labelled IKEA dev rooms)",
        "",
        machine_line(results["machine"]) + f" Load average before the run: {results['load_before']}.",
        f"Command: `{results['command']}` ({results['seconds']:.0f} s). {rooms} rooms, {labels['required']} labelled "
        f"pieces required and {labels['difficult']} difficult (not required); labels in `benchmarks/room_boxes.json`. "
        "Figures only; the photos are IKEA's (non-commercial use) and are not in this repository.",
        "",
        f"A box is right when its IoU with a labelled box of its class is at least {IOU_MATCH} (greedy, best box "
        "first; a second box on one piece is a false positive; a box on a difficult label counts for nothing). "
        "TP / FP count boxes of the class, FN its labels missed. Any-class: the same matching ignoring the class, "
        "so a recall above the class-aware one is pieces boxed under a wrong class; precision is per the box's class, "
        "recall per the label's (a better-ranked box of another class may take a label first, so one class's "
        "any-class precision can fall below its class-aware one). The detector has no lamp class.",
        "",
        "Times per room: a includes the detector's pass; b, run next on the same photo, reuses its detections (as the "
        "page's region search reuses its whole-photo search's); c times the detector alone, its kept detections "
        "dropped first.",
        "",
        f"Rooms the page's region search took for product shots (searched whole, no boxes): {results['product_shots']} "
        f"of {rooms}.",
        "",
    ]
    for source in sources:
        lines += [f"## {source.name}", "",
                  f"{source.boxes / rooms:.1f} boxes per room; {1000 * source.seconds / rooms:.0f} ms per room.", "",
                  markdown_table(HEADERS, source_rows(source)), ""]
    return "\n".join(lines)


def label_counts(rooms: dict[str, list[Labelled]]) -> dict:
    pieces = [piece for labelled in rooms.values() for piece in labelled]
    per_class = {c: sum(p.category == c and not p.difficult for p in pieces) for c in CLASSES}
    return {"required": sum(not p.difficult for p in pieces), "difficult": sum(p.difficult for p in pieces),
            "required_per_class": per_class}


def open_engine(catalogue: Path, store: Path):
    """The bundled catalogue's engine, as the app opens it (the store built or synced first when stale)."""
    from engine.indexing import open_current
    from engine.search import SearchEngine

    engine = SearchEngine.from_store(open_current(catalogue, store), catalogue=catalogue)
    if engine.detector is None:
        raise SystemExit("the detector (engine/models/detector_centernet.npz) is missing: source c needs it")
    return engine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ikea", type=Path, required=True, help="checkout of github.com/IvonaTau/ikea")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="store of the bundled catalogue")
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--quick", action="store_true", help="first 8 rooms; results not saved")
    parser.add_argument("--output", type=Path, default=RESULTS / "boxes")
    args = parser.parse_args(argv)

    images = args.ikea / "images" / "room_scenes"
    rooms = load_labels(args.labels)
    if args.quick:
        rooms = dict(sorted(rooms.items())[:8])
    missing = [name for name in rooms if not (images / name).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} labelled rooms not in {images} (e.g. {missing[0]}): pass --ikea")
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if os.path.exists("/proc/loadavg") else "-"
    started = time.perf_counter()
    engine = open_engine(args.catalogue, args.store)
    sources, product_shots = run_sources(engine, rooms, images)
    results = {
        "machine": machine_info(), "load_before": load_before,
        "command": "python -m benchmarks.boxes --ikea DIR" + (" --quick" if args.quick else ""),
        "seconds": time.perf_counter() - started, "rooms": len(rooms), "labels": label_counts(rooms),
        "iou": IOU_MATCH, "product_shots": product_shots,
        "sources": {source.name: source_figures(source) for source in sources},
    }
    markdown = render_markdown(results, sources)
    print(markdown)
    if not args.quick:
        save_results(args.output, markdown, results)


if __name__ == "__main__":
    main()
