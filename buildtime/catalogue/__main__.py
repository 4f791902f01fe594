"""Command line: ``python -m buildtime.catalogue build [options]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from buildtime.catalogue.build import build


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m buildtime.catalogue", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="fetch Sweet Home 3D models, render gallery and queries")
    b.add_argument("--out", type=Path, default=Path("reference_gallery"), help="gallery folder")
    b.add_argument("--queries", type=Path, default=Path("benchmarks/queries"), help="held-out query folder")
    b.add_argument("--per-category", type=int, default=40,
                   help="pad each category with colour variants up to this many products (all real models are kept)")
    b.add_argument("--cache", type=Path, default=Path("build/sh3d"), help="download/extraction cache")
    b.add_argument("--docs", type=Path, default=Path("docs"), help="where the contact sheets go")
    b.add_argument("--credits", type=Path, default=Path("CREDITS.md"))
    b.add_argument("--workers", type=int, default=2, help="rendering processes")
    b.add_argument("--size", type=int, default=512, help="catalogue image side in pixels")
    args = parser.parse_args(argv)
    build(args.out, args.queries, args.per_category, args.cache, args.docs, args.credits, args.workers, args.size)


if __name__ == "__main__":
    main()
