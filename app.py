"""Gradio app: photograph a piece of furniture, get the most similar catalogue products.

Run with ``python app.py`` (port 7860; ``GRADIO_SERVER_NAME=0.0.0.0`` to listen on
all interfaces). ``FURNITURE_CATALOGUE`` and ``FURNITURE_STORE`` point it at another
catalogue and index folder. All logic lives in ``engine``; this file only wires
it to the page, and mounts the page on the HTTP API (``http_api``: ``POST /api/search``).
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import time
import uuid
from pathlib import Path

import gradio as gr
import uvicorn
from gradio import route_utils
from gradio.data_classes import FileData, ImageData
from PIL import Image, ImageDraw, ImageFont

from engine.colours import NAMED_COLOURS, colours_present, rgb_to_hex
from engine.errors import InvalidRequestError, SearchError
from guards import Guard, Server, uploaded_file, RequestRefused
from engine.images import MAX_FILE_BYTES, full_size, load_image
from engine.explain import MatchExplanation, heat_overlay
from engine.requests import MAX_RESULTS, parse_count
from engine.responses import SearchResponse
from engine.search import REGION_DECODE_SIDE, SearchEngine
from http_api import ApiContext, create_api, image_url
from service import AppSettings, CatalogueIndex, InstanceFolders, instance_folders, limit_heap_growth, new_searches

ROOT = Path(__file__).resolve().parent
SETTINGS = AppSettings.from_environment()
EXAMPLES_DIR = ROOT / "benchmarks" / "queries"
# Photos sent back to the page are at most this size: the marked photo and the crop editor show them small.
DISPLAY_SIDE = 1024
CROP_SIDE = 1600  # the hand-crop editor's copy: more pixels, since the crop is searched
log = logging.getLogger("app")

HOW_IT_WORKS = """
**How it works.** Your photo is decoded (phone orientation applied, HEIC supported) and
shrunk to the network's input size. An ImageNet-pretrained EfficientNet-Lite turns it into
a 1280-number description of its look. A small classifier trained on the catalogue predicts
the category; then the most similar catalogue photos of that category are found with a
cosine vector index (usearch). When the category is unclear the runner-up, or every
category, is searched too. Several photos of one product count once, by its best photo.
Click a result to search for more like it; the page then also shows why it matched your photo:
the parts of each image whose features look most like the other image as a whole are painted warm
(what the search saw as similar, not a guarantee that those parts are the same).

**Same look, other colour.** Each catalogue image's product colours (its pixels that are not the
backdrop, grouped into a few colours) are found when the catalogue is indexed. The chips above the
results are the colours among them; picking one ranks the 50 products nearest in look by look plus
how much of each is that colour.

**Several pieces in one photo.** A small detector trained on real photos (COCO) boxes the
chairs, sofas, beds and tables; the search above also searches the largest of them on their own.
For the boxes shown under your photo, the embedding network, run once on a larger copy, fills in
what the detector does not know (lamps, pieces it missed): windows whose cells stand out from
their surroundings and look like the catalogue, ranked by a small trained scorer. Each box is
searched on its own; the best one is shown first and you can pick another. A photo of one
product filling the frame, or on a plain background, is searched whole.
"""

WHOLE_PHOTO = "Whole photo"
ANY_COLOUR = "Any colour"


class PhotoInput(gr.Image):
    """An image input that hands the uploaded file over untouched.

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


# How many page outputs ``render`` fills: the label, summary, results, result rows, colour chips, vectors.
RENDERED = 6


def render(response: SearchResponse, root: str, new_colours: bool = True) -> tuple:
    """Turn a response into the page's label, summary, result thumbnails, result rows, colour chips and the
    embeddings searched (kept for refining by colour). The chips are the colours among the results, offered
    afresh for a new search (``new_colours``), kept when these results are a colour refinement. Thumbnails are
    addressed from ``root`` (``public_root``) by the image's id."""
    confidences = dict(sorted(response.probabilities.items(), key=lambda kv: -kv[1])[:3])
    searched = "all categories" if response.searched == ["all"] else ", ".join(response.searched)
    lines = [f"**Predicted: {response.category}** ({response.probabilities[response.category]:.0%}) · searched {searched}"]
    if not response.close_match:
        lines.append("**No close match in this catalogue.** These are the nearest items, but they do not look alike.")
    lines += [f"- {note}" for note in response.notes if not note.startswith("no close match")]
    if response.colour:
        lines.append(f"- refined by colour: the same look in {response.colour} first")
    catalogue = ready_engine().stored.images
    items = [(root + image_url(catalogue[r.row].digest), f"{r.name} · {r.category} · {r.score:.2f}")
             for r in response.results]
    # The colour is set again for a refinement: the region search, run just after a search, may have reset it.
    chips = gr.Radio(value=response.colour or ANY_COLOUR)
    if new_colours:
        names = colours_present([r.colours for r in response.results])
        chips = gr.Radio(choices=[ANY_COLOUR, *names], value=ANY_COLOUR, visible=bool(names))
    return confidences, "\n".join(lines), items, [r.row for r in response.results], chips, response.vectors


# The catalogue's store, opened in the background on start (service.py).
catalogue_index = CatalogueIndex(SETTINGS)
# Page and HTTP API searches take turns in one slot, and memory goes back once both are idle (service.py).
searches = new_searches()
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


def handler(title: str):
    """Decorator for the page's search handlers: the engine's ``SearchError`` becomes the page's error box
    with its message; the memory searches freed goes back to the system once the page is idle."""

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


@handler("Cannot search this image")
def search_photo(image_path: str | None, k: int, category: str, request: gr.Request = None):
    """Search the uploaded / captured photo."""
    if not image_path:
        raise gr.Error("Add a photo first: upload one, take one with the camera, or paste one.", title="No photo")
    return render(ready_engine().search(image_path, k=result_count(k), category=category), public_root(request))


def region_label(number: int, category: str, confidence: float) -> str:
    return f"{number}. {category} ({confidence:.0%})"


# Colours of the region boxes, in the order of the regions (best first).
BOX_COLOURS = ((230, 60, 60), (40, 160, 80), (60, 110, 230), (230, 150, 20), (160, 60, 200), (20, 170, 190))


def page_file(image: Image.Image, stem: str, folder: Path | None = None) -> str:
    """Save ``image`` as a JPEG in ``folder`` (the instance's pictures by default) and return its path.

    Done here, in the handler's worker thread: handed a PIL image, Gradio encodes it in its
    event loop, and the whole page stopped answering while it did (python -m benchmarks.load).
    Pictures older than the upload lifetime are removed on the way.
    """
    folder = folder or folders().pictures
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


def picture_url(root: str, path: str) -> str:
    """Where the page's browser gets a picture drawn for it (served by ``http_api`` from the pictures folder)."""
    return f"{root}/pictures/{Path(path).name}"


def marked_photo(photo: Image.Image, boxes: list[tuple[int, int, int, int]], labels: list[str]) -> Image.Image:
    """The photo with each region's box and label drawn on it."""
    marked = photo.copy()
    draw = ImageDraw.Draw(marked)
    width = max(2, round(max(marked.size) / 250))
    font = ImageFont.load_default(size=max(12, round(max(marked.size) / 40)))
    for i, (box, label) in reversed(list(enumerate(zip(boxes, labels)))):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        draw.rectangle(box, outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((box[0] + width, box[1] + width), label, font=font)
        draw.rectangle((left - 3, top - 2, right + 3, bottom + 2), fill=colour)
        draw.text((box[0] + width, box[1] + width), label, fill="white", font=font)
    return marked


@handler("Cannot find the furniture in this photo")
def find_regions(image_path: str | None, k: int, category: str, request: gr.Request = None):
    """Find the pieces of furniture in the photo; search the best one, unless it is a product shot.

    Runs after the whole-photo search; leaves its results alone for a product shot. The page gets the
    photo back at display size only, with the boxes drawn on it; each region's embedding and box stay
    here for when it is picked.
    """
    hidden = (gr.Image(visible=False), gr.Radio(choices=[WHOLE_PHOTO], value=WHOLE_PHOTO, visible=False), [], [])
    unchanged = (gr.skip(),) * RENDERED
    engine = catalogue_index.engine
    if not image_path or engine is None:
        return (*hidden, *unchanged)
    try:
        # Decoded once, at the size region search works at; it keeps the photo's own size for the boxes.
        photo = load_image(image_path, min_side=REGION_DECODE_SIDE, max_side=engine.settings.region_max_side)
        found = engine.search_regions(photo, k=result_count(k), category=category)
    except SearchError:
        return (*hidden, *unchanged)
    if found.product_shot:
        return (*hidden, *unchanged)
    shown = photo.copy()
    shown.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
    scale = shown.width / full_size(photo)[0]
    labels = [region_label(i, m.region.category, m.region.confidence) for i, m in enumerate(found.matches, 1)]
    boxes = [tuple(round(value * scale) for value in m.region.box) for m in found.matches]
    return (
        PictureOutput(value=picture_url(public_root(request), page_file(marked_photo(shown, boxes, labels), "regions")),
                      visible=True),
        gr.Radio(choices=[*labels, WHOLE_PHOTO], value=labels[0], visible=True),
        [m.region.embedding for m in found.matches],
        list(zip(boxes, labels)),
        *render(found.matches[0].response, public_root(request)),
    )


def picked_box(region_boxes: list, selected: gr.SelectData):
    """The list entry of the box clicked on the marked photo: the smallest box around the click."""
    x, y = selected.index if isinstance(selected.index, (list, tuple)) else (-1, -1)
    around = [(box, label) for box, label in region_boxes if box[0] <= x <= box[2] and box[1] <= y <= box[3]]
    if not around:
        return gr.skip()
    return min(around, key=lambda pair: (pair[0][2] - pair[0][0]) * (pair[0][3] - pair[0][1]))[1]


@handler("Cannot search this region")
def search_region(image_path: str | None, region_embeddings: list, choice: str, k: int, category: str,
                  request: gr.Request = None):
    """Search the region picked in the list (or by clicking the marked photo), or the whole photo.

    A region is searched with the embedding its region search used, so it shows what it showed first
    (and what the CLI prints).
    """
    if not image_path or not region_embeddings or not choice:
        return (gr.skip(),) * RENDERED
    engine = ready_engine()
    if choice == WHOLE_PHOTO:
        return render(engine.search(image_path, k=result_count(k), category=category), public_root(request))
    number = choice.split(".", 1)[0]
    if not number.isdigit() or not 1 <= int(number) <= len(region_embeddings):
        raise InvalidRequestError(f"no region {choice!r} in this photo; pick one of the boxes shown")
    return render(engine.search_vector(region_embeddings[int(number) - 1], k=result_count(k), category=category),
                  public_root(request))


def photo_for_crop(image_path: str | None, editor_open: bool = True):
    """The current photo, upright and at display size, as the hand-crop editor's background; only while the
    editor is open (its copy of a 12 MP photo would otherwise be made, beside the search, for every upload)."""
    if not image_path or not editor_open:
        return None
    try:
        # In the uploads: it comes back from the editor as an input, which must be a file the page received.
        return page_file(load_image(image_path, min_side=DISPLAY_SIDE, max_side=CROP_SIDE), "crop", folders().uploads)
    except SearchError:
        return None


class CropEditor(gr.ImageEditor):
    """An image editor whose images reach the handler as files, decoded by engine.images.

    Gradio's editor would open them with PIL itself: no pixel limit of ours, and a damaged
    file would give Gradio's generic error instead of a message saying what is wrong.
    """

    is_template = True  # render with the parent's (gr.ImageEditor) frontend

    def convert_and_format_image(self, file, flatten_on_white: bool = False):
        if file is None:
            return None
        return checked_upload(file.path) if isinstance(file, FileData) else bytes(file)


@handler("Cannot refine by this colour")
def refine_by_colour(vectors: list, colour: str | None, k: int, category: str, request: gr.Request = None):
    """Search the embeddings of the results shown again, the same look in the colour picked first
    ("Any colour": as searched)."""
    if not vectors:
        raise InvalidRequestError("Search a photo first, then pick one of the colours found among the results.")
    chosen = None if colour in (None, "", ANY_COLOUR) else colour
    response = ready_engine().search_vectors(vectors, k=result_count(k), category=category, colour=chosen)
    return render(response, public_root(request), new_colours=False)


@handler("Cannot search this crop")
def search_crop(edited: dict | None, k: int, category: str, request: gr.Request = None):
    """Search the part of the photo cropped by hand in the editor."""
    cropped = (edited or {}).get("composite")
    if cropped is None:
        raise gr.Error("Search a photo first, then drag the crop handles around the piece you want.", title="No photo")
    return render(ready_engine().search(cropped, k=result_count(k), category=category), public_root(request))


@handler("Cannot search this result")
def more_like_this(image_path: str | None, rows: list[int], k: int, category: str, selected: gr.EventData = None,
                   request: gr.Request = None):
    """Search again with a clicked result's catalogue photo; show the product, and why it matched the photo
    searched before (heat maps, ``engine.explain``).

    ``selected`` is the click. Gradio fills it in only for a plain event-data hint (not ``... | None``), and
    builds a ``SelectData`` from it by subscripting the data, which an API call without a click does not
    have; hence the raw ``EventData`` and its data read here.
    """
    index = (getattr(selected, "_data", None) or {}).get("index")
    if not isinstance(index, int) or not 0 <= index < len(rows or []):
        raise InvalidRequestError("Click one of the results shown to search for more like it.")
    engine = ready_engine()
    item = engine.stored.images[rows[index]]
    root = public_root(request)
    why = gr.Image(visible=False)
    if image_path:
        why = PictureOutput(picture_url(root, page_file(why_picture(engine.explain_match(image_path, item.row)), "why")),
                            visible=True)
    response = engine.search_item(item.row, k=result_count(k), category=category)
    # The shopper's photo stays where it is: the picked product is named above the results.
    return gr.Markdown(product_details(item), visible=True), why, *render(response, root)


# Height of each half of the "why this match" picture.
WHY_HEIGHT = 240


def why_picture(explanation: MatchExplanation) -> Image.Image:
    """The photo and the product side by side, each with the parts that look like the other painted warm."""
    halves = []
    for image, heat in ((explanation.photo, explanation.photo_heat), (explanation.product, explanation.product_heat)):
        shown = image.copy()
        shown.thumbnail((WHY_HEIGHT * 2, WHY_HEIGHT))
        halves.append(heat_overlay(shown, heat))
    gap = 8
    picture = Image.new("RGB", (halves[0].width + gap + halves[1].width, WHY_HEIGHT), "white")
    picture.paste(halves[0], (0, (WHY_HEIGHT - halves[0].height) // 2))
    picture.paste(halves[1], (halves[0].width + gap, (WHY_HEIGHT - halves[1].height) // 2))
    return picture


def product_details(item) -> str:
    """The picked product: its name and category, a link to its page and its credits where the manifest has them."""
    parts = [f"**{item.name}** · {item.category}"]
    if item.url.startswith(("https://", "http://")):
        parts.append(f"[product page ↗]({item.url})")
    if item.source_url.startswith(("https://", "http://")):
        parts.append(f"[image source ↗]({item.source_url})")
    credit = " · ".join(value for value in (f"by {item.creator}" if item.creator else "", item.license) if value)
    if credit:
        parts.append(credit)
    return "Picked: " + " · ".join(parts) + " — below, more like it."


def credits_markdown() -> str:
    """Attribution for the catalogue images, as their licences require."""
    manifest = SETTINGS.catalogue / "manifest.csv"
    if not manifest.is_file():
        return "No attribution file (manifest.csv) in the catalogue."
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    lines = [f"Product images are renderings of 3D models; {len(rows)} products:"]
    lines += [
        f"- {row.get('name', row['product_id'])} — by {row.get('creator') or 'unknown'}, {row.get('license') or 'licence not stated'}"
        for row in rows
    ]
    return "\n".join(lines)


def example_photos(limit: int = 6) -> list[str]:
    """A few held-out photos (never indexed), one per category where possible."""
    if not EXAMPLES_DIR.is_dir():
        return []
    picks = []
    for category_dir in sorted(p for p in EXAMPLES_DIR.iterdir() if p.is_dir()):
        photos = sorted(category_dir.glob("*.jpg"))
        if photos:
            picks.append(str(photos[len(photos) // 2]))
    return picks[:limit]


CSS = """
#results .caption-label { white-space: normal; font-size: 0.8rem; }
/* Colour chips: a swatch instead of the radio dot; the picked chip is outlined. */
#colour-chips input[type=radio] { display: none; }
#colour-chips label { padding: 3px 10px; }
#colour-chips label:has(input:checked) { outline: 2px solid var(--color-accent); }
#colour-chips label::before { content: ""; display: inline-block; width: 0.9em; height: 0.9em; border-radius: 50%;
  margin-right: 0.35em; vertical-align: -0.1em; border: 1px solid #0004; background: var(--chip, transparent); }
#colour-chips label:first-child::before { display: none; }
/* Phone first: the photo (small), then straight to the results (an upload searches by itself); the found
   furniture, the controls, the crop editor, the examples and the category bars after them. The two columns
   dissolve into one list, reordered. */
@media (max-width: 640px) {
  #results .grid-container { --grid-cols: 2 !important; }
  #main-row { flex-direction: column !important; flex-wrap: nowrap !important; }
  #photo-column, #results-column { display: contents !important; }
  #query-image { order: 1; } #summary, #picked, #why, #results-column > .form:has(#colour-chips) { order: 2; }
  #results { order: 3; } #regions { order: 4; }
  #photo-column > .form:has(#region-choice), #region-choice { order: 5; }
  #search-controls { order: 6; } #find-similar { order: 7; } #crop-by-hand { order: 8; } #examples { order: 9; }
  #results-column > .form:has(#confidences), #confidences { order: 10; }
  #query-image, #regions { height: 200px !important; }
  #colour-chips .wrap { gap: 6px !important; } #colour-chips label { font-size: 0.85rem; padding: 2px 8px; }
  #intro h1 { font-size: 1.5rem; margin-bottom: 0; } #intro p { display: none; }
}
/* The hand-crop editor only crops: no painting, and no clearing away the photo. */
#crop-editor button:is([aria-label="Brush"], [aria-label="Erase"], [aria-label="Color"], [aria-label="Brush Size"], [aria-label="Clear canvas"]) { display: none !important; }
"""


# Each colour chip's swatch: the name's reference colour (engine.colours).
CSS += "".join(f'#colour-chips label:has(input[value="{name}"]) {{ --chip: {rgb_to_hex(rgb)}; }}\n'
               for name, rgb in NAMED_COLOURS.items())


def build_app() -> gr.Blocks:
    # The catalogue's images and the photos written for the page are served from where they lie: Gradio would
    # otherwise hash and copy every result image into its cache on every search (python -m benchmarks.app).
    folders()  # Gradio's uploads go to this instance's folder (GRADIO_TEMP_DIR), set before the page is built
    # Uploads live SETTINGS.upload_lifetime_s; Gradio also empties its cache of them when the app restarts.
    lifetime = (min(600, SETTINGS.upload_lifetime_s), SETTINGS.upload_lifetime_s)
    with gr.Blocks(title="Visual furniture search", delete_cache=lifetime) as demo:
        gr.Markdown("# Visual furniture search\nPhotograph a chair, lamp, table, bed or sofa you like; find similar products.",
                    elem_id="intro")
        status = gr.Markdown(catalogue_index.status())
        with gr.Row(equal_height=False, elem_id="main-row"):
            with gr.Column(scale=2, min_width=280, elem_id="photo-column"):
                image = PhotoInput(
                    label="Your photo",
                    type="filepath",
                    sources=["upload", "webcam", "clipboard"],
                    elem_id="query-image",
                    height=360,
                )
                with gr.Row(elem_id="search-controls"):
                    # Custom values: an API caller may name a category before the index has loaded the list;
                    # the engine checks the name.
                    category = gr.Dropdown(["auto", "all"], value="auto", label="Category", min_width=120,
                                           allow_custom_value=True)
                    k = CountInput(1, 24, value=8, step=1, label="Results", min_width=120)
                button = gr.Button("Find similar", variant="primary", elem_id="find-similar")
                marked = PictureOutput(label="Furniture found (click a box to search it)", type="filepath", interactive=False,
                                  visible=False, height=300, elem_id="regions")
                region = gr.Radio([WHOLE_PHOTO], value=WHOLE_PHOTO, label="Search", visible=False, elem_id="region-choice")
                with gr.Accordion("Crop by hand", open=False, elem_id="crop-by-hand") as crop_by_hand:
                    gr.Markdown("Tap the picture icon on the left, then ⛶ crop; drag the corners around the piece, confirm, and search.")
                    editor = CropEditor(
                        label="Your photo, to crop",
                        type="filepath",
                        image_mode="RGB",
                        sources=(),
                        transforms=("crop",),
                        # brush/eraser=False would hide Gradio 6.31's whole toolbar, crop included;
                        # their buttons are hidden by CSS instead.
                        layers=False,
                        height=360,
                        elem_id="crop-editor",
                    )
                    crop_button = gr.Button("Search the crop", elem_id="search-crop")
                if example_photos():
                    gr.Examples(example_photos(), inputs=[image], label="Try a photo", elem_id="examples")
            with gr.Column(scale=3, min_width=280, elem_id="results-column"):
                confidences = gr.Label(label="Predicted category", num_top_classes=3, elem_id="confidences")
                summary = gr.Markdown(elem_id="summary")
                picked = gr.Markdown(visible=False, elem_id="picked")
                why = PictureOutput(label="Why it matched your photo: the warm parts of each look like the other, to the search "
                               "(similarity, not a guarantee)", type="filepath", interactive=False, visible=False,
                               height=WHY_HEIGHT, elem_id="why")
                colour_choice = gr.Radio([ANY_COLOUR], value=ANY_COLOUR, label="Same look, other colour",
                                         visible=False, elem_id="colour-chips")
                results = gr.Gallery(
                    label="Similar products (click one for more like it)",
                    columns=4,
                    height="auto",
                    object_fit="contain",
                    allow_preview=False,
                    elem_id="results",
                )
        rows = gr.State([])
        region_embeddings = gr.State([])
        region_boxes = gr.State([])  # (box on the marked photo, label) per region
        query_vectors = gr.State([])  # the embeddings the results shown were searched with
        with gr.Accordion("How it works", open=False):
            gr.Markdown(HOW_IT_WORKS)
        with gr.Accordion("Catalogue credits and licences", open=False):
            gr.Markdown(credits_markdown())

        outputs = [confidences, summary, results, rows, colour_choice, query_vectors]
        # Whole-photo search first (quick, and the API's /search_photo), then the regions refine it.
        region_outputs = [marked, region, region_embeddings, region_boxes, *outputs]
        # Every search shares one queue slot ("search"): one search at a time for the whole page (see main).
        one = {"concurrency_id": "search", "concurrency_limit": 1}
        button.click(search_photo, [image, k, category], outputs, **one).then(
            find_regions, [image, k, category], region_outputs, **one)
        image.input(search_photo, [image, k, category], outputs, **one).then(
            find_regions, [image, k, category], region_outputs, **one)
        region.input(search_region, [image, region_embeddings, region, k, category], outputs, **one)
        marked.select(picked_box, region_boxes, region).then(search_region, [image, region_embeddings, region, k, category], outputs, **one)
        results.select(more_like_this, [image, rows, k, category], [picked, why, *outputs], **one)
        # A new photo: no product is picked any more.
        image.input(lambda: (gr.Markdown(visible=False), gr.Image(visible=False)), None, [picked, why], queue=False)
        # The open hand-crop editor holds the current photo (uploaded, example or picked result).
        editor_open = gr.State(False)
        crop_by_hand.expand(lambda: True, None, editor_open).then(photo_for_crop, [image, editor_open], editor,
                                                                  show_progress="hidden")
        crop_by_hand.collapse(lambda: False, None, editor_open)
        image.change(photo_for_crop, [image, editor_open], editor, show_progress="hidden")
        colour_choice.input(refine_by_colour, [query_vectors, colour_choice, k, category], outputs, **one)
        crop_button.click(search_crop, [editor, k, category], outputs, api_name="search_crop", **one)

        def refresh_status():
            engine = catalogue_index.engine
            choices = ["auto", "all", *(engine.categories if engine else [])]
            return (catalogue_index.status(), gr.Dropdown(choices=choices),
                    gr.Timer(active=engine is None and not catalogue_index.error))

        timer = gr.Timer(1.0)
        timer.tick(refresh_status, None, [status, category, timer], show_progress="hidden")
        demo.load(refresh_status, None, [status, category, timer], show_progress="hidden")
    return demo


def create_server():
    """The page mounted on the HTTP API's FastAPI app (``http_api``): one process, one port, one search slot,
    behind the request guard (``guards``): no client-named file is opened, every body is bounded."""
    demo = build_app()
    demo.queue(default_concurrency_limit=1, max_size=32)
    server = create_api(ApiContext(engine=lambda: catalogue_index.engine, status=catalogue_index.status,
                                   searches=searches, pictures=folders().pictures))
    server = gr.mount_gradio_app(server, demo, path="", max_file_size=MAX_FILE_BYTES, css=CSS)
    # Mounting never marks the page launched, which leaves Gradio's own check of input paths off.
    demo.has_launched = True
    server.add_middleware(Guard, uploads=folders().uploads)
    return server


def main() -> None:
    # One search at a time, on all cores: region search (the slow part, run after the whole-photo results
    # are shown) then adds ~110 ms instead of ~155 ms with one-thread searches side by side, for a peak of
    # ~8 instead of ~11-12 region searches/s on 2 cores (benchmarks/results/scenes.md). Two searches at once
    # with all cores each would spin-wait on each other (a query 2.6x slower).
    limit_heap_growth()
    catalogue_index.start()
    host, port = SETTINGS.host, SETTINGS.port
    print(f"Visual furniture search on http://{host}:{port} (HTTP API: /api/search, docs at /api/docs)", flush=True)
    # Open event streams of the page would otherwise hold a graceful shutdown for ever.
    config = uvicorn.Config(create_server(), host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    Server(config).run()


if __name__ == "__main__":
    main()
