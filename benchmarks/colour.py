"""Benchmark: refine by colour on the bundled catalogue's colour variants (issue #14).

    python -m benchmarks.colour [--store DIR] [--catalogue reference_gallery] [--queries benchmarks/queries]

The bundled catalogue pads small categories with recolourings of its models (``<model>-<colour>``). Each
held-out photo of a model is searched as a shopper would search it, then refined by each of its variants'
colours: the variant should come first. The reverse too: a photo of a variant refined by the colour the
page offers for the original model (the name of its main colour) should bring the original first. Three
ways of asking for the variant's colour are scored: its name as the catalogue spells it (``--colour
mustard``), the chip the page offers for it (the name of the variant's main colour that is not also the
original's), and a hex code (the variant's main colour, as a colour picker would give it). Sweeps the
tuned ``colour_weight`` and ``colour_width`` in the same run, and reports how often the first result stays
the photo's own model (the look kept), with and without a colour. Results go to ``benchmarks/results/colour.md``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.common import (DEFAULT_CATALOGUE, DEFAULT_QUERIES, RESULTS, load_queries, machine_info, machine_line,
                               markdown_table, median)
from engine.colours import NAMED_COLOURS, Colour
from engine.indexing import open_current
from engine.search import SearchEngine
from engine.settings import DEFAULT_SETTINGS

WEIGHTS = (0.1, 0.2, 0.3, 0.5, 1.0)
WIDTHS = (8.0, 12.0, 20.0)
K = 8


@dataclass(frozen=True)
class Trial:
    """One refinement to score: a photo of ``query_product``, refined by ``colour``, should show ``wanted`` first."""

    query_path: Path
    query_product: str
    model: str  # the model both products are colourings of
    wanted: str
    colour: str
    how: str  # "name", "chip" or "hex" (variants), "reverse chip" (originals)


def product_colours(engine: SearchEngine) -> dict[str, list[tuple[Colour, ...]]]:
    found: dict[str, list[tuple[Colour, ...]]] = {}
    for item in engine.stored.images:
        found.setdefault(item.product_id, []).append(item.colours)
    return found


def main_colour(colours: list[tuple[Colour, ...]], avoid: set[str] = frozenset()) -> Colour | None:
    """The product's colour covering the most of it over its images, among names not in ``avoid``."""
    totals: dict[str, tuple[float, Colour]] = {}
    for image in colours:
        for colour in image:
            share, first = totals.get(colour.name, (0.0, colour))
            totals[colour.name] = (share + colour.share, first)
    ranked = [pair for name, pair in sorted(totals.items(), key=lambda kv: -kv[1][0]) if name not in avoid]
    return ranked[0][1] if ranked else None


def variant_pairs(products: set[str]) -> list[tuple[str, str, str]]:
    """(original, variant, colour name) for every recoloured product whose original is in the catalogue."""
    pairs = []
    for product in sorted(products):
        base, _, colour = product.rpartition("-")
        if colour in NAMED_COLOURS and base in products:
            pairs.append((base, product, colour))
    return pairs


def build_trials(engine: SearchEngine, queries_folder: Path) -> list[Trial]:
    colours = product_colours(engine)
    by_product: dict[str, list[Path]] = {}
    for query in load_queries(queries_folder):
        by_product.setdefault(query.product_id, []).append(query.path)
    trials = []
    for base, variant, name in variant_pairs(set(colours)):
        base_names = {c.name for image in colours[base] for c in image}
        chip = main_colour(colours[variant], avoid=base_names) or main_colour(colours[variant])
        variant_main = main_colour(colours[variant])
        base_main = main_colour(colours[base])
        for path in by_product.get(base, []):
            trials.append(Trial(path, base, base, variant, name, "name"))
            trials.append(Trial(path, base, base, variant, chip.name, "chip"))
            trials.append(Trial(path, base, base, variant, variant_main.hex, "hex"))
        for path in by_product.get(variant, []):
            trials.append(Trial(path, variant, base, base, base_main.name, "reverse chip"))
    return trials


def score(engine: SearchEngine, trials: list[Trial], vectors: dict, settings) -> dict[str, tuple[float, float, float]]:
    """Per way of asking: (wanted first, wanted in the results, first result of the photo's model), under
    ``settings``; each photo's ``vectors`` searched again with the trial's colour."""
    engine.settings = settings
    outcome: dict[str, list[tuple[bool, bool, bool]]] = {}
    for trial in trials:
        results = engine.search_vectors(vectors[trial.query_path], k=K, colour=trial.colour).results
        ids = [r.product_id for r in results]
        model_first = ids[0] == trial.model or ids[0].rpartition("-")[0] == trial.model
        outcome.setdefault(trial.how, []).append((ids[0] == trial.wanted, trial.wanted in ids, model_first))
    return {how: tuple(sum(column) / len(rows) for column in zip(*rows)) for how, rows in outcome.items()}


def report(info: dict, trials: list[Trial], plain_first: dict, sweep: dict, search_ms: list[float],
           refine_ms: list[float]) -> list[str]:
    """The Markdown report's lines: the plain search's figures, the sweep of weight and width, the times."""
    hows = ("name", "chip", "hex", "reverse chip")
    counts = {how: sum(trial.how == how for trial in trials) for how in hows}
    baseline = {how: sum(plain_first[t.query_path] == t.wanted for t in trials if t.how == how) / counts[how] for how in hows}
    own_model = sum(plain_first[p] == q or plain_first[p].rpartition("-")[0] == q
                    for p, q in {(t.query_path, t.model) for t in trials}) / len({(t.query_path, t.model) for t in trials})
    chosen = (DEFAULT_SETTINGS.colour_weight, DEFAULT_SETTINGS.colour_width)
    rows = []
    for (weight, width), figures in sweep.items():
        mark = " (default)" if (weight, width) == chosen else ""
        rows.append([f"{weight}{mark}", width, *(f"{figures[how][0]:.2f}" for how in hows),
                     f"{figures['name'][1]:.2f}", f"{figures['name'][2]:.2f}"])
    return [
        "# Refine by colour: the bundled catalogue's colour variants",
        "",
        machine_line(info),
        "",
        "Command: `python -m benchmarks.colour`. Synthetic: renders of the catalogue's models and their recolourings;",
        "no real-photo benchmark has colour variants of one product.",
        f"{len(trials)} refinements: {', '.join(f'{counts[h]} by {h}' for h in hows)}; k = {K}.",
        "",
        "Without a colour, the wanted product comes first in "
        + ", ".join(f"{baseline[h]:.2f} ({h})" for h in hows)
        + f" of them; the first result is the photo's own model (original or a recolouring) in {own_model:.2f}.",
        "",
        "Share of refinements whose wanted product comes first, by way of asking for the colour; then, asked by",
        "name, the share with it anywhere in the results and the share whose first result is still the photo's model:",
        "",
        markdown_table(["colour_weight", "colour_width", *(f"first ({h})" for h in hows), "in results (name)",
                        "own model first (name)"], rows),
        "",
        f"Time: a photo's search {median(search_ms):.0f} ms (median of {len(search_ms)}); refining it by a colour "
        f"(its vectors searched again, {DEFAULT_SETTINGS.colour_pool} products re-ranked) {median(refine_ms):.1f} ms.",
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=str(Path("/tmp") / "furniture-colour-store"))
    parser.add_argument("--catalogue", default=str(DEFAULT_CATALOGUE))
    parser.add_argument("--queries", default=str(DEFAULT_QUERIES))
    args = parser.parse_args(argv)
    info = machine_info()

    engine = SearchEngine.from_store(open_current(args.catalogue, args.store), catalogue=args.catalogue)
    trials = build_trials(engine, Path(args.queries))
    photos = sorted({trial.query_path for trial in trials})
    print(f"{len(trials)} refinements over {len(photos)} photos")
    vectors, plain_first, search_ms = {}, {}, []
    for path in photos:
        started = time.perf_counter()
        response = engine.search(path, k=K)
        search_ms.append(1000 * (time.perf_counter() - started))
        vectors[path] = response.vectors
        plain_first[path] = response.results[0].product_id

    sweep = {}
    for weight in WEIGHTS:
        for width in WIDTHS:
            sweep[weight, width] = score(engine, trials, vectors,
                                         replace(DEFAULT_SETTINGS, colour_weight=weight, colour_width=width))
    engine.settings = DEFAULT_SETTINGS
    refine_ms = []
    for trial in trials[:60]:
        started = time.perf_counter()
        engine.search_vectors(vectors[trial.query_path], k=K, colour=trial.colour)
        refine_ms.append(1000 * (time.perf_counter() - started))

    lines = report(info, trials, plain_first, sweep, search_ms, refine_ms)
    (RESULTS / "colour.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
