"""The real-photo benchmark's query maker and scoring, and the whole command on a small dataset laid out like IKEA's."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from benchmarks.phone_photo import phone_photo, product_matte
from benchmarks.real import _recall, _retrieval_summary, main
from engine.images import load_image
from tests.conftest import draw_furniture, product_colour
from tests.test_regions import compose


def test_the_matte_keeps_white_inside_the_product_and_drops_the_white_around_it():
    photo = Image.new("RGB", (200, 200), (255, 255, 255))
    ImageDraw.Draw(photo).ellipse([40, 40, 160, 160], outline=(200, 30, 30), width=12)  # white inside the ring
    mask = np.asarray(product_matte(photo))
    assert mask[100, 100] == 255 and mask[46, 100] == 255  # the ring's white inside, the ring itself
    assert mask[5, 5] == 0 and mask[100, 10] == 0  # the background


def test_phone_photos_are_reproducible_and_some_are_stored_sideways_with_exif():
    product = draw_furniture("chair", product_colour(0, 1), 0, size=300)
    rooms: list[Path] = []
    assert phone_photo(product, "home", rooms, seed=3) == phone_photo(product, "home", rooms, seed=3)
    assert phone_photo(product, "home", rooms, seed=3) != phone_photo(product, "home", rooms, seed=4)
    sideways = 0
    for seed in range(12):
        data = phone_photo(product, "close", rooms, seed)
        raw = Image.open(io.BytesIO(data))
        if raw.getexif().get(0x0112) == 6:
            sideways += 1
            assert load_image(data).size == raw.size[::-1]  # the decoder turns it upright
    assert 0 < sideways < 12
    with pytest.raises(ValueError, match="unknown variant"):
        phone_photo(product, "beach", rooms, seed=0)


def test_scores():
    assert _recall(["a", "b", "c"], {"b", "z"}, 1) == 0.0
    assert _recall(["a", "b", "c"], {"b", "z"}, 2) == 0.5
    rows = [{"rank": 1, "category": "bed", "predicted": "bed"}, {"rank": 4, "category": "bed", "predicted": "sofa"},
            {"rank": None, "category": "lamp", "predicted": "lamp"}]
    summary = _retrieval_summary(rows)
    assert summary["r1"] == pytest.approx(1 / 3) and summary["r10"] == pytest.approx(2 / 3)
    assert summary["map10"] == pytest.approx((1 + 1 / 4) / 3)
    assert summary["category_accuracy"] == pytest.approx(2 / 3)


def make_ikea_like(root: Path) -> Path:
    """Product photos of the test drawings and two rooms with some of them, in the IKEA dataset's layout; the split file."""
    (root / "images" / "objects").mkdir(parents=True)
    (root / "images" / "room_scenes").mkdir()
    (root / "text_data").mkdir()
    products, catalogue = {}, {}
    for c, category in enumerate(["chair", "lamp", "table"]):
        for product in range(3):
            pid = f"00{c}.00{product}.00"
            path = f"images/objects/{pid}.jpg"
            draw_furniture(category, product_colour(c, product), 0, size=300).save(root / path)
            products[pid] = {"img": path, "type": category.title()}
            catalogue[pid] = category
    rooms = {"room-a.jpg": [("chair", 1, (250, 560), 300), ("lamp", 2, (600, 560), 420)],
             "room-b.jpg": [("table", 0, (400, 560), 380)]}
    item_to_room: dict[str, list[str]] = {}
    for name, objects in rooms.items():
        photo, _ = compose(objects)
        photo.save(root / "images" / "room_scenes" / name)
        for category, product, _, _ in objects:
            pid = f"00{['chair', 'lamp', 'table'].index(category)}.00{product}.00"
            item_to_room.setdefault(f"images/{pid}.jpg", []).append(f"images/room_scenes/{name}")
    with open(root / "text_data" / "products_dict.p", "wb") as handle:
        pickle.dump(products, handle)
    with open(root / "text_data" / "item_to_room.p", "wb") as handle:
        pickle.dump(item_to_room, handle)
    split = root / "split.json"
    split.write_text(json.dumps({"catalogue": catalogue, "dev_products": sorted(catalogue)[::2],
                                 "dev_rooms": sorted(rooms)}))
    return split


def run_on_ikea_like(benchmark_main, tmp_path: Path, catalogue: Path, name: str, *options: str) -> Path:
    """Run a benchmark of the IKEA photos on an IKEA-like folder of drawings; the path of its results (no suffix)."""
    split = make_ikea_like(tmp_path / "ikea")
    output = tmp_path / "results" / name
    benchmark_main(["--ikea", str(tmp_path / "ikea"), "--split", str(split), "--catalogue", str(catalogue),
                    "--store", str(tmp_path / "bundled_store"), "--work", str(tmp_path / "work"),
                    "--output", str(output), *options])
    return output


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_and_writes_its_tables(tmp_path, built_store):
    catalogue, _ = built_store
    output = run_on_ikea_like(main, tmp_path, catalogue, "real")
    results = json.loads(output.with_suffix(".json").read_text())
    own = results["own"]
    assert own["queries"] == 5 * 3 and own["images_indexed"] == 9
    assert 0.0 <= own["r1"] <= own["r10"] <= 1.0
    assert own["by_variant"]["close"]["r10"] > 0  # drawings filling the frame are found
    assert results["bundled"]["queries"] == 5
    assert set(results["rooms"]["whole"]) == {"chair", "lamp", "table"}
    assert results["rooms"]["rooms_per_class"] == {"chair": 1, "lamp": 1, "table": 1}
    table = output.with_suffix(".md").read_text()
    assert "## Rooms" in table and "| chair | 1 |" in table
    # The phone-like queries are cached in the scratch folder and reused by the next run.
    assert len(list((tmp_path / "work").rglob("*__close.jpg"))) == 5
