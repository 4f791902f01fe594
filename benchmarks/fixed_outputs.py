"""Search outputs on a fixed set of photos, to show a refactoring changed nothing a user sees.

    python -m benchmarks.fixed_outputs --out before.json          # before the change
    python -m benchmarks.fixed_outputs --compare before.json      # after: exit 1 and the differences if any

Every 12th held-out query photo (39 photos, all five categories) is searched whole, and 12 room scenes by
regions, on the bundled catalogue's store (built if needed); each answer is the CLI's JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.indexing import open_current
from engine.search import SearchEngine

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "reference_gallery"
STORE = ROOT / "index_store" / "default"


def photos() -> tuple[list[Path], list[Path]]:
    queries = sorted((ROOT / "benchmarks" / "queries").rglob("*.jpg"))[::12]
    scenes = sorted((ROOT / "benchmarks" / "scenes").glob("scene_*.jpg"))[:12]
    return queries, scenes


def outputs() -> dict[str, dict]:
    engine = SearchEngine.from_store(open_current(CATALOGUE, STORE), CATALOGUE)
    queries, scenes = photos()
    answers = {}
    for photo in queries:
        answers[str(photo.relative_to(ROOT))] = engine.search(str(photo), k=8).to_json(photo.name)
    for photo in scenes:
        answers[f"regions:{photo.relative_to(ROOT)}"] = engine.search_regions(str(photo), k=4).to_json(photo.name)
    return json.loads(json.dumps(answers))  # tuples as lists, as in a file


def differences(before: dict, after: dict) -> list[str]:
    found = [f"{name}: only before" for name in before.keys() - after.keys()]
    found += [f"{name}: only after" for name in after.keys() - before.keys()]
    found += [f"{name}: {json.dumps(before[name])[:300]}\n   -> {json.dumps(after[name])[:300]}"
              for name in sorted(before.keys() & after.keys()) if before[name] != after[name]]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="write the outputs to this JSON file")
    group.add_argument("--compare", type=Path, help="compare the outputs with this file")
    args = parser.parse_args(argv)
    answers = outputs()
    if args.out:
        args.out.write_text(json.dumps(answers, indent=1))
        print(f"{len(answers)} outputs written to {args.out}")
        return 0
    found = differences(json.loads(args.compare.read_text()), answers)
    print("\n".join(found) or f"all {len(answers)} outputs identical")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
