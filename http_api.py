"""The HTTP API for shops: a plain POST with an image, JSON back, in the same process as the page.

    curl -F image=@photo.jpg http://127.0.0.1:7860/api/search
    curl -F image=@room.jpg -F regions=true -F k=5 http://127.0.0.1:7860/api/search
    curl -F image=@photo.jpg -F colour=mustard http://127.0.0.1:7860/api/search
    curl http://127.0.0.1:7860/api/items/PRODUCT_ID

``POST /api/search`` answers with the CLI's JSON line (``python -m engine search``), each result with the
URL of its image (and its product page, image source, creator and licence where the manifest has them);
``GET /api/items/{id}`` describes one product; the OpenAPI description is at ``/api/docs``. The limits
are the page's (file size, pixels, result counts); an error is JSON ``{"error": message, "status": code}``
with the message a person can act on. Searches share one slot with the page's (``SearchSlot``), so a
burst queues, and beyond ``MAX_WAITING`` waiting requests is answered "busy" (503) at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from engine.colours import colours_json
from engine.errors import InvalidRequestError, SearchError
from engine.images import MAX_FILE_BYTES, ImageDecodeError
from engine.search import MAX_REGIONS, MAX_RESULTS, SearchEngine, check_colour, parse_count

# Requests that may wait for the search slot; more are told the service is busy.
MAX_WAITING = 16
# Seconds a request waits for the slot before it is told the service is busy.
SLOT_TIMEOUT_S = 30.0
BUSY_MESSAGE = "The search service is busy; try again in a few seconds."


class ServiceUnavailableError(SearchError):
    """The service cannot search right now (the index is loading or broken, or every slot is taken)."""


class SearchSlot:
    """One search at a time for the whole process (page and API): two at once with all cores each would
    spin-wait on each other. At most ``max_waiting`` callers wait; the others get ``ServiceUnavailableError``."""

    def __init__(self, max_waiting: int = MAX_WAITING, timeout_s: float = SLOT_TIMEOUT_S):
        self._slot = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting = 0
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s

    def __enter__(self) -> SearchSlot:
        with self._count_lock:
            if self._waiting >= self.max_waiting:
                raise ServiceUnavailableError(BUSY_MESSAGE)
            self._waiting += 1
        try:
            acquired = self._slot.acquire(timeout=self.timeout_s)
        finally:
            with self._count_lock:
                self._waiting -= 1
        if not acquired:
            raise ServiceUnavailableError(BUSY_MESSAGE)
        return self

    def __exit__(self, *exc_info) -> None:
        self._slot.release()


@dataclass(frozen=True)
class ApiContext:
    """What the API needs from the app: the engine once loaded (else why not), and the shared search slot."""

    engine: Callable[[], SearchEngine | None]
    status: Callable[[], str]
    slot: SearchSlot


def status_code(error: SearchError) -> int:
    """The HTTP status for one of the engine's errors: the request's fault (400, 413) or the service's (503)."""
    if isinstance(error, ImageDecodeError) and "too large" in str(error):
        return 413
    if isinstance(error, (InvalidRequestError, ImageDecodeError)):
        return 400
    return 503


def error_response(message: str, status: int) -> JSONResponse:
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def file_url(path: str) -> str:
    """The URL the app serves a catalogue file at (the catalogue is one of its static paths)."""
    return f"/gradio_api/file={quote(path)}"


def _with_links(results: list[dict], engine: SearchEngine) -> list[dict]:
    """The CLI's result records plus each one's image URL and, where the manifest has them, its product page,
    creator and licence."""
    linked = []
    for result in results:
        item = engine.stored.items[engine.product_rows[result["id"]][0]]
        extra = {"image": file_url(result["path"])}
        extra.update({name: value for name, value in (("url", item.url), ("source_url", item.source_url),
                                                       ("creator", item.creator), ("license", item.license)) if value})
        linked.append({**result, **extra})
    return linked


def create_api(context: ApiContext) -> FastAPI:
    """The FastAPI app holding the API's routes; the page is mounted on it at ``/`` (see ``app.py``)."""
    api = FastAPI(title="Visual furniture search", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)

    @api.exception_handler(SearchError)
    def search_error(request: Request, error: SearchError) -> JSONResponse:
        return error_response(str(error), status_code(error))

    def ready() -> SearchEngine:
        engine = context.engine()
        if engine is None:
            raise ServiceUnavailableError(context.status().lstrip("⏳⚠️ "))
        return engine

    @api.post("/api/search")
    def search(image: UploadFile = File(..., description="the photo (JPEG, PNG, WebP, HEIC ...)"),
               k: str = Form("10", description=f"results per search, 1-{MAX_RESULTS}"),
               category: str = Form("auto", description="auto, all, or a category name"),
               regions: bool = Form(False, description="find the pieces of furniture and search each"),
               max_regions: str = Form("4", description=f"with regions: at most this many, 1-{MAX_REGIONS}"),
               colour: str = Form("", description="same look in this colour first: a name (red, navy ...) or #hex")
               ) -> dict:
        """Search the catalogue with a photo: the CLI's JSON, with result image URLs."""
        engine = ready()
        count = parse_count("k", k, MAX_RESULTS)
        region_count = parse_count("max_regions", max_regions, MAX_REGIONS)
        engine.check_category(category)
        check_colour(colour)
        data = image.file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return error_response(f"the image is too large ({MAX_FILE_BYTES // 1_000_000} MB at most)", 413)
        name = image.filename or "image"
        with context.slot:
            if regions:
                found = engine.search_regions(data, k=count, max_regions=region_count, category=category,
                                              colour=colour)
                line = found.to_json(name)
                for region in line["regions"]:
                    region["results"] = _with_links(region["results"], engine)
            else:
                line = engine.search(data, k=count, category=category, colour=colour).to_json(name)
        line["results"] = _with_links(line["results"], engine)
        return line

    @api.get("/api/items/{product_id}")
    def item(product_id: str) -> dict:
        """One catalogue product: its name, category, links and image URLs."""
        engine = ready()
        rows = engine.product_rows.get(product_id)
        if not rows:
            return error_response(f"no product {product_id!r} in the catalogue", 404)
        first = engine.stored.items[rows[0]]
        return {
            "id": product_id, "name": first.name, "category": first.category, "url": first.url,
            "source_url": first.source_url,
            "creator": first.creator, "license": first.license,
            "colours": colours_json(first.colours),
            "images": [file_url(str(engine.item_path(engine.stored.items[row]))) for row in rows],
        }

    return api
