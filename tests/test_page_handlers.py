"""The page's event handlers, called in-process as Gradio calls them (fast; the served app is in test_app.py)."""

from __future__ import annotations

import struct
import zlib

import gradio as gr
import pytest
from PIL import Image

import page
import page_handlers as handlers
from service import CatalogueIndex
from tests.conftest import draw_furniture


@pytest.fixture
def ready(search_engine, monkeypatch):
    monkeypatch.setattr(handlers, "catalogue_index", CatalogueIndex(handlers.SETTINGS, engine=search_engine))
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
    return Image.open(handlers.folders().pictures / value["url"].rsplit("/", 1)[1])


class FakeRequest(gr.Request):
    """What Gradio hands a handler for a call on http://testserver/gradio_api/queue/join."""

    def __init__(self):
        from starlette.requests import Request

        super().__init__(request=Request({"type": "http", "method": "POST", "path": "/gradio_api/queue/join",
                                          "headers": [(b"host", b"testserver")], "query_string": b"",
                                          "scheme": "http", "server": ("testserver", 80), "root_path": ""}))


def uploaded(photo) -> str:
    """A photo as the page receives it: a file in the instance's uploads."""
    copy = handlers.folders().uploads / photo.name
    copy.write_bytes(photo.read_bytes())
    return str(copy)


def test_pieces_come_back_at_display_size_named_and_a_pick_shows_what_was_shown(ready, tmp_path):
    photo = room_photo(tmp_path / "room.jpg")
    marked, choices, embeddings, boxes, _, summary, first_items, *_ = handlers.search_photo(str(photo), 4, "auto", "",
                                                                                           FakeRequest())
    assert marked.visible
    shown = drawn_picture(marked.value)
    assert max(shown.size) <= page.DISPLAY_SIDE  # never the 18 MP original
    labels = [label for label, _ in choices.choices if label != page.WHOLE_PHOTO]
    assert len(labels) == len(embeddings) == len(boxes) >= 1
    assert summary.startswith(f"**Results for the {labels[0]}.**")  # which piece the results belong to
    # A click inside the first box picks it (the smallest box around the click).
    (x0, y0, x1, y1), label = boxes[0]
    click = gr.SelectData(None, {"index": [(x0 + x1) // 2, (y0 + y1) // 2], "value": None})
    picked = handlers.picked_box(boxes, click)
    assert picked in labels
    assert not isinstance(handlers.picked_box(boxes, gr.SelectData(None, {"index": [-5, -5], "value": None})), str)
    _, _, picked_items, *_ = handlers.search_region(str(photo), embeddings, boxes, labels[0], 4, "auto", "", FakeRequest())
    assert picked_items == first_items
    with pytest.raises(gr.Error, match="no piece"):
        handlers.search_region(str(photo), embeddings, boxes, "wardrobe 9", 4, "auto")


def test_the_crop_copy_is_made_only_while_crop_by_hand_is_open_and_two_taps_crop(ready, tmp_path):
    photo = uploaded(room_photo(tmp_path / "room.jpg", 2000, 1000))
    hidden, crop = handlers.crop_photo(photo, False)
    assert not hidden.visible and crop == {}
    shown, crop = handlers.crop_photo(photo, True, FakeRequest())
    assert crop == {"size": [page.DISPLAY_SIDE, page.DISPLAY_SIDE // 2], "points": []}
    assert drawn_picture(shown.value).size == (page.DISPLAY_SIDE, page.DISPLAY_SIDE // 2)
    with pytest.raises(gr.Error, match="tap two opposite corners"):
        handlers.search_crop(photo, crop, 4, "auto")
    for x, y in ((1000, 60), (540, 460)):  # the lamp, on the right: corners in any order
        _, crop = handlers.crop_corner(photo, crop, gr.SelectData(None, {"index": [x, y], "value": None}), FakeRequest())
    assert crop["points"] == [[1000, 60], [540, 460]]
    confidences, summary, items, *_ = handlers.search_crop(photo, crop, 4, "auto", "", FakeRequest())
    assert summary.startswith("**Results for your crop.**") and max(confidences, key=confidences.get) == "lamp"
    # A third tap starts a new crop.
    _, crop = handlers.crop_corner(photo, crop, gr.SelectData(None, {"index": [5, 5], "value": None}), FakeRequest())
    assert crop["points"] == [[5, 5]]


def test_a_crop_has_the_pixel_limit_our_messages_and_only_uploaded_photos(ready, tmp_path):
    bomb = huge_png(handlers.folders().uploads / "bomb.png")  # as the page receives it: in the instance's uploads
    with pytest.raises(gr.Error, match="too large"):
        handlers.search_crop(str(bomb), {"size": [100, 60], "points": [[0, 0], [50, 50]]}, 4, "auto")
    photo = uploaded(room_photo(tmp_path / "small.jpg", 400, 200))
    with pytest.raises(gr.Error, match="too small"):
        handlers.search_crop(photo, {"size": [400, 200], "points": [[10, 10], [12, 40]]}, 4, "auto")
    for path in ("/etc/passwd", str(tmp_path), str(handlers.folders().uploads / ".." / ".." / "x.jpg")):
        with pytest.raises(gr.Error, match="not uploaded to this page"):
            handlers.crop_photo(path, True)


@pytest.mark.parametrize("k", ["abc", None, 0, -3, 10_000, [1]])
def test_bad_result_counts_get_a_message(ready, built_store, k):
    catalogue, _ = built_store
    with pytest.raises(gr.Error, match="Results must be a whole number"):
        handlers.search_photo(str(catalogue / "lamp" / "lamp-0" / "view0.jpg"), k, "auto")


def test_result_counts_from_the_api_may_be_floats_or_text(ready, built_store):
    catalogue, _ = built_store
    photo = str(catalogue / "lamp" / "lamp-0" / "view0.jpg")
    assert len(handlers.search_photo(photo, 3.0, "auto")[6]) == 3  # after the 4 piece outputs, the results
    assert len(handlers.search_photo(photo, "2", "auto")[6]) == 2


def test_a_category_by_name(ready, built_store):
    catalogue, _ = built_store
    photo = str(catalogue / "lamp" / "lamp-0" / "view0.jpg")
    marked, _, _, _, _, summary, items, rows, *_ = handlers.search_photo(photo, 4, "chair")
    assert not marked.visible  # a product shot: searched whole, no pieces
    assert "Only chair products were searched, as asked." in summary
    assert all(ready.stored.images[row].category == "chair" for row in rows)
    with pytest.raises(gr.Error, match="unknown category 'wardrobe'"):
        handlers.search_photo(photo, 4, "wardrobe")


def test_more_like_this_without_a_selection(ready):
    with pytest.raises(gr.Error, match="Click one of the results"):
        handlers.more_like_this(None, [0, 1], 4, "auto", "", None)
    with pytest.raises(gr.Error, match="Click one of the results"):
        handlers.more_like_this(None, [], 4, "auto", "", gr.SelectData(None, {"index": 0, "value": None}))


def test_a_picked_result_shows_its_product_why_it_matched_and_more_like_it(ready, tmp_path):
    photo = room_photo(tmp_path / "room.jpg", 1200, 600)
    rows = [item.row for item in ready.stored.images[:3]]
    details, why, _, summary, items, new_rows, *_ = handlers.more_like_this(
        str(photo), rows, 4, "auto", "", gr.SelectData(None, {"index": 1, "value": None}), FakeRequest())
    item = ready.stored.images[rows[1]]
    assert details.visible and item.name in details.value and "Why it matched your photo" in details.value
    assert why.visible and drawn_picture(why.value).height == page.WHY_HEIGHT
    assert items[0][0] == f"http://testserver/api/images/{item.digest}"  # by id, no server path
    assert len(items) == 4 and new_rows[0] == item.row  # the picked image finds itself first
    assert summary.startswith(f"**Results for the picked {item.name}.**")
    _, why, *_ = handlers.more_like_this(None, rows, 4, "auto", "", gr.SelectData(None, {"index": 1, "value": None}))
    assert not why.visible  # no photo searched before: nothing to explain


def test_colour_chips_offer_the_results_colours_and_a_pick_refines_them(ready, built_store):
    catalogue, _ = built_store
    photo = str(catalogue / "chair" / "chair-0" / "view0.jpg")
    _, _, items, rows, chips, vectors, subject = handlers.search_photo(photo, 4, "auto")[handlers.PIECE_OUTPUTS:]
    assert chips.visible and chips.choices[0][0] == page.ANY_COLOUR and len(chips.choices) >= 2
    colour = chips.choices[-1][0]
    _, summary, refined, _, kept_chips, _, _ = handlers.refine_by_colour(vectors, colour, 4, "auto", subject)
    assert f"so the same look in {colour} comes first" in summary
    # Each caption says how much of the product is that colour: why a less alike look may rank first.
    assert all(caption.endswith(f"% {colour}") for _, caption in refined)
    # The chips stay as offered, not replaced by the refined results' colours; the one picked stays picked.
    assert kept_chips.value == colour and kept_chips.choices != chips.choices
    engine_first = ready.search_vectors(vectors, k=4, colour=colour).results[0]
    assert refined[0][0] == f"/api/images/{ready.stored.images[engine_first.row].digest}"
    _, _, unrefined, *_ = handlers.refine_by_colour(vectors, page.ANY_COLOUR, 4, "auto", subject)
    assert unrefined == items
    with pytest.raises(gr.Error, match="Search a photo first"):
        handlers.refine_by_colour([], "red", 4, "auto", "")
