"""Gradio app: photograph a piece of furniture, get the most similar catalogue products.

Run with ``python app.py`` (port 7860; ``GRADIO_SERVER_NAME=0.0.0.0`` to listen on
all interfaces). ``FURNITURE_CATALOGUE`` and ``FURNITURE_STORE`` point it at another
catalogue and store (``service.AppSettings``). All logic lives in ``engine``, what the page shows in
``page`` and what each event does in ``page_handlers``; this file lays out the page, wires the events, and
mounts the page on the HTTP API (``http_api``).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import uvicorn

import page
from engine.images import MAX_FILE_BYTES
from guards import Guard, Server
from http_api import ApiContext, create_api
from page_handlers import (SETTINGS, CountInput, PhotoInput, PictureOutput, catalogue_index, crop_corner, crop_photo,
                           folders, more_like_this, new_photo, photo_in_place, picked_box, refilter, refine_by_colour, search_crop,
                           search_photo, search_region, searches, set_filters, store_filters)
from service import limit_heap_growth

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "benchmarks" / "queries"


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


def photo_column() -> dict:
    """The shopper's photo, its pieces, the search controls, the crop and the examples."""
    parts = {}
    # A scene's pieces are drawn on the shopper's photo in its place (the upload hidden meanwhile), named below it.
    parts["marked"] = PictureOutput(label="Your photo with the pieces found", show_label=False, interactive=False,
                                    visible=False, height=360, buttons=["fullscreen"], elem_id="regions")
    parts["region"] = gr.Radio([page.WHOLE_PHOTO], value=page.WHOLE_PHOTO,
                               label="Pieces found: pick one, or tap it on the photo",
                               visible=False, elem_id="region-choice")
    parts["another"] = gr.Button("Search another photo", visible=False, size="sm", elem_id="another-photo")
    parts["image"] = PhotoInput(label="Your photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                                elem_id="query-image", height=360,
                                placeholder="Upload a photo of a piece of furniture, take one, or paste one")
    with gr.Row(elem_id="search-controls"):
        # Custom values: an API caller may name a category before the store has loaded the list; the engine
        # checks the name.
        parts["category"] = gr.Dropdown(page.category_choices([]), value="auto", label="What to search",
                                        min_width=160, allow_custom_value=True)
        parts["k"] = CountInput(1, 24, value=8, step=1, label="How many results", min_width=140)
    with gr.Row(elem_id="shop-filters", visible=False) as parts["filters"]:
        # Shown once the store is loaded, for a catalogue whose shop gives prices, stock or brands.
        parts["max_price"] = gr.Dropdown([(page.ANY_PRICE, 0)], value=0, label="Price", min_width=130,
                                         elem_id="max-price")
        parts["in_stock"] = gr.Checkbox(label="In stock only", min_width=110, elem_id="in-stock")
        parts["brand"] = gr.Dropdown([page.ANY_BRAND], value=page.ANY_BRAND, label="Brand", min_width=140,
                                     elem_id="brand")
    parts["button"] = gr.Button("Find similar", variant="primary", elem_id="find-similar")
    with gr.Accordion("Crop by hand", open=False, elem_id="crop-by-hand") as parts["crop_by_hand"]:
        gr.Markdown("Tap two opposite corners of the piece on the photo below, then search the crop.")
        parts["crop_picture"] = PictureOutput(label="Your photo, to crop", show_label=False, interactive=False,
                                              visible=False,
                                              height=360, elem_id="crop-picture")
        parts["crop_button"] = gr.Button("Search the crop", elem_id="search-crop")
    if example_photos():
        parts["examples"] = gr.Examples(example_photos(), inputs=[parts["image"]], label="Or try one of these photos",
                                        elem_id="examples")
    return parts


def results_column() -> dict:
    """The summary, the colour chips, the results, the picked product and why it matched, the category bars."""
    parts = {}
    gr.HTML(page.SEARCHING_NOTE, elem_id="searching", padding=False)
    parts["summary"] = gr.Markdown(elem_id="summary")
    parts["colour_choice"] = gr.Radio([page.ANY_COLOUR], value=page.ANY_COLOUR, label="Same look, other colour",
                                      visible=False, elem_id="colour-chips")
    gr.Markdown("**Similar products** · pick one for more like it", elem_id="results-heading")
    parts["results"] = gr.Gallery(show_label=False, label="Similar products", columns=4, height="auto",
                                  object_fit="contain", allow_preview=False, elem_id="results")
    parts["picked"] = gr.Markdown(visible=False, elem_id="picked")
    parts["why"] = PictureOutput(show_label=False, label="Why it matched your photo", interactive=False,
                                 visible=False, height=page.WHY_HEIGHT, elem_id="why")
    parts["confidences"] = gr.Label(label="What it looks like", num_top_classes=3, elem_id="confidences")
    return parts


def searched(trigger, fn, inputs: list, outputs: list, **kwargs):
    """``fn`` run as a search when ``trigger`` fires: in the "search" queue, as many at once as ``service.SearchSlot``
    runs (``FURNITURE_SEARCH_LANES``: with one at a time, a core sat idle during Gradio's work around each search),
    the page saying "Searching…" until its answer is in (``page.SEARCH_STARTS``) instead of Gradio's progress on
    every output (benchmarks/README.md, "Two searches at once" and "Session 17")."""
    search = trigger(fn, inputs, outputs, js=page.SEARCH_STARTS, show_progress="hidden", concurrency_id="search",
                     concurrency_limit=SETTINGS.lanes, **kwargs)
    search.failure(None, js=page.SEARCH_ENDS, queue=False)  # Gradio's page runs a "then" only after a success
    return search.then(None, js=page.SEARCH_ENDS, queue=False)


def wire(c: dict) -> None:
    """The page's events: a photo is searched (a scene by its pieces, a product shot whole, in one round trip);
    a piece, a result, a colour or a crop searches again (``searched``)."""
    outputs = [c[name] for name in ("confidences", "summary", "results", "rows", "colour_choice", "vectors", "subject")]
    search_in = [c["image"], c["k"], c["category"], c["where"]]
    regions_out = [c["marked"], c["region"], c["region_embeddings"], c["region_boxes"], *outputs]
    # A photo picked among the examples is searched as an upload is, once it is in place.
    started = [c["button"].click, c["image"].input]
    if "examples" in c:
        started.append(c["examples"].load_input_event.then)
    for event in started:
        (searched(event, search_photo, search_in, regions_out)
         .then(photo_in_place, c["region_boxes"], [c["image"], c["another"]], queue=False))
    c["another"].click(new_photo, None, [c["image"], c["marked"], c["region"], c["another"], c["region_embeddings"],
                                         c["region_boxes"]], queue=False)
    region_in = [c["image"], c["region_embeddings"], c["region_boxes"], c["region"], c["k"], c["category"], c["where"]]
    searched(c["region"].input, search_region, region_in, outputs)
    searched(c["marked"].select(picked_box, c["region_boxes"], c["region"]).then, search_region, region_in, outputs)
    searched(c["results"].select, more_like_this, [c["image"], c["rows"], c["k"], c["category"], c["where"]],
             [c["picked"], c["why"], *outputs])
    # A new photo: no product is picked any more, no piece found yet.
    c["image"].input(lambda: (gr.Markdown(visible=False), gr.Image(visible=False)), None, [c["picked"], c["why"]],
                     queue=False)
    crop_out = [c["crop_picture"], c["crop"]]
    c["crop_by_hand"].expand(lambda: True, None, c["crop_open"]).then(crop_photo, [c["image"], c["crop_open"]],
                                                                      crop_out, show_progress="hidden")
    c["crop_by_hand"].collapse(lambda: False, None, c["crop_open"])
    c["image"].change(crop_photo, [c["image"], c["crop_open"]], crop_out, show_progress="hidden")
    c["crop_picture"].select(crop_corner, [c["image"], c["crop"]], crop_out, show_progress="hidden")
    searched(c["crop_button"].click, search_crop, [c["image"], c["crop"], c["k"], c["category"], c["where"]], outputs,
             api_name="search_crop")
    again_in = [c["vectors"], c["colour_choice"], c["k"], c["category"], c["subject"], c["where"]]
    searched(c["colour_choice"].input, refine_by_colour, again_in, outputs)
    # A filter set: the results shown searched again among the products that meet it.
    filters = [c["max_price"], c["in_stock"], c["brand"]]
    for event in (c["max_price"].input, c["in_stock"].input, c["brand"].input):
        searched(event(set_filters, filters, c["where"], queue=False).then, refilter, again_in, outputs)


def filter_controls() -> tuple:
    """The shop filters as the loaded store allows them: shown only where its shop gives prices, stock or brands."""
    allowed = store_filters()
    return (gr.Row(visible=allowed.any), gr.Dropdown(choices=page.price_choices(allowed), visible=bool(allowed.caps)),
            gr.Checkbox(visible=allowed.stock),
            gr.Dropdown(choices=[page.ANY_BRAND, *allowed.brands], visible=bool(allowed.brands)))


def build_app() -> gr.Blocks:
    folders()  # Gradio's uploads go to this instance's folder (GRADIO_TEMP_DIR), set before the page is built
    # Uploads live SETTINGS.upload_lifetime_s; Gradio also empties its cache of them when the app restarts.
    lifetime = (min(600, SETTINGS.upload_lifetime_s), SETTINGS.upload_lifetime_s)
    with gr.Blocks(title="Visual furniture search", delete_cache=lifetime) as demo:
        gr.Markdown("# Visual furniture search\nPhotograph a chair, lamp, table, bed or sofa you like; "
                    "find the most similar products.", elem_id="intro")
        if SETTINGS.notice:
            gr.Markdown(SETTINGS.notice, elem_id="notice")
        status = gr.Markdown(catalogue_index.status(), elem_id="status")
        with gr.Row(equal_height=False, elem_id="main-row"):
            with gr.Column(scale=2, min_width=280, elem_id="photo-column"):
                parts = photo_column()
            with gr.Column(scale=3, min_width=280, elem_id="results-column"):
                parts.update(results_column())
        for name in ("rows", "region_embeddings", "region_boxes", "vectors", "crop", "crop_open", "subject", "where"):
            parts[name] = gr.State(False if name == "crop_open" else "" if name in ("subject", "where") else [])
        with gr.Accordion("How it works", open=False):
            gr.Markdown(page.HOW_IT_WORKS)
        with gr.Accordion("Catalogue credits and licences", open=False):
            gr.Markdown(page.credits_markdown(SETTINGS.catalogue, SETTINGS.feed))
        wire(parts)

        def refresh_status():
            engine = catalogue_index.engine
            choices = page.category_choices(engine.categories if engine else [])
            return (catalogue_index.status(), gr.Dropdown(choices=choices),
                    gr.Timer(active=engine is None and not catalogue_index.error), *filter_controls())

        timer = gr.Timer(1.0)
        refreshed = [status, parts["category"], timer, parts["filters"], parts["max_price"], parts["in_stock"],
                     parts["brand"]]
        timer.tick(refresh_status, None, refreshed, show_progress="hidden")
        demo.load(refresh_status, None, refreshed, show_progress="hidden")
    return demo


def create_server():
    """The page mounted on the HTTP API's FastAPI app (``http_api``): one process, one port, one search slot,
    behind the request guard (``guards``): no client-named file is opened, every body is bounded. Gradio's own
    API page is not offered to shoppers: the HTTP API (``/api/docs``) is the API."""
    demo = build_app()
    demo.queue(default_concurrency_limit=1, max_size=32)
    server = create_api(ApiContext(engine=lambda: catalogue_index.engine, status=catalogue_index.status,
                                   searches=searches, pictures=folders().pictures))
    server = gr.mount_gradio_app(server, demo, path="", max_file_size=MAX_FILE_BYTES, css=page.page_css(),
                                 js=page.page_js(), head=page.page_head(), footer_links=["gradio", "settings"])
    # Mounting never marks the page launched, which leaves Gradio's own check of input paths off; and it sets
    # the favicon only for a page mounted at "/" (this one is at "").
    demo.has_launched = True
    demo.favicon_path = str(page.WEB / "favicon.svg")
    server.add_middleware(Guard, uploads=folders().uploads)
    return server


def main() -> None:
    # One search at a time, on all cores: region search (the slow part, run after the whole-photo results
    # are shown) then costs less than one-thread searches side by side, and two searches at once with all
    # cores each would spin-wait on each other (benchmarks/README.md).
    limit_heap_growth()
    catalogue_index.start()
    host, port = SETTINGS.host, SETTINGS.port
    print(f"Visual furniture search on http://{host}:{port} (HTTP API: /api/search, docs at /api/docs)", flush=True)
    # Open event streams of the page would otherwise hold a graceful shutdown for ever.
    config = uvicorn.Config(create_server(), host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    Server(config).run()


if __name__ == "__main__":
    main()
