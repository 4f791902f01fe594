"""Fetch a feed's images over HTTP(S) into a local cache, concurrently and politely.

Each URL is fetched once per run, at most ``per_host`` at a time per host, with a timeout, retried with
back-off on a timeout, a dropped connection, 429 or 5xx, and refused when it is larger than
``MAX_FILE_BYTES``, not served as an image, truncated or not decodable. The cache (``<folder>/cache.json``
and one file per URL) remembers each image's ``ETag`` and ``Last-Modified``, so a re-run asks the server
"changed since?" and downloads only what changed. Files and the cache's record are written atomically.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from engine.images import MAX_FILE_BYTES
from engine.store.files import atomic_write_text

CACHE_RECORD = "cache.json"
RETRIED_STATUSES = {408, 429, 500, 502, 503, 504}
SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
            "image/bmp": ".bmp", "image/tiff": ".tif", "image/heic": ".heic", "image/heif": ".heif",
            "image/avif": ".avif"}
FetchProgress = Callable[[int, int, int], None]  # (URLs done, URLs in all, failed so far)


@dataclass(frozen=True)
class FetchSettings:
    """How images are fetched; the defaults suit a shop's image CDN."""

    workers: int = 16  # connections at once in all
    per_host: int = 8  # connections at once to one host
    timeout_s: float = 15.0  # per connection attempt and per read
    tries: int = 3  # attempts per URL on a transient failure
    backoff_s: float = 0.5  # first wait between attempts; doubled each time
    max_bytes: int = MAX_FILE_BYTES


@dataclass(frozen=True)
class Fetched:
    """One URL's outcome: its cached file (None when it failed), why it failed, whether it was downloaded now
    (False: unchanged since the last run)."""

    url: str
    file: str | None
    error: str = ""
    downloaded: bool = False


class FetchFailed(Exception):
    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


def cache_name(url: str, content_type: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32] + SUFFIXES.get(content_type, ".img")


class ImageCache:
    """The cache folder: one file per URL and ``cache.json`` (url -> file, ETag, Last-Modified)."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        try:
            record = json.loads((folder / CACHE_RECORD).read_text(encoding="utf-8"))
            self.entries = {url: entry for url, entry in record.items()
                            if isinstance(entry, dict) and (folder / str(entry.get("file", ""))).is_file()}
        except (OSError, ValueError, AttributeError):
            self.entries = {}  # none yet, or unreadable: everything is fetched again

    def validators(self, url: str) -> dict[str, str]:
        entry = self.entries.get(url, {})
        headers = {}
        if entry.get("etag"):
            headers["If-None-Match"] = entry["etag"]
        if entry.get("last_modified"):
            headers["If-Modified-Since"] = entry["last_modified"]
        return headers

    def put(self, url: str, data: bytes, content_type: str, etag: str, last_modified: str) -> str:
        name = cache_name(url, content_type)
        temporary = self.folder / f".{name}.{threading.get_ident()}.part"
        temporary.write_bytes(data)
        os.replace(temporary, self.folder / name)
        with self.lock:
            self.entries[url] = {"file": name, "etag": etag, "last_modified": last_modified}
        return name

    def save(self, keep: set[str]) -> None:
        """Write the record of the URLs in ``keep``; remove the files of every other URL."""
        with self.lock:
            self.entries = {url: entry for url, entry in self.entries.items() if url in keep}
            atomic_write_text(self.folder / CACHE_RECORD, json.dumps(self.entries, indent=0))
            files = {entry["file"] for entry in self.entries.values()}
        for path in self.folder.iterdir():
            if path.name != CACHE_RECORD and path.name not in files:
                path.unlink(missing_ok=True)


def fetch_images(urls: list[str], folder: Path, settings: FetchSettings = FetchSettings(),
                 progress: FetchProgress | None = None) -> dict[str, Fetched]:
    """Fetch every URL into the cache ``folder`` (each once); the outcome of each. The cache keeps exactly
    these URLs afterwards."""
    cache = ImageCache(folder)
    unique = list(dict.fromkeys(urls))
    hosts: dict[str, threading.BoundedSemaphore] = {}
    hosts_lock = threading.Lock()
    counts = {"done": 0, "failed": 0}

    def one(url: str) -> Fetched:
        host = urllib.parse.urlsplit(url).netloc.lower()
        with hosts_lock:
            gate = hosts.setdefault(host, threading.BoundedSemaphore(settings.per_host))
        with gate:
            outcome = _fetch_with_retries(url, cache, settings)
        with hosts_lock:
            counts["done"] += 1
            counts["failed"] += outcome.file is None
            if progress:
                progress(counts["done"], len(unique), counts["failed"])
        return outcome

    with ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="fetch") as pool:
        outcomes = {fetched.url: fetched for fetched in pool.map(one, unique)}
    cache.save({url for url, fetched in outcomes.items() if fetched.file})
    return outcomes


def _fetch_with_retries(url: str, cache: ImageCache, settings: FetchSettings) -> Fetched:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return Fetched(url, None, "not an http(s) URL")
    wait = settings.backoff_s
    for attempt in range(1, settings.tries + 1):
        try:
            return _fetch_once(url, cache, settings)
        except FetchFailed as failure:
            if not failure.transient or attempt == settings.tries:
                tries = f" (after {attempt} tries)" if attempt > 1 else ""
                return Fetched(url, None, f"{failure}{tries}")
        time.sleep(wait)
        wait *= 2
    raise AssertionError("unreachable")


def _fetch_once(url: str, cache: ImageCache, settings: FetchSettings) -> Fetched:
    request = urllib.request.Request(url, headers={"User-Agent": "furniture-search-feed/1", **cache.validators(url)})
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as answer:
            content_type = answer.headers.get_content_type()
            if not content_type.startswith("image/"):
                raise FetchFailed(f"served as {content_type}, not an image")
            declared = answer.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > settings.max_bytes:
                raise FetchFailed(f"too large ({int(declared) / 1e6:.0f} MB; at most {settings.max_bytes / 1e6:.0f} MB)")
            data = answer.read(settings.max_bytes + 1)
            etag, modified = answer.headers.get("ETag", ""), answer.headers.get("Last-Modified", "")
    except urllib.error.HTTPError as error:
        if error.code == 304 and url in cache.entries:
            return Fetched(url, cache.entries[url]["file"])
        raise FetchFailed(f"HTTP {error.code} {error.reason}", transient=error.code in RETRIED_STATUSES) from None
    except http.client.IncompleteRead as error:
        raise FetchFailed(f"truncated: the connection closed after {len(error.partial)} bytes", transient=True) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise FetchFailed(f"could not connect or read ({reason})", transient=True) from None
    if len(data) > settings.max_bytes:
        raise FetchFailed(f"too large (over {settings.max_bytes / 1e6:.0f} MB)")
    problem = _undecodable(data)
    if problem:
        raise FetchFailed(problem)
    return Fetched(url, cache.put(url, data, content_type, etag, modified), downloaded=True)


def _undecodable(data: bytes) -> str:
    """Why the bytes are not an image ("" when they are one): the header is read and the data checked."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as error:  # PIL raises many kinds for damaged data
        return f"not a decodable image ({type(error).__name__}: {str(error)[:80]})"
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:]:  # a JPEG ends with its end marker
        return "truncated: the JPEG data ends early"
    return ""

