import json

import pytest
from PIL import Image

from engine.catalogue import CatalogueError, file_digest, scan_catalogue


def write_image(path, colour="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)


def test_product_folders_and_manifest(catalogue):
    scanned = scan_catalogue(catalogue)
    assert scanned.categories == ["chair", "lamp", "table"]
    assert len(scanned.images) == 3 * 4 * 2
    item = next(i for i in scanned.images if i.product_id == "lamp-2")
    assert item.category == "lamp"
    assert item.name == "Test lamp 2"
    assert item.license == "CC0-1.0"
    assert item.path.startswith("lamp/lamp-2/")
    assert scanned.skipped == []


def test_flat_layout_one_image_per_product(tmp_path):
    write_image(tmp_path / "sofa" / "green_couch.png")
    write_image(tmp_path / "bed" / "oak-bed.jpg")
    scanned = scan_catalogue(tmp_path)
    ids = {(i.category, i.product_id, i.name) for i in scanned.images}
    assert ids == {("sofa", "green_couch", "Green couch"), ("bed", "oak-bed", "Oak bed")}


def test_json_manifest(tmp_path):
    write_image(tmp_path / "lamp" / "l1.jpg")
    (tmp_path / "manifest.json").write_text(json.dumps({"l1": {"name": "Arc lamp", "url": "https://shop/l1"}}))
    (item,) = scan_catalogue(tmp_path).images
    assert (item.name, item.url) == ("Arc lamp", "https://shop/l1")


def test_non_images_and_stray_files_are_reported_not_fatal(tmp_path):
    write_image(tmp_path / "chair" / "c1.jpg")
    (tmp_path / "chair" / "notes.txt").write_text("hello")
    (tmp_path / "loose.jpg").write_bytes(b"x")
    scanned = scan_catalogue(tmp_path)
    assert [i.path for i in scanned.images] == ["chair/c1.jpg"]
    reasons = dict(scanned.skipped)
    assert "not an image file type" in reasons["chair/notes.txt"]
    assert "inside a <category>/ folder" in reasons["loose.jpg"]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(CatalogueError, match="not found"):
        scan_catalogue(tmp_path / "nope")
    (tmp_path / "chair").mkdir()
    with pytest.raises(CatalogueError, match="no images found"):
        scan_catalogue(tmp_path)


def test_product_id_in_two_categories_is_an_error(tmp_path):
    write_image(tmp_path / "chair" / "x" / "1.jpg")
    write_image(tmp_path / "sofa" / "x" / "1.jpg")
    with pytest.raises(CatalogueError, match="two categories"):
        scan_catalogue(tmp_path)


def test_malformed_manifest(tmp_path):
    write_image(tmp_path / "chair" / "c1.jpg")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CatalogueError, match="manifest"):
        scan_catalogue(tmp_path)


def test_digest_changes_with_content(tmp_path):
    write_image(tmp_path / "a.png", "red")
    first = file_digest(tmp_path / "a.png")
    write_image(tmp_path / "a.png", "blue")
    assert file_digest(tmp_path / "a.png") != first
