"""The example shop's web server on 127.0.0.1: its feed (``/feed.tsv``, ``.csv``, ``.xml``, ``.tsv.gz``) and its
images, with ``ETag`` and ``Last-Modified`` (a "changed since?" request gets 304), and, when asked, the faults a
shop's CDN has mixed in: 404s, slow answers, answers slower than any client waits, wrong content types,
truncated and huge images, redirects, a 503 that goes away on retry, images that do not decode, image URLs
shared by several products, and a product none of whose images exist.

Tests and ``python -m benchmarks.feed`` use it; ``python -m example_shop`` serves it to index the example shop.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageOps

from example_shop.products import ExampleShop, feed_text

# The faults, by the product's number modulo FAULT_PERIOD (products 0 .. FAULT_PERIOD-1 hold one of each).
FAULT_PERIOD = 40
FAULTS = {1: "404", 2: "slow", 3: "stalled", 4: "html", 5: "truncated", 6: "huge", 7: "redirect",
          8: "flaky", 9: "garbage", 10: "shared", 11: "all-missing"}
SLOW_S = 0.6  # a slow answer: later, but within any sensible timeout
STALLED_S = 30.0  # an answer slower than the indexer waits (its timeout is set below this in tests)
HUGE_BYTES = 60_000_000


@dataclass
class ServerState:
    """What the server serves and has seen: the shop, the image versions (a changed image gets a new ETag), the
    requests and 304s answered, and which flaky URLs already failed once."""

    shop: ExampleShop
    faults: bool
    versions: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    not_modified: int = 0
    image_bytes: int = 0
    failed_once: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    numbers: dict[str, int] = field(default_factory=dict)  # product id -> its number in the feed

    def __post_init__(self) -> None:
        self.numbers = {row["id"]: number for number, row in enumerate(self.shop.rows)}


def fault_of(path: str, state: ServerState) -> str:
    """The fault the image at ``path`` ("/images/<product id>/<n>.jpg") is served with ("" for none): a
    product's first image only, except "all-missing"."""
    if not state.faults:
        return ""
    product_id, name = path.split("/")[2:4]
    fault = FAULTS.get(state.numbers.get(product_id, -1) % FAULT_PERIOD, "")
    return fault if fault == "all-missing" or name == "0.jpg" else ""


def image_bytes(state: ServerState, path: str) -> bytes:
    """The image as the shop serves it: the render's file as it is, or an edition's mirrored, re-framed copy;
    a changed image (``state.versions``) is drawn slightly brighter, so its bytes and ETag change."""
    image = state.shop.images[path]
    version = state.versions.get(path, 0)
    if image.edition == 0 and version == 0:
        return image.source.read_bytes()
    with Image.open(image.source) as opened:
        picture = opened.convert("RGB")
    if image.edition:  # framed its own way: a margin, mirrored or not, a little lighter (distinct for 128 editions)
        inset = 0.015 * (image.edition % 8)
        w, h = picture.size
        picture = picture.crop((round(w * inset), round(h * inset), round(w * (1 - inset)), round(h * (1 - inset))))
        if image.edition // 8 % 2:
            picture = ImageOps.mirror(picture)
    lighter = 3 * (image.edition // 16) + 4 * version
    if lighter:
        picture = picture.point(lambda value: min(255, value + lighter))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


class ShopHandler(BaseHTTPRequestHandler):
    state: ServerState  # set on the class made for each server
    base_url: str

    def log_message(self, *args) -> None:  # quiet: tests and benchmarks read counters instead
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped waiting (a stalled or huge answer): nothing to tell it

    def do_GET(self) -> None:
        with self.state.lock:
            self.state.requests += 1
        path = self.path.split("?", 1)[0]
        if path.startswith("/feed."):
            return self._feed(path)
        if path not in self.state.shop.images:
            return self._send(404, b"not found", "text/plain")
        fault = fault_of(path, self.state)
        if fault in ("404", "all-missing"):
            return self._send(404, b"not found", "text/plain")
        if fault == "redirect" and "moved=1" not in self.path:
            self.send_response(302)
            self.send_header("Location", path + "?moved=1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault == "flaky":
            with self.state.lock:
                first = path not in self.state.failed_once
                self.state.failed_once.add(path)
            if first:
                return self._send(503, b"busy", "text/plain")
        if fault in ("slow", "stalled"):
            time.sleep(SLOW_S if fault == "slow" else STALLED_S)
        self._image(path, fault)

    def _feed(self, path: str) -> None:
        kind = path.removeprefix("/feed.").removesuffix(".gz")
        if kind not in ("tsv", "csv", "xml"):
            return self._send(404, b"not found", "text/plain")
        data = feed_text(self.state.shop.rows, self.base_url, kind)
        self._send(200, gzip.compress(data) if path.endswith(".gz") else data, "text/plain; charset=utf-8")

    def _image(self, path: str, fault: str) -> None:
        if fault == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            self.wfile.write(b"\xff\xd8" + b"\x00" * 65536)  # the client should stop at the declared size
            return
        data = b"\xff\xd8\xff\xe0 not really a jpeg" * 40 if fault == "garbage" else image_bytes(self.state, path)
        etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            with self.state.lock:
                self.state.not_modified += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        with self.state.lock:
            self.state.image_bytes += len(data)
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if fault == "html" else "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", formatdate(1_700_000_000 + self.state.versions.get(path, 0), usegmt=True))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if fault == "truncated" else data)

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ShopServer:
    """The example shop served on 127.0.0.1 (a free port) in a background thread; ``with ShopServer(...) as s``."""

    def __init__(self, shop: ExampleShop, faults: bool = False, port: int = 0):
        if faults:
            _share_images(shop)
        self.state = ServerState(shop, faults)
        handler = type("Handler", (ShopHandler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.base_url = self.base_url
        self.thread = threading.Thread(target=self.server.serve_forever, name="example-shop", daemon=True)

    def __enter__(self) -> ShopServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, kind: str = "tsv") -> str:
        return f"{self.base_url}/feed.{kind}"

    def change(self, share: float, seed: int = 1) -> list[str]:
        """Change ``share`` of the products as a shop does between runs: a new price for each, and for every
        other one a new image (new bytes, new ETag). Returns the changed products' ids."""
        rng = random.Random(seed)
        rows = self.state.shop.rows
        changed = rng.sample(range(len(rows)), max(1, round(len(rows) * share)))
        for n, number in enumerate(changed):
            row = rows[number]
            amount = float(row["price"].split()[0])
            row["price"] = f"{amount * 0.9:.2f} EUR"
            if n % 2 == 0:
                path = row["image_link"]
                self.state.versions[path] = self.state.versions.get(path, 0) + 1
        return [rows[number]["id"] for number in changed]


def _share_images(shop: ExampleShop) -> None:
    """The "shared" fault: such a product lists the previous product's image too, and its own image twice."""
    for number, row in enumerate(shop.rows):
        if number and FAULTS.get(number % FAULT_PERIOD) == "shared":
            previous = shop.rows[number - 1]["image_link"]
            row["additional_image_link"] = ",".join(filter(None, [row["image_link"], previous,
                                                                    row["additional_image_link"]]))
