import os
import shutil

import numpy as np
from PIL import Image

from engine.store.versions import open_store, read_meta
from engine.backbone_specs import get_spec
import engine.indexing
from engine.indexing import index_catalogue, index_is_current, open_current
from tests.conftest import as_older_format, draw_furniture


def test_index_reports_categories_and_products(catalogue, tmp_path):
    report = index_catalogue(catalogue, tmp_path / "store")
    assert report.images == 24 and report.embedded == 24 and report.reused == 0
    assert report.products_per_category == {"chair": 4, "lamp": 4, "table": 4}
    assert report.images_per_category == {"chair": 8, "lamp": 8, "table": 8}
    assert read_meta(tmp_path / "store").backbone.name == "efficientnet_lite0"


def test_update_embeds_only_what_changed(catalogue, tmp_path):
    store = tmp_path / "store"
    index_catalogue(catalogue, store)
    assert index_is_current(catalogue, store)

    shutil.rmtree(catalogue / "table" / "table-3")
    draw_furniture("lamp", (10, 200, 30), 1).save(catalogue / "lamp" / "lamp-9.jpg")
    assert not index_is_current(catalogue, store)

    report = index_catalogue(catalogue, store)
    assert report.embedded == 1
    assert report.reused == 22
    assert report.removed == 2
    assert index_is_current(catalogue, store)
    ids = {item.product_id for item in open_store(store, get_spec("efficientnet_lite0")).images}
    assert "lamp-9" in ids and "table-3" not in ids


def test_open_current_loads_a_current_store_once_and_syncs_a_stale_one(catalogue, tmp_path, monkeypatch):
    store = tmp_path / "store"
    loads = []
    real_open_store = engine.indexing.open_store
    monkeypatch.setattr(engine.indexing, "open_store", lambda path: loads.append(path) or real_open_store(path))
    assert len(open_current(catalogue, store).images) == 24  # built: tried, indexed, loaded
    loads.clear()
    open_current(catalogue, store)
    assert len(loads) == 1
    draw_furniture("lamp", (10, 200, 30), 1).save(catalogue / "lamp" / "lamp-9.jpg")
    assert any(item.product_id == "lamp-9" for item in open_current(catalogue, store).images)

def test_unreadable_images_are_skipped_and_reported(catalogue, tmp_path):
    (catalogue / "chair" / "chair-0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (catalogue / "chair" / "chair-0" / "empty.png").write_bytes(b"")
    Image.new("RGB", (40, 40), "blue").save(catalogue / "chair" / "chair-0" / "fine.png")
    report = index_catalogue(catalogue, tmp_path / "store")
    skipped = dict(report.skipped)
    assert set(skipped) == {"chair/chair-0/broken.jpg", "chair/chair-0/empty.png"}
    assert all(reason for reason in skipped.values())
    # Said of a catalogue file, not of an upload: no advice to upload it again.
    assert skipped["chair/chair-0/empty.png"] == "The file is empty (0 bytes)"
    assert not any("upload" in reason for reason in skipped.values())
    assert report.images == 25
    # Skipped files do not make the index look out of date.
    assert index_is_current(catalogue, tmp_path / "store")


def test_manifest_change_makes_index_out_of_date(catalogue, tmp_path):
    store = tmp_path / "store"
    index_catalogue(catalogue, store)
    manifest = catalogue / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("Test lamp 1", "Arc lamp"))
    assert not index_is_current(catalogue, store)
    report = index_catalogue(catalogue, store)
    assert report.embedded == 0
    names = {item.name for item in open_store(store, get_spec("efficientnet_lite0")).images}
    assert "Arc lamp" in names


def _entries_that_cannot_be_read(catalogue, tmp_path):
    """A dangling link, a link to itself, a FIFO named like a photo, a link looping to its folder."""
    folder = catalogue / "chair" / "chair-0"
    (folder / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (folder / "itself.jpg").symlink_to(folder / "itself.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "loop").symlink_to(catalogue / "chair")
    return {
        "chair/chair-0/dangling.jpg": "broken symbolic link",
        "chair/chair-0/itself.jpg": "cannot be read",
        "chair/chair-0/pipe.jpg": "not a regular file",
        "chair/chair-0/loop/": "link back into its own folder",
    }


def test_bad_gallery_entries_are_skipped_and_listed(catalogue, tmp_path):
    expected = _entries_that_cannot_be_read(catalogue, tmp_path)
    report = index_catalogue(catalogue, tmp_path / "store")  # would hang on the FIFO or raise before
    skipped = dict(report.skipped)
    for path, reason in expected.items():
        assert reason in skipped[path], (path, skipped.get(path))
    assert report.images == 24
    assert index_is_current(catalogue, tmp_path / "store")


def test_files_and_folders_without_read_permission_are_skipped(catalogue, tmp_path, monkeypatch):
    from pathlib import Path

    unreadable_file = catalogue / "lamp" / "lamp-0" / "view1.jpg"
    unreadable_folder = catalogue / "table" / "table-1"
    if os.geteuid() == 0:  # root reads everything: make the permission checks fail as they do for users
        real_access, real_iterdir = os.access, Path.iterdir
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != unreadable_file and real_access(path, mode))

        def iterdir(self):
            if self == unreadable_folder:
                raise PermissionError(13, "Permission denied")
            return real_iterdir(self)

        monkeypatch.setattr(Path, "iterdir", iterdir)
    else:
        unreadable_file.chmod(0)
        unreadable_folder.chmod(0)
    report = index_catalogue(catalogue, tmp_path / "store")
    skipped = dict(report.skipped)
    assert "permission denied" in skipped["lamp/lamp-0/view1.jpg"]
    assert "folder cannot be read" in skipped["table/table-1/"]
    assert report.images == 21


def test_a_file_that_fails_while_hashed_is_skipped(catalogue, tmp_path, monkeypatch):
    from engine import indexing

    real_digest = indexing.file_digest

    def digest(path):
        if path.name == "view0.jpg" and path.parent.name == "lamp-2":
            raise PermissionError(13, "Permission denied")
        return real_digest(path)

    monkeypatch.setattr(indexing, "file_digest", digest)
    report = index_catalogue(catalogue, tmp_path / "store")
    assert "Permission denied" in dict(report.skipped)["lamp/lamp-2/view0.jpg"]
    assert report.images == 23


def test_colours_are_stored_and_a_store_without_them_is_updated_without_re_embedding(catalogue, tmp_path):
    import json

    from engine.store.versions import current_version
    from tests.conftest import product_colour

    store = tmp_path / "store"
    index_catalogue(catalogue, store)
    stored = open_store(store, get_spec("efficientnet_lite0"))
    chair = next(item for item in stored.images if item.product_id == "chair-1")
    expected = np.array(product_colour(0, 1))
    found = np.array([int(chair.colours[0].hex[i : i + 2], 16) for i in (1, 3, 5)])
    assert np.abs(found - expected).max() < 20  # the drawn chair's colour, not the white backdrop

    # A store written before colours existed (format 1): reused vectors, colours computed.
    meta_path = current_version(store) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(as_older_format(meta, 1)))
    assert not index_is_current(catalogue, store)
    report = index_catalogue(catalogue, store)
    assert report.embedded == 0 and report.reused == 24 and report.coloured == 24
    assert "older version" in report.repaired
    assert open_store(store, get_spec("efficientnet_lite0")).images == stored.images


def test_a_new_colour_method_recomputes_the_colours_only(catalogue, tmp_path, monkeypatch):
    import engine.colours
    import engine.store.versions

    store = tmp_path / "store"
    index_catalogue(catalogue, store)
    newer = engine.colours.COLOUR_METHOD + 1
    for module in (engine.colours, engine.store.versions, engine.indexing):
        monkeypatch.setattr(module, "COLOUR_METHOD", newer)
    assert not index_is_current(catalogue, store)
    report = index_catalogue(catalogue, store)
    assert report.embedded == 0 and report.coloured == 24 and "colours of method" in report.repaired
    assert read_meta(store).colour_method == newer
    assert index_is_current(catalogue, store)


def test_batches_are_processed_a_core_each_and_come_back_in_order(monkeypatch):
    import threading

    from engine import indexing
    from engine.batches import ImageJob
    from engine.networks import thread_count

    seen = []

    def process(batch, backbone, min_side):
        seen.append((threading.get_ident(), thread_count()))
        threading.Event().wait(0.01 * (5 - batch[0].position))  # later batches finish first
        return [job.position for job in batch]

    monkeypatch.setattr(indexing, "process_batch", process)
    batches = [[ImageJob(i, f"{i}.jpg", True)] for i in range(5)]
    assert list(indexing._processed_here(batches, None, 224)) == [[0], [1], [2], [3], [4]]
    assert {threads for _, threads in seen} == {1}
    assert len({thread for thread, _ in seen}) == min(indexing.CORES, 5)
