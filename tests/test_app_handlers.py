"""The page's event handlers, called in-process as Gradio calls them (fast; the served app is in test_app.py)."""

from __future__ import annotations

import shutil
import time
import struct
import zlib

import gradio as gr
import pytest
from PIL import Image

import app
import service
from service import AppSettings, CatalogueIndex
from engine.search import SearchEngine
from tests.conftest import draw_furniture


@pytest.fixture
def ready(search_engine, monkeypatch):
    monkeypatch.setattr(app, "catalogue_index", CatalogueIndex(app.SETTINGS, engine=search_engine))
    return search_engine


def room_photo(path, width=6000, height=3000):
    """A large photo with a chair and a lamp on a wall colour, like a room shot on a phone."""
    scene = Image.new("RGB", (width, height), (200, 190, 170))
    side = height * 4 // 5
    scene.paste(draw_furniture("chair", (30, 90, 200), 0, size=side), (width // 30, height * 2 // 15))
    scene.paste(draw_furniture("lamp", (200, 40, 40), 1, size=side), (width * 8 // 15, height * 2 // 15))
    scene.save(path, quality=90)
    return path


def huge_png(path, width=20_000, height=12_000):
    """A tiny file whose header claims 240 megapixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def drawn_picture(value: dict) -> Image.Image:
    """A picture the page was given by URL (``/pictures/NAME``), opened from the instance's pictures folder."""
    assert value["url"].startswith("http://testserver/pictures/")
    return Image.open(app.folders().pictures / value["url"].rsplit("/", 1)[1])


class FakeRequest(gr.Request):
    """What Gradio hands a handler for a call on http://testserver/gradio_api/queue/join."""

    def __init__(self):
        from starlette.requests import Request

        super().__init__(request=Request({"type": "http", "method": "POST", "path": "/gradio_api/queue/join",
                                          "headers": [(b"host", b"testserver")], "query_string": b"",
                                          "scheme": "http", "server": ("testserver", 80), "root_path": ""}))


def test_regions_come_back_at_display_size_and_a_pick_shows_what_was_shown(ready, tmp_path):
    photo = room_photo(tmp_path / "room.jpg")
    marked, choices, embeddings, boxes, _, _, first_items, *_ = app.find_regions(str(photo), 4, "auto", FakeRequest())
    assert marked.visible
    shown = drawn_picture(marked.value)
    assert max(shown.size) <= app.DISPLAY_SIDE  # never the 18 MP original
    labels = [label for label, _ in choices.choices if label != app.WHOLE_PHOTO]
    assert len(labels) == len(embeddings) == len(boxes) >= 1
    # A click inside the first box picks it (the smallest box around the click).
    (x0, y0, x1, y1), label = boxes[0]
    click = gr.SelectData(None, {"index": [(x0 + x1) // 2, (y0 + y1) // 2], "value": None})
    picked = app.picked_box(boxes, click)
    assert picked in labels
    assert not isinstance(app.picked_box(boxes, gr.SelectData(None, {"index": [-5, -5], "value": None})), str)
    _, _, picked_items, *_ = app.search_region(str(photo), embeddings, labels[0], 4, "auto", FakeRequest())
    assert picked_items == first_items
    with pytest.raises(gr.Error, match="no region"):
        app.search_region(str(photo), embeddings, "9. lamp (50%)", 4, "auto")


def test_the_crop_editor_copy_is_made_only_while_the_editor_is_open(tmp_path):
    photo = room_photo(tmp_path / "room.jpg")
    assert app.photo_for_crop(str(photo), False) is None
    copy = Image.open(app.photo_for_crop(str(photo), True))
    assert max(copy.size) <= app.CROP_SIDE and copy.size[0] > copy.size[1]

@pytest.mark.parametrize("k", ["abc", None, 0, -3, 10_000, [1]])
def test_bad_result_counts_get_a_message(ready, built_store, k):
    catalogue, _ = built_store
    with pytest.raises(gr.Error, match="Results must be a whole number"):
        app.search_photo(str(catalogue / "lamp" / "lamp-0" / "view0.jpg"), k, "auto")


def test_result_counts_from_the_api_may_be_floats_or_text(ready, built_store):
    catalogue, _ = built_store
    photo = str(catalogue / "lamp" / "lamp-0" / "view0.jpg")
    assert len(app.search_photo(photo, 3.0, "auto")[2]) == 3
    assert len(app.search_photo(photo, "2", "auto")[2]) == 2


def test_a_category_by_name(ready, built_store):
    catalogue, _ = built_store
    photo = str(catalogue / "lamp" / "lamp-0" / "view0.jpg")
    _, summary, items, *_ = app.search_photo(photo, 4, "chair")
    assert "searched chair" in summary and all(" · chair · " in caption for _, caption in items)
    with pytest.raises(gr.Error, match="unknown category 'wardrobe'"):
        app.search_photo(photo, 4, "wardrobe")


def test_more_like_this_without_a_selection(ready):
    with pytest.raises(gr.Error, match="Click one of the results"):
        app.more_like_this(None, [0, 1], 4, "auto", None)
    with pytest.raises(gr.Error, match="Click one of the results"):
        app.more_like_this(None, [], 4, "auto", gr.SelectData(None, {"index": 0, "value": None}))


def test_the_crop_path_has_the_pixel_limit_and_our_messages(ready, tmp_path):
    editor = app.CropEditor(type="filepath", image_mode="RGB", transforms=("crop",), layers=False)
    bomb = huge_png(app.folders().uploads / "bomb.png")  # as the page receives it: in the instance's uploads
    payload = {"background": {"path": str(bomb)}, "layers": [], "composite": {"path": str(bomb)}}
    edited = editor.preprocess(editor.data_model(**payload))  # Gradio's editor no longer decodes it
    assert edited["composite"] == str(bomb)
    with pytest.raises(gr.Error, match="too large"):
        app.search_crop(edited, 4, "auto")
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0 broken")
    with pytest.raises(gr.Error, match="damaged or incomplete"):
        app.search_crop({"composite": str(damaged)}, 4, "auto")


def test_a_broken_store_is_rebuilt_on_start(built_store, tmp_path, monkeypatch):
    catalogue, built = built_store
    store = tmp_path / "store"
    shutil.copytree(built, store)
    (store / "CURRENT").write_text("")
    index = CatalogueIndex(AppSettings(catalogue=catalogue, store=store))
    index.prepare()
    assert index.error == "" and isinstance(index.engine, SearchEngine)
    assert index.status().startswith("Catalogue: 12 products")


def test_an_unexpected_failure_is_shown_not_loading_forever(built_store, tmp_path, monkeypatch):
    catalogue, _ = built_store

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service, "open_current", broken)
    index = CatalogueIndex(AppSettings(catalogue=catalogue, store=tmp_path / "store"))
    index.prepare()
    assert index.engine is None
    assert index.status().startswith("⚠️") and "disk on fire" in index.status()


def test_settings_come_from_the_environment_and_old_names_still_work(tmp_path, caplog):
    settings = AppSettings.from_environment({"FURNITURE_CATALOGUE": str(tmp_path), "GRADIO_SERVER_PORT": "8000"})
    assert settings.catalogue == tmp_path and settings.port == 8000 and settings.host == "127.0.0.1"
    old = AppSettings.from_environment({"FURNITURE_GALLERY": str(tmp_path / "shop")})
    assert old.catalogue == tmp_path / "shop" and "FURNITURE_GALLERY is now called FURNITURE_CATALOGUE" in caplog.text


def test_freed_memory_goes_back_only_once_the_page_is_idle(monkeypatch):
    trims = []

    class FakeLibc:
        def malloc_trim(self, pad):
            trims.append(pad)

    import service

    monkeypatch.setattr(service, "_LIBC", FakeLibc())
    monkeypatch.setattr(service, "IDLE_TRIM_S", 0.2)
    idle = service.IdleTrim()
    for _ in range(3):  # a burst of searches: one trim, after the last
        idle.started()
        idle.finished()
    idle.started()  # a search still running at the end of the burst's idle time: no trim yet
    time.sleep(0.5)
    assert trims == []
    idle.finished()
    time.sleep(0.5)
    assert trims == [0]


def test_a_picked_result_shows_its_product_why_it_matched_and_more_like_it(ready, tmp_path):
    photo = room_photo(tmp_path / "room.jpg", 1200, 600)
    rows = [item.row for item in ready.stored.images[:3]]
    details, why, _, summary, items, new_rows, *_ = app.more_like_this(
        str(photo), rows, 4, "auto", gr.SelectData(None, {"index": 1, "value": None}), FakeRequest())
    item = ready.stored.images[rows[1]]
    assert details.visible and item.name in details.value
    assert why.visible and drawn_picture(why.value).height == app.WHY_HEIGHT
    assert items[0][0] == f"http://testserver/api/images/{item.digest}"  # by id, no server path
    assert len(items) == 4 and new_rows[0] == item.row  # the picked image finds itself first
    _, why, *_ = app.more_like_this(None, rows, 4, "auto", gr.SelectData(None, {"index": 1, "value": None}))
    assert not why.visible  # no photo searched before: nothing to explain


def test_product_details_link_the_product_page_and_credit_the_creator():
    from types import SimpleNamespace

    shop = SimpleNamespace(name="Oak chair", category="chair", url="https://shop.example/oak-chair",
                           creator="Doug C", license="CC0", source_url="")
    assert app.product_details(shop) == ("Picked: **Oak chair** · chair · [product page ↗](https://shop.example/oak-chair)"
                                         " · by Doug C · CC0 — below, more like it.")
    odd = SimpleNamespace(name="Lamp", category="lamp", url="javascript:alert(1)", creator="", license="",
                          source_url="javascript:alert(2)")
    assert app.product_details(odd) == "Picked: **Lamp** · lamp — below, more like it."


def test_the_bundled_catalogue_links_each_render_to_its_models_source():
    from engine.catalogue import scan_catalogue

    items = scan_catalogue(app.ROOT / "reference_gallery").images
    assert all(item.source_url.startswith(("https://", "http://")) for item in items)
    blend_swap = next(item for item in items if item.product_id == "chair-bs0-armchair")
    assert "[image source ↗](http://www.blendswap.com)" in app.product_details(blend_swap)


def test_colour_chips_offer_the_results_colours_and_a_pick_refines_them(ready, built_store):
    catalogue, _ = built_store
    photo = str(catalogue / "chair" / "chair-0" / "view0.jpg")
    _, _, items, rows, chips, vectors = app.search_photo(photo, 4, "auto")
    assert chips.visible and chips.choices[0][0] == app.ANY_COLOUR and len(chips.choices) >= 2
    colour = chips.choices[-1][0]
    _, summary, refined, _, kept_chips, _ = app.refine_by_colour(vectors, colour, 4, "auto")
    assert f"refined by colour: the same look in {colour} first" in summary
    # The chips stay as offered, not replaced by the refined results' colours; the one picked stays picked.
    assert kept_chips.value == colour and kept_chips.choices != chips.choices
    engine_first = ready.search_vectors(vectors, k=4, colour=colour).results[0]
    assert refined[0][0] == f"/api/images/{ready.stored.images[engine_first.row].digest}"
    _, _, unrefined, *_ = app.refine_by_colour(vectors, app.ANY_COLOUR, 4, "auto")
    assert unrefined == items
    with pytest.raises(gr.Error, match="Search a photo first"):
        app.refine_by_colour([], "red", 4, "auto")


def test_the_editor_takes_only_files_the_page_received(tmp_path):
    editor = app.CropEditor(type="filepath", image_mode="RGB", transforms=("crop",), layers=False)
    for path in ("/etc/passwd", str(tmp_path), str(app.folders().uploads / ".." / ".." / "x.jpg")):
        payload = {"background": None, "layers": [], "composite": {"path": path}}
        with pytest.raises(gr.Error, match="not uploaded to this page"):
            editor.preprocess(editor.data_model(**payload))
