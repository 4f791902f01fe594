import shutil

from PIL import Image

from engine.index_store import load_index, read_meta
from engine.backbones import get_spec
from engine.indexing import index_catalog, index_is_current
from tests.conftest import draw_furniture


def test_index_reports_categories_and_products(gallery, tmp_path):
    report = index_catalog(gallery, tmp_path / "store")
    assert report.images == 24 and report.embedded == 24 and report.reused == 0
    assert report.products_per_category == {"chair": 4, "lamp": 4, "table": 4}
    assert report.images_per_category == {"chair": 8, "lamp": 8, "table": 8}
    assert read_meta(tmp_path / "store").backbone_name == "efficientnet_lite0"


def test_update_embeds_only_what_changed(gallery, tmp_path):
    store = tmp_path / "store"
    index_catalog(gallery, store)
    assert index_is_current(gallery, store)

    shutil.rmtree(gallery / "table" / "table-3")
    draw_furniture("lamp", (10, 200, 30), 1).save(gallery / "lamp" / "lamp-9.jpg")
    assert not index_is_current(gallery, store)

    report = index_catalog(gallery, store)
    assert report.embedded == 1
    assert report.reused == 22
    assert report.removed == 2
    assert index_is_current(gallery, store)
    ids = {item.product_id for item in load_index(store, get_spec("efficientnet_lite0")).items}
    assert "lamp-9" in ids and "table-3" not in ids


def test_unreadable_images_are_skipped_and_reported(gallery, tmp_path):
    (gallery / "chair" / "chair-0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (gallery / "chair" / "chair-0" / "empty.png").write_bytes(b"")
    Image.new("RGB", (40, 40), "blue").save(gallery / "chair" / "chair-0" / "fine.png")
    report = index_catalog(gallery, tmp_path / "store")
    skipped = dict(report.skipped)
    assert set(skipped) == {"chair/chair-0/broken.jpg", "chair/chair-0/empty.png"}
    assert all(reason for reason in skipped.values())
    assert report.images == 25
    # Skipped files do not make the index look out of date.
    assert index_is_current(gallery, tmp_path / "store")


def test_manifest_change_makes_index_out_of_date(gallery, tmp_path):
    store = tmp_path / "store"
    index_catalog(gallery, store)
    manifest = gallery / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("Test lamp 1", "Arc lamp"))
    assert not index_is_current(gallery, store)
    report = index_catalog(gallery, store)
    assert report.embedded == 0
    names = {item.name for item in load_index(store, get_spec("efficientnet_lite0")).items}
    assert "Arc lamp" in names
