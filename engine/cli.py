"""Command line: ``python -m engine index | search | info``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from engine.backbone_specs import BACKBONES
from engine.catalogue import IMAGE_SUFFIXES
from engine.errors import InvalidRequestError, SearchError
from engine.filters import parse_where
from engine.store.versions import open_store, read_meta
from engine.feed import load_category_map
from engine.feed_images import FetchSettings
from engine.feed_indexing import FeedReport, index_feed
from engine.indexing import IndexReport, catalogue_matches, index_catalogue
from engine.requests import check_colour, check_count, MAX_REGIONS, MAX_RESULTS
from engine.search import SearchEngine
from engine.window_scorer import region_ranking


def progress_bar(done: int, total: int) -> None:
    """A one-line progress bar on stderr."""
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    print(f"\rembedding [{'#' * filled}{'.' * (width - filled)}] {done}/{total} images", end=end, file=sys.stderr)


def run_index(args: argparse.Namespace) -> int:
    if args.workers is not None:
        check_count("--workers", args.workers, 1024)
        if args.ray is None:
            raise InvalidRequestError("--workers is for indexing on Ray: add --ray [ADDRESS]")
    if (args.catalogue is None) == (args.feed is None):
        raise InvalidRequestError("index needs one of --catalogue FOLDER or --feed FILE_OR_URL")
    if args.feed is not None:
        if args.ray is not None:
            raise InvalidRequestError("--ray indexes catalogue folders; index a feed without it")
        check_count("--connections", args.connections, 256)
        if not 0 < args.fetch_timeout <= 600:
            raise InvalidRequestError(f"--fetch-timeout must be 0-600 seconds, got {args.fetch_timeout}")
        settings = FetchSettings(per_host=args.connections, timeout_s=args.fetch_timeout)
        return print_feed_report(index_feed(args.feed, args.store, load_category_map(args.category_map),
                                            args.backbone, settings, fetch_progress(),
                                            progress_bar))
    if args.category_map is not None:
        raise InvalidRequestError("--category-map maps a feed's categories: use it with --feed")
    return print_index_report(index_catalogue(args.catalogue, args.store, backbone=args.backbone,
                                              progress=progress_bar, ray_address=args.ray, ray_workers=args.workers))


def fetch_progress():
    """A progress line on stderr for a feed's images (counts, rate, failures), every 2 % of them and at the end."""
    started = time.perf_counter()

    def show(done: int, total: int, failed: int) -> None:
        if done == total or done % max(1, total // 50) == 0:
            rate = done / max(time.perf_counter() - started, 1e-6)
            end = "\n" if done == total else ""
            print(f"\rfetching images {done}/{total} ({rate:.0f}/s), {failed} failed", end=end, file=sys.stderr, flush=True)

    return show


def print_feed_report(report: FeedReport) -> int:
    """What indexing a feed did: the feed's rows left out, the images that failed and why, then the index."""
    print(f"feed: {report.products} products; images: {report.downloaded} downloaded, {report.unchanged} unchanged, "
          f"{len(report.failed_images)} failed, in {report.fetch_seconds:.1f} s")
    for what, items in (("feed rows left out", report.left_out), ("images that failed", report.failed_images)):
        if items:
            print(f"{len(items)} {what}:")
            for name, why in items:
                print(f"  {name}: {why}")
    if report.without_images:
        print(f"{len(report.without_images)} products left out, none of their images could be used: "
              + ", ".join(report.without_images))
    return print_index_report(report.index)


def print_index_report(report: IndexReport) -> int:
    if report.repaired:
        print(f"repaired the store: it could not be used ({report.repaired}); rebuilt it")
    if report.verified:
        print(f"  {report.verified}")
    print(f"indexed {report.images} images into {report.store} with {report.backbone} in {report.seconds:.1f} s")
    coloured = f" (colours computed for {report.coloured})" if report.coloured else ""
    print(f"  embedded {report.embedded}, reused {report.reused} unchanged{coloured}, removed {report.removed}")
    for category, images in report.images_per_category.items():
        print(f"  {category:<12} {report.products_per_category[category]:>5} products {images:>6} images")
    if report.skipped:
        print(f"skipped {len(report.skipped)} files:")
        for path, reason in report.skipped:
            print(f"  {path}: {reason}")
    return 0


def query_paths(arguments: list[str]) -> list[tuple[str, Path]]:
    """Expand folders into their image files; keep each query's path as the user gave it.

    A folder without images is an error (``InvalidRequestError``): silence would look like "no results".
    """
    queries = []
    for argument in arguments:
        path = Path(argument)
        try:
            is_folder = path.is_dir()
        except OSError:  # a name too long for the file system, say: load_image reports it per query
            is_folder = False
        if is_folder:
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InvalidRequestError(
                    f"no image files in the folder {argument} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            queries += [(str(p), p) for p in found]
        else:
            queries.append((argument, path))
    return queries


# --regions, --no-regions or neither, as ``SearchEngine.search_scene_or_piece`` takes it.
REGION_FLAGS = {True: "true", False: "false", None: "auto"}


def run_search(args: argparse.Namespace) -> int:
    check_count("--k", args.k, MAX_RESULTS)
    check_count("--max-regions", args.max_regions, MAX_REGIONS)
    check_colour(args.colour)
    parse_where(args.where)
    queries = query_paths(args.images)
    engine = SearchEngine.open(args.store, catalogue=args.catalogue)
    engine.check_category(args.category)
    failures = 0
    for shown, path in queries:
        try:
            line = engine.search_scene_or_piece(path, k=args.k, max_regions=args.max_regions, category=args.category,
                                                colour=args.colour, where=args.where,
                                                regions=REGION_FLAGS[args.regions]).to_json(shown)
        except SearchError as error:
            failures += 1
            line = {"query": shown, "error": str(error)}
        print(json.dumps(line), flush=True)
    return 1 if failures else 0


def run_info(args: argparse.Namespace) -> int:
    meta = read_meta(args.store)
    backbone = meta.backbone
    products: dict[str, set] = {}
    for item in meta.images:
        products.setdefault(item.category, set()).add(item.product_id)
    print(f"store:     {args.store}")
    print(f"created:   {meta.created}")
    print(f"backbone:  {backbone.name} ({backbone.layer} layer, {backbone.pooling} pooling, "
          f"{backbone.feature_dim}-d, {backbone.preprocessing.size} px {backbone.preprocessing.fit})")
    print(f"catalogue: {meta.catalogue}" + (f" (images of the feed {meta.feed})" if meta.feed else ""))
    try:
        stored = open_store(args.store)  # everything search loads, checked file by file
    except SearchError as error:
        print(f"status:    damaged: {error}")
        return 1
    if meta.feed:
        print(f"status:    intact; re-run python -m engine index --feed {meta.feed} --store {args.store} to update it")
    else:
        up_to_date = catalogue_matches(stored, meta.catalogue)
        print(f"status:    {'up to date' if up_to_date else 'out of date: re-run python -m engine index'}")
    print(f"regions:   {region_ranking(backbone.name, meta.categories)}")
    print(f"search:    {index_summary(meta.indexes)}")
    print(f"images:    {len(meta.images)} ({len(meta.skipped)} files skipped)")
    for category in meta.categories:
        images = sum(1 for item in meta.images if item.category == category)
        print(f"  {category:<12} {len(products.get(category, ())):>5} products {images:>6} images")
    return 0


def index_summary(indexes: dict) -> str:
    """How the store's vector indexes search, e.g. "exact: all, bed, chair" or "HNSW f16 graph: all; exact: lamp"."""
    kinds: dict[str, list[str]] = {}
    for name, choice in indexes.items():
        kind = "exact" if choice.kind == "exact" else f"HNSW {choice.dtype} graph (ef {choice.expansion_search})"
        kinds.setdefault(kind, []).append(name)
    return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in kinds.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Visual furniture search.")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="index (or update the index of) a catalogue folder or a product feed")
    index.add_argument("--catalogue", "--gallery",
                       help="catalogue folder: <category>/[<product_id>/]<image> (--gallery: its old name)")
    index.add_argument("--feed", metavar="FILE_OR_URL",
                       help="a product feed in Google Merchant Center's fields (TSV, CSV, RSS/Atom XML; gzip too): "
                            "its images are fetched and indexed with their prices, stock and links")
    index.add_argument("--connections", type=int, default=FetchSettings.per_host,
                       help=f"with --feed: connections at once to one image host (default {FetchSettings.per_host})")
    index.add_argument("--fetch-timeout", type=float, default=FetchSettings.timeout_s, metavar="SECONDS",
                       help=f"with --feed: seconds to wait for an image server (default {FetchSettings.timeout_s:g})")
    index.add_argument("--category-map", metavar="FILE",
                       help='with --feed: a JSON object mapping feed categories to the store\'s, e.g. '
                            '{"Furniture > Tables > Nightstands": "table"}')
    index.add_argument("--store", required=True, help="folder to write the index to")
    index.add_argument("--backbone", choices=sorted(BACKBONES), help="default: the store's, else efficientnet_lite0")
    index.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="decode and embed on Ray: a local instance, or the cluster at ADDRESS (ray://host:10001 "
                            "or auto); needs pip install -r requirements-scale.txt")
    index.add_argument("--workers", type=int, help="with --ray: this many workers (default: one per GPU, or per CPU without GPUs)")
    index.set_defaults(run=run_index)

    search = commands.add_parser("search", help="search images; prints one JSON object per query")
    search.add_argument("--store", required=True)
    search.add_argument("--k", type=int, default=10, help="number of products per query (default 10)")
    search.add_argument("--category", default="auto", help="auto (default), all, or a category name")
    search.add_argument("--colour", "--color", metavar="NAME_OR_HEX",
                        help="same look in this colour first: a name (red, mustard, navy, ...) or a hex code (#2d55a0)")
    search.add_argument("--where", action="append", metavar="CONDITION",
                        help="only products that meet it: price<300, availability=in_stock, brand=NAME, ... "
                             "(repeat it, or separate conditions with ';')")
    search.add_argument("--catalogue", "--gallery", help="where the catalogue images are, if moved since indexing")
    search.add_argument("--regions", action=argparse.BooleanOptionalAction,
                        help="always find each piece of furniture in the photo and search it on its own (adds "
                             "\"regions\"); --no-regions: always the whole photo; neither (the default, as the "
                             "page): a scene by its pieces, a product shot whole")
    search.add_argument("--max-regions", type=int, default=4, help="pieces searched at most (default 4)")
    search.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    search.set_defaults(run=run_search)

    info = commands.add_parser("info", help="describe a store")
    info.add_argument("--store", required=True)
    info.set_defaults(run=run_info)
    return parser


# Old names that still work, each with a note saying the new one.
RENAMED_FLAGS = {"--gallery": "--catalogue"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    for old, new in RENAMED_FLAGS.items():
        if any(arg == old or arg.startswith(old + "=") for arg in argv):
            print(f"note: {old} is now called {new}; {old} will keep working for a while", file=sys.stderr)
    started = time.perf_counter()
    try:
        status = args.run(args)
    except SearchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the previous index (if any) is untouched", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    if args.command == "search":
        print(f"done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return status
