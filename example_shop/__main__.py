"""``python -m example_shop``: the example shop, from its product feed to a running page.

Serves a made-up shop's Merchant feed for the bundled catalogue (``example_shop.products``) and its images on
127.0.0.1, then starts the app on that feed (``FURNITURE_FEED``): the app indexes it (fetching every image once
into the store's cache) and shows prices, stock, links and filters. ``--write FEED.tsv`` only writes the feed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from example_shop.products import MADE_UP, example_shop, feed_text
from example_shop.server import ShopServer

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m example_shop", description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=None, help="how many products (default: one per bundled product)")
    parser.add_argument("--port", type=int, default=8766, help="the feed server's port on 127.0.0.1 (default 8766)")
    parser.add_argument("--store", type=Path, default=ROOT / "index_store" / "example-shop")
    parser.add_argument("--write", type=Path, metavar="FEED.tsv", help="write the feed (image links to the server) and stop")
    args = parser.parse_args(argv)
    shop = example_shop(ROOT / "reference_gallery", args.products)
    server = ShopServer(shop, port=args.port)
    if args.write:
        args.write.write_bytes(feed_text(shop.rows, server.base_url, args.write.suffix.lstrip(".") or "tsv"))
        print(f"wrote {len(shop.rows)} products to {args.write}; serve their images with python -m example_shop")
        return
    with server:
        print(f"example shop feed: {server.url('tsv')} ({len(shop.rows)} products)", flush=True)
        # The app reads its settings when imported.
        os.environ.update(FURNITURE_FEED=server.url("tsv"), FURNITURE_STORE=str(args.store.resolve()),
                          FURNITURE_NOTICE=f"{MADE_UP} The images are the bundled catalogue's renders "
                                           "(credits in CREDITS.md).")
        import app

        app.main()


if __name__ == "__main__":
    main()
