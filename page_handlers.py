"""The page's event handlers and the state they share: each takes what the browser sends, asks the engine and
answers with what the page shows (``page`` makes the words and pictures). ``app.py`` lays out the page and
wires these to it.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from pathlib import Path

import gradio as gr
from gradio import route_utils
from gradio.data_classes import ImageData
from PIL import Image

import page
from engine.colours import colours_present
from engine.errors import InvalidRequestError, SearchError
from engine.images import full_size, load_image
from engine.requests import MAX_RESULTS, parse_count
from engine.responses import SearchResponse
from engine.search import SearchEngine
from guards import RequestRefused, uploaded_file
from http_api import image_url
from service import AppSettings, CatalogueIndex, InstanceFolders, instance_folders, new_searches

SETTINGS = AppSettings.from_environment()
log = logging.getLogger("app")

# The catalogue's store, opened in the background on start (service.py).
catalogue_index = CatalogueIndex(SETTINGS)
# Page and HTTP API searches take turns in one slot, and memory goes back once both are idle (service.py).
searches = new_searches(SETTINGS.lanes)
_folders: InstanceFolders | None = None


def folders() -> InstanceFolders:
    """This instance's folders, made fresh on first use; Gradio keeps its uploads in ours."""
    global _folders
    if _folders is None:
        _folders = instance_folders()
        os.environ["GRADIO_TEMP_DIR"] = str(_folders.uploads)
    return _folders


def public_root(request: gr.Request | None) -> str:
    """The address the shopper's browser reaches the app at (behind a proxy too, as Gradio finds it), for the
    URLs of the pictures the page shows: served by id, never by a path on the server."""
    if request is None or getattr(request, "request", None) is None:
        return ""
    raw = request.request
    try:
        route = route_utils.get_api_call_path(raw)
    except ValueError:
        route = raw.url.path
    return route_utils.get_root_url(raw, route, raw.scope.get("root_path") or None)


class PhotoInput(gr.Image):
    """An image input that hands the uploaded file over untouched, once checked to be one the page received.

    gr.Image would open it with PIL first, turning a damaged upload into a generic
    error; engine.images decodes it instead (fast draft decoding, clear messages).
    """

    is_template = True  # Gradio's convention for subclasses: render with the parent's (gr.Image) frontend

    def preprocess(self, payload):
        if payload is None or (payload.url or "").startswith("data:") and not payload.path:
            return super().preprocess(payload)
        return checked_upload(payload.path)


def checked_upload(path: str | None) -> str:
    """A photo the page received: a regular file in this instance's uploads, or the page's error (guards.py
    refuses others before Gradio sees them; this covers a record Gradio passes on unchecked)."""
    try:
        return uploaded_file(path, folders().uploads)
    except RequestRefused as refused:
        raise gr.Error(str(refused), title="Not an uploaded photo") from None


class PictureOutput(gr.Image):
    """An image output given as the URL the app serves it at (``/pictures/...``): no server path reaches the
    page, and Gradio neither copies nor fetches it."""

    is_template = True

    def postprocess(self, value):
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return ImageData(path=value, url=value, orig_name=value.rsplit("/", 1)[-1])
        return super().postprocess(value)


class CountInput(gr.Slider):
    """A slider whose value reaches the handler as sent: ``result_count`` checks it and says what is wrong
    (Gradio's own check would answer an API caller's "abc" with a generic error)."""

    is_template = True

    def preprocess(self, payload):
        return payload


def ready_engine() -> SearchEngine:
    if catalogue_index.engine is None:
        raise gr.Error(catalogue_index.status().lstrip("⏳⚠️ "), title="Not ready yet")
    return catalogue_index.engine


def handler(title: str):
    """Decorator for the page's search handlers: the engine's ``SearchError`` becomes the page's error box
    with its message; searches take turns with the API's, and memory goes back once all are idle."""

    def decorate(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                with searches.turn():
                    return function(*args, **kwargs)
            except SearchError as error:
                raise gr.Error(str(error), title=title) from None

        return run

    return decorate


def result_count(k) -> int:
    """The "Results" value as a whole number; the page API may send anything (a float, text, None)."""
    return parse_count("Results", k, MAX_RESULTS)


def page_file(image: Image.Image, stem: str) -> str:
    """Save ``image`` as a JPEG in the instance's pictures folder and return its path.

    Done here, in the handler's worker thread: handed a PIL image, Gradio encodes it in its
    event loop, and the whole page stopped answering while it did (python -m benchmarks.load).
    Pictures older than the upload lifetime are removed on the way.
    """
    folder = folders().pictures
    now = time.time()
    for old in folder.glob("*.jpg"):
        try:
            if now - old.stat().st_mtime > SETTINGS.upload_lifetime_s:
                old.unlink()
        except OSError:
            pass  # another worker removed it first
    path = folder / f"{stem}-{uuid.uuid4().hex}.jpg"
    image.save(path, quality=85)
    return str(path)


def picture(image: Image.Image, stem: str, request: gr.Request | None) -> PictureOutput:
    """A picture drawn for the page, as the URL the browser gets it at (served by ``http_api``)."""
    return PictureOutput(value=f"{public_root(request)}/pictures/{Path(page_file(image, stem)).name}", visible=True)


# How many page outputs ``render`` fills: the label, summary, results, result rows, colour chips, vectors, subject.
RENDERED = 7


def render(response: SearchResponse, request: gr.Request | None, mode: str, subject: str = "your photo",
           new_colours: bool = True) -> tuple:
    """A response as the page shows it: the category bars, the summary, the results (by image id),
    their catalogue rows, the colour chips (offered afresh for a new search, kept for a colour refinement),
    the embeddings searched (to refine again) and what the results are for."""
    confidences = dict(sorted(response.probabilities.items(), key=lambda kv: -kv[1])[:3])
    catalogue = ready_engine().stored.images
    root = public_root(request)
    items = [(root + image_url(catalogue[r.row].digest), page.caption(r, response.colour)) for r in response.results]
    chips = gr.Radio(value=response.colour or page.ANY_COLOUR)
    if new_colours:
        names = colours_present([r.colours for r in response.results])
        chips = gr.Radio(choices=[page.ANY_COLOUR, *names], value=page.ANY_COLOUR, visible=bool(names))
    return (confidences, page.summary(response, mode, subject), items,
            [r.row for r in response.results], chips, response.vectors, subject)


# How many outputs come before ``render``'s in a photo search: the marked photo, the piece chips, their embeddings
# and their boxes.
PIECE_OUTPUTS = 4


def no_pieces() -> tuple:
    """The outputs of a photo shown without pieces: the marked photo and the piece chips hidden, no piece kept."""
    return gr.Image(visible=False), gr.Radio(choices=[page.WHOLE_PHOTO], value=page.WHOLE_PHOTO, visible=False), [], []


@handler("Cannot search this image")
def search_photo(image_path: str | None, k: int, category: str, where: str = "", request: gr.Request = None):
    """Search the uploaded / captured photo (among the products that meet the page's filters, ``where``), in one
    round trip: a scene by its pieces, a product shot whole.

    For a scene the page gets the photo back at display size only, with the pieces drawn on it, and the main
    piece's results; each piece's embedding and box stay here for when it is picked.
    """
    if not image_path:
        raise gr.Error("Add a photo first: upload one, take one with the camera, or paste one.", title="No photo")
    found = ready_engine().search_scene_or_piece(image_path, k=result_count(k), category=category, where=where)
    if isinstance(found, SearchResponse):  # a product shot, searched whole
        return (*no_pieces(), *render(found, request, category))
    # The photo as region search decoded it (its own size kept for the boxes), shrunk for the page.
    shown = found.photo
    if max(shown.size) > page.DISPLAY_SIDE:  # marked_photo draws on a copy: the photo is copied only to shrink it
        shown = shown.copy()
        shown.thumbnail((page.DISPLAY_SIDE, page.DISPLAY_SIDE))
    scale = shown.width / full_size(found.photo)[0]
    # Each piece is named by what its search took it for, so that its label and its results agree.
    labels = page.region_labels([m.response.category for m in found.matches])
    boxes = [tuple(round(value * scale) for value in m.region.box) for m in found.matches]
    return (
        picture(page.marked_photo(shown, boxes, labels), "regions", request),
        gr.Radio(choices=[*labels, page.WHOLE_PHOTO], value=labels[0], visible=True),
        [m.region.embedding for m in found.matches],
        list(zip(boxes, labels)),
        *render(found.matches[0].response, request, category, f"the {labels[0]}"),
    )


def photo_in_place(region_boxes: list) -> tuple:
    """With pieces found, the photo with its pieces drawn takes the upload's place (one photo on the page, as
    visual search apps show it); a button brings the upload back for another photo."""
    scene = bool(region_boxes)
    return gr.Image(visible=not scene), gr.Button(visible=scene)


def new_photo() -> tuple:
    """The upload again, empty, in place of the photo with its pieces."""
    return (gr.Image(value=None, visible=True), gr.Image(visible=False), gr.Radio(visible=False),
            gr.Button(visible=False), [], [])


def picked_box(region_boxes: list, selected: gr.SelectData):
    """The piece whose box was clicked on the marked photo: the smallest box around the click."""
    x, y = selected.index if isinstance(selected.index, (list, tuple)) else (-1, -1)
    around = [(box, label) for box, label in region_boxes if box[0] <= x <= box[2] and box[1] <= y <= box[3]]
    if not around:
        return gr.skip()
    return min(around, key=lambda pair: (pair[0][2] - pair[0][0]) * (pair[0][3] - pair[0][1]))[1]


@handler("Cannot search this piece")
def search_region(image_path: str | None, region_embeddings: list, region_boxes: list, choice: str, k: int,
                  category: str, where: str = "", request: gr.Request = None):
    """Search the piece picked in the list (or by clicking the marked photo), or the whole photo.

    A piece is searched with the embedding its region search used, so it shows what it showed first
    (and what the CLI prints).
    """
    if not image_path or not region_embeddings or not choice:
        return (gr.skip(),) * RENDERED
    engine = ready_engine()
    if choice == page.WHOLE_PHOTO:
        return render(engine.search(image_path, k=result_count(k), category=category, where=where), request,
                      category, "your whole photo")
    labels = [label for _, label in region_boxes]
    if choice not in labels or len(labels) != len(region_embeddings):
        raise InvalidRequestError(f"no piece {choice!r} in this photo; pick one of the pieces shown")
    response = engine.search_vector(region_embeddings[labels.index(choice)], k=result_count(k), category=category,
                                    where=where)
    return render(response, request, category, f"the {choice}")


def crop_photo(image_path: str | None, crop_open: bool, request: gr.Request = None):
    """The photo to crop (upright, at display size) and no corner tapped yet; made only while "Crop by hand" is
    open (a copy of a 12 MP photo would otherwise be made, beside the search, for every upload)."""
    if not image_path or not crop_open:
        return gr.Image(visible=False), {}
    try:
        shown = load_image(checked_upload(image_path), min_side=page.DISPLAY_SIDE, max_side=page.DISPLAY_SIDE)
    except SearchError:
        return gr.Image(visible=False), {}
    return picture(shown, "crop", request), {"size": list(shown.size), "points": []}


def crop_corner(image_path: str | None, crop: dict, selected: gr.SelectData, request: gr.Request = None):
    """A tap on the photo to crop: the first corner, the second (the box is drawn), or a new first corner."""
    if not image_path or not crop or not isinstance(selected.index, (list, tuple)):
        return gr.skip(), gr.skip()
    shown = load_image(checked_upload(image_path), min_side=page.DISPLAY_SIDE, max_side=page.DISPLAY_SIDE)
    points = crop["points"] if len(crop["points"]) < 2 else []
    points = [*points, [int(selected.index[0]), int(selected.index[1])]]
    return picture(page.crop_preview(shown, points), "crop", request), {**crop, "points": points}


@handler("Cannot search this crop")
def search_crop(image_path: str | None, crop: dict, k: int, category: str, where: str = "",
                request: gr.Request = None):
    """Search exactly the part of the photo between the two corners tapped."""
    box = page.crop_box((crop or {}).get("points", []))
    if not image_path or box is None:
        raise gr.Error("Open Crop by hand, then tap two opposite corners of the piece on your photo.", title="No crop")
    if box[2] - box[0] < 8 or box[3] - box[1] < 8:
        raise InvalidRequestError("The crop is too small: tap two corners further apart.")
    engine = ready_engine()
    photo = load_image(image_path, max_side=engine.settings.search_max_side)
    scale = photo.width / crop["size"][0]
    cropped = photo.crop(tuple(round(value * scale) for value in box))
    return render(engine.search(cropped, k=result_count(k), category=category, where=where), request, category,
                  "your crop")


@handler("Cannot refine by this colour")
def refine_by_colour(vectors: list, colour: str | None, k: int, category: str, subject: str, where: str = "",
                     request: gr.Request = None):
    """Search the embeddings of the results shown again, the same look in the colour picked first
    ("Any colour": as searched)."""
    if not vectors:
        raise InvalidRequestError("Search a photo first, then pick one of the colours found among the results.")
    return search_again(vectors, colour, k, category, subject, where, request)


@functools.lru_cache(maxsize=1)
def _shop_filters(engine: SearchEngine) -> page.ShopFilters:
    return page.shop_filters(engine.stored.images)


def store_filters() -> page.ShopFilters:
    """The filters the loaded store's shop fields allow, worked out once per store (not on every page load)."""
    engine = catalogue_index.engine
    return _shop_filters(engine) if engine else page.ShopFilters()


def set_filters(max_price: float | None, in_stock: bool, brand: str | None) -> str:
    """The filter the page's controls ask for (``page.filter_where``), in the store's price currency."""
    return page.filter_where(max_price, in_stock, brand, store_filters().currency)


@handler("Cannot filter these results")
def refilter(vectors: list, colour: str | None, k: int, category: str, subject: str, where: str = "",
             request: gr.Request = None):
    """The results shown, searched again among the products that meet the filters now set (nothing to do before
    a search)."""
    if not vectors:
        return (gr.skip(),) * RENDERED
    return search_again(vectors, colour, k, category, subject, where, request)


def search_again(vectors: list, colour: str | None, k: int, category: str, subject: str, where: str,
                 request: gr.Request | None) -> tuple:
    """The embeddings searched last, searched again with the colour and filters now chosen."""
    chosen = None if colour in (None, "", page.ANY_COLOUR) else colour
    response = ready_engine().search_vectors(vectors, k=result_count(k), category=category, colour=chosen,
                                             where=where)
    return render(response, request, category, subject or "your photo", new_colours=False)


@handler("Cannot search this result")
def more_like_this(image_path: str | None, rows: list[int], k: int, category: str, where: str = "",
                   selected: gr.EventData = None, request: gr.Request = None):
    """Search again with a picked result's catalogue photo; show the product, and why it matched the photo
    searched before (heat maps, ``engine.explain``). The shopper's photo stays where it is.

    ``selected`` is the click. Gradio fills it in only for a plain event-data hint (not ``... | None``), and
    builds a ``SelectData`` from it by subscripting the data, which an API call without a click does not
    have; hence the raw ``EventData`` and its data read here.
    """
    index = (getattr(selected, "_data", None) or {}).get("index")
    if not isinstance(index, int) or not 0 <= index < len(rows or []):
        raise InvalidRequestError("Click one of the results shown to search for more like it.")
    engine = ready_engine()
    item = engine.stored.images[rows[index]]
    why = gr.Image(visible=False)
    if image_path:
        why = picture(page.why_picture(engine.explain_match(image_path, item.row)), "why", request)
    response = engine.search_item(item.row, k=result_count(k), category=category, where=where)
    return (gr.Markdown(page.product_details(item, explained=bool(image_path)), visible=True), why,
            *render(response, request, category, f"the picked {item.name}"))
