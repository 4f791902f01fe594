"""The HTTP API for shops: a plain POST with an image, JSON back, in the same process as the page.

    curl -F image=@photo.jpg http://127.0.0.1:7860/api/search
    curl -F image=@room.jpg -F k=5 http://127.0.0.1:7860/api/search      # a scene: its pieces, each searched
    curl -F image=@room.jpg -F regions=false http://127.0.0.1:7860/api/search  # the whole photo only
    curl -F image=@photo.jpg -F colour=mustard http://127.0.0.1:7860/api/search
    curl -F image=@photo.jpg -F 'where=price<300; availability=in_stock' http://127.0.0.1:7860/api/search
    curl http://127.0.0.1:7860/api/items/PRODUCT_ID
    curl -o picture.jpg http://127.0.0.1:7860/api/images/IMAGE_ID

``POST /api/search`` answers with the CLI's JSON line (``python -m engine search``), each result with its
image's path in the catalogue and the URL of its image (and its product page, image source, creator and
licence where the manifest has them, and the shop's price, sale price, availability, brand, colour name and
product type where its feed or manifest gives them); ``GET /api/items/{id}`` describes one product; ``GET /api/images/{id}``
is one catalogue image, by the id the other answers give. The OpenAPI description is at ``/api/docs``.
The limits are the page's (file size, pixels, result counts); every error, a malformed request's too, is
JSON ``{"error": message, "status": code}`` with a message a person can act on. Searches take turns with
the page's (``service.Searches``): a burst queues, and beyond ``MAX_WAITING`` waiting requests is answered
"busy" (503) at once.
"""

from __future__ import annotations

import asyncio
import html
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from engine.colours import colours_json
from engine.filters import parse_where
from engine.errors import InvalidRequestError, SearchError, ServiceUnavailableError, TimedOutError, TooLargeError
from engine.images import MAX_FILE_BYTES
from engine.requests import check_colour, MAX_REGIONS, MAX_RESULTS, parse_count, parse_regions
from engine.responses import RegionSearch, SearchResponse
from engine.search import SearchEngine
from engine.shop_fields import SHOP_FIELDS
from service import Searches

# Seconds a search request may take, waiting for its turn included; a slower one is answered, not waited for.
REQUEST_TIMEOUT_S = 60.0
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
               ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
               ".heic": "image/heic", ".heif": "image/heif", ".avif": "image/avif"}
FIELDS = {
    "image": "the photo (JPEG, PNG, WebP, HEIC ...), as a file",
    "k": f"results per search, 1-{MAX_RESULTS} (default 10)",
    "category": "auto (default), all, or a category name",
    "regions": "auto (default): a scene's pieces found and each searched, a product shot searched whole; "
               "true: always the pieces; false: always the whole photo",
    "max_regions": f"with regions: at most this many, 1-{MAX_REGIONS} (default 4)",
    "colour": "same look in this colour first: a name (red, navy ...) or #hex",
    "where": "only products that meet it: price<300; availability=in_stock; brand=NAME (conditions joined by ;)",
}
FORM_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"],
    "properties": {name: {"type": "string", "format": "binary", "description": text} if name == "image"
                   else {"type": "string", "description": text} for name, text in FIELDS.items()}}}}}}


@dataclass(frozen=True)
class ApiContext:
    """What the API needs from the app: the engine once loaded (else why not), the shared searches, and the
    folder of the pictures drawn for the page (served at ``/pictures/{name}``)."""

    engine: Callable[[], SearchEngine | None]
    status: Callable[[], str]
    searches: Searches
    pictures: Path | None = None


@dataclass(frozen=True)
class SearchRequest:
    """A search form, parsed strictly: every field checked, none unknown, none given twice."""

    image: bytes
    name: str
    k: int = 10
    category: str = "auto"
    regions: str = "auto"  # one of REGIONS
    max_regions: int = 4
    colour: str = ""
    where: str = ""


async def parse_search_form(request: Request) -> SearchRequest:
    """The search form, or ``InvalidRequestError`` saying which field is wrong and how."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequestError("send a multipart form with the photo in the field 'image' "
                                  "(curl -F image=@photo.jpg .../api/search)")
    form = await request.form(max_files=1, max_fields=len(FIELDS))
    names = [name for name, _ in form.multi_items()]
    unknown = sorted(set(names) - set(FIELDS))
    if unknown:
        raise InvalidRequestError(f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidRequestError(f"the field {repeated[0]!r} is given more than once")
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise InvalidRequestError("the photo is missing: send it as a file in the field 'image' (curl -F image=@photo.jpg)")
    texts = {name: form[name] for name in names if name != "image"}
    if any(not isinstance(value, str) for value in texts.values()):
        raise InvalidRequestError("only 'image' is a file; the other fields are text")
    data = await image.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise TooLargeError(f"the image is too large ({MAX_FILE_BYTES // 1_000_000} MB at most)")
    parsed = SearchRequest(
        image=data, name=image.filename or "image",
        k=parse_count("k", texts.get("k", "10"), MAX_RESULTS),
        category=texts.get("category", "auto"),
        regions=parse_regions(texts.get("regions", "auto")),
        max_regions=parse_count("max_regions", texts.get("max_regions", "4"), MAX_REGIONS),
        colour=texts.get("colour", ""),
        where=texts.get("where", ""),
    )
    check_colour(parsed.colour)
    parse_where(parsed.where)
    return parsed


def error_response(message: str, status: int) -> JSONResponse:
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def image_url(image_id: str) -> str:
    """The URL the API serves a catalogue image at, by its id (no server path in it)."""
    return f"/api/images/{image_id}"


def _linked(response: SearchResponse, records: list[dict], engine: SearchEngine) -> list[dict]:
    """The CLI's result records with each image's path in the catalogue (not on the server), its URL and,
    where the manifest has them, its product page, creator and licence."""
    linked = []
    for result, record in zip(response.results, records):
        item = engine.stored.images[result.row]
        extra = {"path": item.path, "image": image_url(item.digest)}
        extra.update({name: value for name, value in (("url", item.url), ("source_url", item.source_url),
                                                       ("creator", item.creator), ("license", item.license)) if value})
        linked.append({**record, **extra})
    return linked


def item_json(engine: SearchEngine, product_id: str, rows: list[int]) -> dict:
    """One product as ``/api/items/{id}`` describes it: from its first image's record, with every image's URL."""
    first = engine.stored.images[rows[0]]
    return {
        "id": product_id, "name": first.name, "category": first.category, "url": first.url,
        "source_url": first.source_url, "creator": first.creator, "license": first.license,
        **{name: getattr(first, name) for name in SHOP_FIELDS if getattr(first, name)},
        "colours": colours_json(first.colours),
        "images": [image_url(engine.stored.images[row].digest) for row in rows],
    }


def search_line(engine: SearchEngine, query: SearchRequest, searches: Searches) -> dict:
    """Run one search in the shared slot; the CLI's JSON line, with links. A scene's line has its pieces
    ("regions"), each with its results, and the main piece's results; a product shot's the whole photo's."""
    engine.check_category(query.category)
    options = {"k": query.k, "category": query.category, "colour": query.colour, "where": query.where}
    with searches.turn():
        found = engine.search_scene_or_piece(query.image, max_regions=query.max_regions, regions=query.regions,
                                             **options)
    line = found.to_json(query.name)
    if isinstance(found, RegionSearch):
        for match, region in zip(found.matches, line["regions"]):
            region["results"] = _linked(match.response, region["results"], engine)
        response = found.matches[0].response
    else:
        response = found
    line["results"] = _linked(response, line["results"], engine)
    return line


def served_file(path: Path, media_type: str) -> FileResponse:
    """A regular file as a response; anything else (gone, a folder, a device, a pipe) is a 404."""
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError:
        regular = False
    if not regular:
        raise HTTPException(404)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})


def docs_page(schema: dict) -> str:
    """The API's description as one self-contained page (Swagger UI would load its scripts from a CDN, and show
    nothing offline): each route, what it does, its fields, and an example."""
    sections = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            fields = (operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
                      .get("schema", {}).get("properties", {}))
            rows = "".join(f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(field.get('description', ''))}"
                           "</td></tr>" for name, field in fields.items())
            example = (f"curl -F image=@photo.jpg http://HOST{path}" if fields
                       else f"curl http://HOST{path}")
            sections.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                            f"<p>{html.escape(operation.get('description') or operation.get('summary', ''))}</p>"
                            + (f"<table>{rows}</table>" if rows else "") + f"<pre>{html.escape(example)}</pre>")
    errors = ("<p>Every error is JSON <code>{\"error\": message, \"status\": code}</code>: 400 a field is wrong, "
              "404 nothing by that id, 413 too large, 503 not ready or busy (retry after the "
              "<code>Retry-After</code> seconds). The machine-readable description: "
              "<a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>")
    style = ("body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1f2937}"
             "table{border-collapse:collapse}td{border:1px solid #d1d5db;padding:4px 8px;vertical-align:top}"
             "pre{background:#f3f4f6;padding:8px;overflow-x:auto}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(schema['info']['title'])}"
            f" – HTTP API</title><style>{style}</style></head><body><h1>{html.escape(schema['info']['title'])}: HTTP API"
            f"</h1>{errors}{''.join(sections)}</body></html>")


def add_error_handlers(api: FastAPI) -> None:
    """Every error of the API in one shape; the engine's errors carry their own status."""

    @api.exception_handler(SearchError)
    def search_error(request: Request, error: SearchError) -> JSONResponse:
        return error_response(str(error), error.http_status)

    @api.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        where = ", ".join(".".join(map(str, e.get("loc", ()))) + f": {e.get('msg')}" for e in error.errors())
        return error_response(f"malformed request ({where})", 400)

    @api.exception_handler(HTTPException)
    def http_error(request: Request, error: HTTPException) -> JSONResponse:
        messages = {404: f"nothing at {request.url.path}", 405: f"{request.method} is not allowed here"}
        return error_response(messages.get(error.status_code, str(error.detail)), error.status_code)


def create_api(context: ApiContext) -> FastAPI:
    """The FastAPI app holding the API's routes; the page is mounted on it at ``/`` (see ``app.py``)."""
    api = FastAPI(title="Visual furniture search", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    add_error_handlers(api)

    def ready() -> SearchEngine:
        engine = context.engine()
        if engine is None:
            raise ServiceUnavailableError(context.status().lstrip("⏳⚠️ "))
        return engine

    @api.post("/api/search", openapi_extra=FORM_SCHEMA)
    async def search(request: Request) -> dict:
        """Search the catalogue with a photo: the CLI's JSON, with each result's image URL."""
        engine = ready()
        query = await parse_search_form(request)
        try:
            return await asyncio.wait_for(run_in_threadpool(search_line, engine, query, context.searches),
                                          REQUEST_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise TimedOutError(f"the search took longer than {REQUEST_TIMEOUT_S:.0f} s; try again shortly") from None

    @api.get("/api/items/{product_id}")
    def item(product_id: str) -> dict:
        """One catalogue product: its name, category, links, colours and image URLs."""
        engine = ready()
        rows = engine.product_rows.get(product_id)
        if not rows:
            return error_response(f"no product {product_id!r} in the catalogue", 404)
        return item_json(engine, product_id, rows)

    @api.get("/api/images/{image_id}")
    def image(image_id: str) -> FileResponse:
        """One catalogue image, by the id in a search result's or an item's ``image`` URL."""
        engine = ready()
        row = engine.image_rows.get(image_id)
        if row is None:
            return error_response(f"no image {image_id!r} in the catalogue", 404)
        path = engine.item_path(engine.stored.images[row])
        return served_file(path, IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream"))

    @api.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(api.openapi()))

    if context.pictures is not None:
        @api.get("/pictures/{name}", include_in_schema=False)
        def picture(name: str) -> FileResponse:
            """A picture drawn for the page (the photo with its boxes, the "why" picture), by its random name."""
            if not name.endswith(".jpg") or "/" in name or name.startswith("."):
                raise HTTPException(404)
            return served_file(context.pictures / name, "image/jpeg")

    return api
