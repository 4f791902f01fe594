"""The broken-store matrix: every way a store can be damaged, seen through the CLI as a user would.

For each corruption, ``info`` and ``search`` must say the store is damaged (a message, no traceback),
and re-running ``index`` must repair it: afterwards ``search`` works and ``info`` says "up to date".
"""

import json
import shutil

import numpy as np
import pytest

from engine.cli import main
from tests.conftest import as_older_format
from engine.store.versions import current_version


def _live(store):
    return current_version(store)


def _edit_meta(store, change):
    path = _live(store) / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _set_item(field, value):
    def change(meta):
        meta["images"][3][field] = value
    return change


def _drop_digest(meta):
    del meta["images"][0]["digest"]


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


def _zero_rows(rows):
    def change(vectors):
        vectors[rows] = 0
        return vectors
    return change


def _permute_rows(vectors):
    return vectors[np.roll(np.arange(len(vectors)), 5)].copy()


def _foreign_vectors(vectors):
    rng = np.random.default_rng(7)
    other = rng.standard_normal(vectors.shape).astype(np.float32)
    return other / np.linalg.norm(other, axis=1, keepdims=True)


def _zero_filled(name):
    """What a crash leaves of a file whose write was never flushed: its size, and zeros."""
    def corrupt(store):
        path = _live(store) / name
        path.write_bytes(bytes(path.stat().st_size))
    return corrupt


def _swap(first, second):
    def corrupt(store):
        live = _live(store)
        (live / first).rename(live / "swap.tmp")
        (live / second).rename(live / first)
        (live / "swap.tmp").rename(live / second)
    return corrupt


def _drop_item(meta):
    del meta["images"][5]
    for row, item in enumerate(meta["images"]):
        item["row"] = row


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
    "every vector zeroed, header kept": _vectors(_zero_rows(slice(None))),
    "one vector zeroed": _vectors(_zero_rows([4])),
    "vectors permuted, header kept": _vectors(_permute_rows),
    "another store's vectors": _vectors(_foreign_vectors),
    "vectors.npy zero-filled (an unsynced write)": _zero_filled("vectors.npy"),
    "a category index zero-filled (an unsynced write)": _zero_filled("table.usearch"),
    "category indexes swapped (chair <-> lamp)": _swap("chair.usearch", "lamp.usearch"),
    "an item dropped from meta.json": lambda store: _edit_meta(store, _drop_item),
}
# Damage confined to files derived from the vectors: the repair must not re-embed anything.
VECTORS_INTACT = {"CURRENT is missing", "CURRENT is empty", "CURRENT is a folder", "CURRENT is binary garbage",
                  "CURRENT names a missing version", "CURRENT names a path outside", "classifier.npz garbage",
                  "classifier.npz deleted", "all.usearch truncated", "a category index garbage",
                  "a category index deleted", "a category index zero-filled (an unsynced write)",
                  "category indexes swapped (chair <-> lamp)"}
# Damage to the vectors themselves: what index must re-embed, and no more (it says what it reused).
REEMBEDDED = {"every vector zeroed, header kept": 24, "one vector zeroed": 1, "vectors permuted, header kept": 24,
              "another store's vectors": 24, "vectors.npy zero-filled (an unsynced write)": 24, "vectors with a NaN": 1}


@pytest.fixture(scope="module")
def pristine(built_store):
    return built_store


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_index_repairs_every_corruption(name, pristine, tmp_path, capsys):
    catalogue, built = pristine
    store = tmp_path / "store"
    shutil.copytree(built, store)
    CORRUPTIONS[name](store)
    query = str(catalogue / "lamp" / "lamp-1" / "view0.jpg")

    assert main(["info", "--store", str(store)]) in (1, 2)
    said = capsys.readouterr()
    assert "up to date" not in said.out
    assert "damaged" in said.out + said.err or "error:" in said.err
    assert "Traceback" not in said.err

    assert main(["search", "--store", str(store), query]) == 2
    said = capsys.readouterr()
    assert said.err.startswith("error: ") and "python -m engine index" in said.err

    assert main(["index", "--catalogue", str(catalogue), "--store", str(store)]) == 0
    said = capsys.readouterr().out
    assert "indexed 24 images" in said
    if name in VECTORS_INTACT:
        assert "embedded 0, reused 24" in said and "repaired the store" in said
    if name in REEMBEDDED:
        assert f"embedded {REEMBEDDED[name]}, reused {24 - REEMBEDDED[name]} " in said

    assert main(["search", "--store", str(store), query]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["results"][0]["id"] == "lamp-1"
    assert main(["info", "--store", str(store)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_a_damaged_live_version_falls_back_to_an_intact_older_one(pristine, tmp_path, capsys):
    catalogue, built = pristine
    store = tmp_path / "store"
    shutil.copytree(built, store)
    live = _live(store)
    shutil.copytree(live, store / "versions" / "00000000-older")
    (live / "vectors.npy").write_bytes(b"garbage")
    assert main(["index", "--catalogue", str(catalogue), "--store", str(store)]) == 0
    assert "embedded 0, reused 24" in capsys.readouterr().out
    assert sorted(p.name for p in (store / "versions").iterdir()) == [_live(store).name]


def test_a_store_path_that_is_a_file_is_refused_clearly(pristine, tmp_path, capsys):
    catalogue, _ = pristine
    store = tmp_path / "store"
    store.write_text("oops")
    assert main(["index", "--catalogue", str(catalogue), "--store", str(store)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert store.read_text() == "oops"


@pytest.mark.parametrize("damage, embedded", [(None, 0), (_permute_rows, 24), (_zero_rows(slice(None)), 24)])
def test_an_older_store_is_reused_only_once_a_sample_re_embeds_to_it(damage, embedded, pristine, tmp_path, capsys):
    catalogue, built = pristine
    store = tmp_path / "store"
    shutil.copytree(built, store)
    _edit_meta(store, lambda meta: as_older_format(meta, 2))
    if damage is not None:
        _vectors(damage)(store)
    assert main(["info", "--store", str(store)]) in (1, 2)
    assert "up to date" not in capsys.readouterr().out
    assert main(["index", "--catalogue", str(catalogue), "--store", str(store)]) == 0
    said = capsys.readouterr().out
    assert f"embedded {embedded}, reused {24 - embedded} " in said
    assert ("re-embedded to what is stored" if embedded == 0 else "did not re-embed" if damage is _permute_rows
            else "") in said
    assert main(["info", "--store", str(store)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_a_verified_file_is_not_hashed_again_until_it_changes(pristine, tmp_path, monkeypatch):
    from engine.store import files as store_files
    from engine.store.versions import open_store

    _, built = pristine
    store = tmp_path / "store"
    shutil.copytree(built, store)
    open_store(store)  # hashes every file once and remembers them
    hashed = []
    real = store_files.file_checksum
    monkeypatch.setattr(store_files, "file_checksum", lambda path: hashed.append(path.name) or real(path))
    open_store(store)
    assert hashed == []
    _swap("chair.usearch", "lamp.usearch")(store)
    with pytest.raises(Exception, match="chair.usearch, lamp.usearch are not what was written"):
        open_store(store)
    assert sorted(hashed) == ["chair.usearch", "lamp.usearch"]
