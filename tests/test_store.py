import dataclasses
import json

import numpy as np
import pytest

from engine.store import vector_index, versions
from engine.backbone_specs import get_spec
from engine.classify import fit_classifier
from engine.vectors import normalise
from tests.conftest import as_older_format
from engine.store.meta import DamagedStoreError, StoredImage, StaleStoreError, StoreNotFoundError
from engine.store.versions import current_version, open_store, save_store

SPEC = get_spec("efficientnet_lite0")


def tiny_index(seed=0, count=6):
    rng = np.random.default_rng(seed)
    vectors = normalise(rng.standard_normal((count, SPEC.feature_dim)))
    categories = ["bed", "lamp"] * (count // 2)
    items = [
        StoredImage(row=i, product_id=f"p{i}", category=c, path=f"{c}/p{i}.jpg", name=f"P{i}", digest=f"d{i}")
        for i, c in enumerate(categories)
    ]
    return items, vectors, fit_classifier(vectors, categories)


def test_round_trip(tmp_path):
    items, vectors, classifier = tiny_index()
    save_store(tmp_path, SPEC, tmp_path / "catalogue", items, vectors, classifier, [("x.txt", "not an image")])
    loaded = open_store(tmp_path, SPEC)
    assert [dataclasses.replace(item, vector_digest="") for item in loaded.images] == items
    assert all(len(item.vector_digest) == 16 for item in loaded.images)
    np.testing.assert_array_equal(loaded.vectors, vectors)
    assert loaded.categories == ["bed", "lamp"]
    assert loaded.skipped == [("x.txt", "not an image")]
    assert len(loaded.indexes["all"]) == 6
    assert sorted(loaded.indexes["lamp"].search(vectors[1], 3)[0].tolist()) == [1, 3, 5]
    assert loaded.indexes["lamp"].search(vectors[3], 1)[0][0] == 3


def test_missing_store_says_how_to_build(tmp_path):
    with pytest.raises(StoreNotFoundError, match="python -m engine index"):
        open_store(tmp_path / "none", SPEC)


def test_index_of_another_backbone_is_refused(tmp_path):
    items, vectors, classifier = tiny_index()
    save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    with pytest.raises(StaleStoreError, match="efficientnet_lite0"):
        open_store(tmp_path, get_spec("efficientnet_lite1"))
    changed = dataclasses.replace(SPEC, pooling="max")
    with pytest.raises(StaleStoreError, match="rebuild"):
        open_store(tmp_path, changed)


def test_crash_mid_write_keeps_previous_version(tmp_path, monkeypatch):
    items, vectors, classifier = tiny_index(seed=0)
    save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    live = current_version(tmp_path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    new_items, new_vectors, new_classifier = tiny_index(seed=1, count=4)
    monkeypatch.setattr(versions, "build_usearch", crash)
    with pytest.raises(OSError, match="disk full"):
        save_store(tmp_path, SPEC, tmp_path, new_items, new_vectors, new_classifier)
    monkeypatch.undo()

    assert current_version(tmp_path) == live
    loaded = open_store(tmp_path, SPEC)
    assert len(loaded.images) == 6
    np.testing.assert_array_equal(loaded.vectors, vectors)


def test_new_version_replaces_old_one(tmp_path):
    items, vectors, classifier = tiny_index(seed=0)
    first = save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    items, vectors, classifier = tiny_index(seed=1, count=4)
    second = save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    assert not first.exists() and second.exists()
    assert len(open_store(tmp_path, SPEC).images) == 4


def test_damaged_files_are_reported(tmp_path):
    items, vectors, classifier = tiny_index()
    folder = save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    (folder / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(DamagedStoreError, match="vectors.npy is not what was written.*python -m engine index"):
        open_store(tmp_path, SPEC)
    (folder / "meta.json").write_text("{")
    with pytest.raises(DamagedStoreError):
        open_store(tmp_path, SPEC)


def test_items_must_match_vectors(tmp_path):
    items, vectors, classifier = tiny_index()
    with pytest.raises(ValueError):
        save_store(tmp_path, SPEC, tmp_path, items[:-1], vectors, classifier)
    meta_files = list(tmp_path.rglob("meta.json"))
    assert meta_files == [] or all(json.loads(p.read_text()) for p in meta_files)


def test_images_keep_their_colours_and_bad_colours_are_damage(tmp_path):
    from engine.colours import Colour

    items, vectors, classifier = tiny_index()
    items = [dataclasses.replace(item, colours=(Colour("#2d55a0", 0.7), Colour("#ffffff", 0.2))) for item in items]
    folder = save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    assert open_store(tmp_path, SPEC).images[0].colours == items[0].colours
    meta = json.loads((folder / "meta.json").read_text())
    meta["images"][2]["colours"] = [{"hex": "blue", "share": 0.5}]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DamagedStoreError, match="image 2 has colours"):
        open_store(tmp_path, SPEC)


def test_a_store_of_the_previous_format_is_stale_and_says_how_to_update(tmp_path):
    items, vectors, classifier = tiny_index()
    folder = save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(as_older_format(meta, 1)))
    with pytest.raises(StaleStoreError, match="older version .* without product colours.*python -m engine index"):
        open_store(tmp_path, SPEC)


def test_each_index_is_exact_or_a_graph_by_its_size_as_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(vector_index, "EXACT_BELOW", 4)
    items, vectors, classifier = tiny_index()  # 6 images: 3 beds, 3 lamps
    save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    meta = versions.read_meta(tmp_path)
    assert meta.indexes["all"].kind == "hnsw" and meta.indexes["all"].dtype == vector_index.HNSW_DTYPE
    assert meta.indexes["bed"].kind == meta.indexes["lamp"].kind == "exact"
    loaded = open_store(tmp_path, SPEC)
    assert loaded.indexes["all"].choice == meta.indexes["all"]
    assert loaded.indexes["all"].search(vectors[4], 1)[0][0] == 4
    assert loaded.indexes["lamp"].search(vectors[3], 3)[0].tolist()[0] == 3


def test_i8_input_uses_the_full_range_and_keeps_the_cosines():
    rng = np.random.default_rng(0)
    vectors = normalise(rng.random((200, 1280), dtype=np.float32) ** 3)  # skewed, non-negative, like embeddings
    quantised = vector_index.index_input(vectors, "i8")
    assert quantised.dtype == np.int8 and (np.abs(quantised).max(axis=1) == 127).all()
    cosines = normalise(quantised.astype(np.float32)) @ normalise(quantised.astype(np.float32)).T
    assert np.abs(cosines - vectors @ vectors.T).max() < 0.01
    # usearch's own conversion (x 127 of the unit vector) leaves most components at a handful of levels.
    assert len(np.unique(np.rint(vectors[0] * 127))) < len(np.unique(quantised[0])) / 4
    assert vector_index.index_input(np.zeros((1, 8), np.float32), "i8").tolist() == [[0] * 8]
    assert vector_index.index_input(vectors, "f16") is vectors  # float indexes take the vectors as they are


def test_indexes_and_vectors_are_memory_mapped(tmp_path):
    items, vectors, classifier = tiny_index()
    folder = save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    loaded = open_store(tmp_path, SPEC)
    with open("/proc/self/maps", encoding="utf-8") as maps:
        mapped = maps.read()
    # Mapped files, shared by every process that opens the store, not copies read into each.
    assert str(folder / "all.usearch") in mapped and str(folder / "vectors.npy") in mapped
    assert not loaded.vectors.flags.writeable


def test_a_store_whose_index_record_is_wrong_is_damage(tmp_path):
    items, vectors, classifier = tiny_index()
    folder = save_store(tmp_path, SPEC, tmp_path, items, vectors, classifier)
    meta = json.loads((folder / "meta.json").read_text())
    del meta["indexes"]["lamp"]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DamagedStoreError, match="'indexes' does not describe"):
        open_store(tmp_path, SPEC)


def test_the_index_choice_follows_the_catalogue_size():
    small, large, huge = (vector_index.choose_index(n) for n in
                          (vector_index.EXACT_BELOW - 1, vector_index.EXACT_BELOW, vector_index.WIDE_SEARCH_FROM))
    assert small.kind == "exact" and small.dtype == "f32"
    assert large.kind == huge.kind == "hnsw" and large.dtype == vector_index.HNSW_DTYPE
    assert large.expansion_search < huge.expansion_search
