"""The broken-store matrix: every way a store can be damaged, seen through the CLI as a user would.

For each corruption, ``info`` and ``search`` must say the store is damaged (a message, no traceback),
and re-running ``index`` must repair it: afterwards ``search`` works and ``info`` says "up to date".
"""

import json
import shutil

import numpy as np
import pytest

from engine.cli import main
from engine.index_store import current_version


def _live(store):
    return current_version(store)


def _edit_meta(store, change):
    path = _live(store) / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _set_item(field, value):
    def change(meta):
        meta["items"][3][field] = value
    return change


def _drop_digest(meta):
    del meta["items"][0]["digest"]


def _truncate(name, keep=0.5):
    def corrupt(store):
        path = _live(store) / name
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return corrupt


def _write(name, data: bytes):
    def corrupt(store):
        (_live(store) / name).write_bytes(data)
    return corrupt


def _delete(name):
    def corrupt(store):
        (_live(store) / name).unlink()
    return corrupt


def _vectors(change):
    def corrupt(store):
        path = _live(store) / "vectors.npy"
        np.save(path, change(np.load(path)))
    return corrupt


def _current_is_folder(store):
    (store / "CURRENT").unlink()
    (store / "CURRENT").mkdir()


def _versions_is_file(store):
    shutil.rmtree(store / "versions")
    (store / "versions").write_text("not a folder")


def _with_nan(vectors):
    vectors[2, 5] = np.nan
    return vectors


CORRUPTIONS = {
    "CURRENT names a missing version": lambda store: (store / "CURRENT").write_text("20990101-000000-deadbeef\n"),
    "CURRENT is empty": lambda store: (store / "CURRENT").write_text(""),
    "CURRENT is binary garbage": lambda store: (store / "CURRENT").write_bytes(b"\xff\xfe\x00garbage"),
    "CURRENT names a path outside": lambda store: (store / "CURRENT").write_text("../../etc\n"),
    "CURRENT is missing": lambda store: (store / "CURRENT").unlink(),
    "CURRENT is a folder": _current_is_folder,
    "versions/ deleted": lambda store: shutil.rmtree(store / "versions"),
    "versions is a file": _versions_is_file,
    "meta.json truncated": _truncate("meta.json"),
    "meta.json empty": _write("meta.json", b""),
    "meta.json is binary garbage": _write("meta.json", b"\x89\xff\xfe garbage \x00"),
    "meta.json holds [1, 2]": _write("meta.json", b"[1, 2]"),
    "meta.json deleted": _delete("meta.json"),
    "meta.json names an unknown backbone": lambda store: _edit_meta(store, lambda m: m["backbone"].update(name="vgg99")),
    "meta.json of another format version": lambda store: _edit_meta(store, lambda m: m.update(format_version=99)),
    "an item lacks its digest": lambda store: _edit_meta(store, _drop_digest),
    "a row number out of range": lambda store: _edit_meta(store, _set_item("row", 999)),
    "an item's category is not listed": lambda store: _edit_meta(store, _set_item("category", "wardrobe")),
    "a category the classifier lacks": lambda store: _edit_meta(store, lambda m: m["categories"].append("wardrobe")),
    "vectors of the wrong width": _vectors(lambda v: v[:, :640].copy()),
    "vectors with a row missing": _vectors(lambda v: v[:-1].copy()),
    "vectors with a NaN": _vectors(_with_nan),
    "vectors.npy garbage": _write("vectors.npy", b"garbage"),
    "vectors.npy deleted": _delete("vectors.npy"),
    "classifier.npz garbage": _write("classifier.npz", b"PK garbage"),
    "classifier.npz deleted": _delete("classifier.npz"),
    "all.usearch truncated": _truncate("all.usearch"),
    "a category index garbage": _write("lamp.usearch", b"garbage" * 50),
    "a category index deleted": _delete("chair.usearch"),
}
# Damage confined to files derived from the vectors: the repair must not re-embed anything.
VECTORS_INTACT = {"CURRENT is missing", "CURRENT is empty", "CURRENT is a folder", "CURRENT is binary garbage",
                  "CURRENT names a missing version", "CURRENT names a path outside", "classifier.npz garbage",
                  "classifier.npz deleted", "all.usearch truncated", "a category index garbage",
                  "a category index deleted"}


@pytest.fixture(scope="module")
def pristine(built_store):
    return built_store


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_index_repairs_every_corruption(name, pristine, tmp_path, capsys):
    gallery, built = pristine
    store = tmp_path / "store"
    shutil.copytree(built, store)
    CORRUPTIONS[name](store)
    query = str(gallery / "lamp" / "lamp-1" / "view0.jpg")

    assert main(["info", "--store", str(store)]) in (1, 2)
    said = capsys.readouterr()
    assert "up to date" not in said.out
    assert "damaged" in said.out + said.err or "error:" in said.err
    assert "Traceback" not in said.err

    assert main(["search", "--store", str(store), query]) == 2
    said = capsys.readouterr()
    assert said.err.startswith("error: ") and "python -m engine index" in said.err

    assert main(["index", "--gallery", str(gallery), "--store", str(store)]) == 0
    said = capsys.readouterr().out
    assert "indexed 24 images" in said
    if name in VECTORS_INTACT:
        assert "embedded 0, reused 24" in said and "repaired the store" in said

    assert main(["search", "--store", str(store), query]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["results"][0]["id"] == "lamp-1"
    assert main(["info", "--store", str(store)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_a_damaged_live_version_falls_back_to_an_intact_older_one(pristine, tmp_path, capsys):
    gallery, built = pristine
    store = tmp_path / "store"
    shutil.copytree(built, store)
    live = _live(store)
    shutil.copytree(live, store / "versions" / "00000000-older")
    (live / "vectors.npy").write_bytes(b"garbage")
    assert main(["index", "--gallery", str(gallery), "--store", str(store)]) == 0
    assert "embedded 0, reused 24" in capsys.readouterr().out
    assert sorted(p.name for p in (store / "versions").iterdir()) == [_live(store).name]


def test_a_store_path_that_is_a_file_is_refused_clearly(pristine, tmp_path, capsys):
    gallery, _ = pristine
    store = tmp_path / "store"
    store.write_text("oops")
    assert main(["index", "--gallery", str(gallery), "--store", str(store)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert store.read_text() == "oops"
