"""What page and API share: the store opened in the background, the settings, the idle trim, the folders."""

from __future__ import annotations

import shutil
import time

import service
from engine.search import SearchEngine
from service import AppSettings, CatalogueIndex, instance_folders


def test_a_broken_store_is_rebuilt_on_start(built_store, tmp_path):
    catalogue, built = built_store
    store = tmp_path / "store"
    shutil.copytree(built, store)
    (store / "CURRENT").write_text("")
    index = CatalogueIndex(AppSettings(catalogue=catalogue, store=store))
    index.prepare()
    assert index.error == "" and isinstance(index.engine, SearchEngine)
    assert index.status().startswith("Catalogue: 12 products")


def test_the_models_are_loaded_before_the_page_says_it_is_ready(built_store, tmp_path, monkeypatch):
    catalogue, built = built_store
    loaded = []
    monkeypatch.setattr(SearchEngine, "load_models", lambda engine: loaded.append(engine))
    index = CatalogueIndex(AppSettings(catalogue=catalogue, store=built))
    index.prepare()
    assert loaded == [index.engine]


def test_an_unexpected_failure_is_shown_not_loading_forever(built_store, tmp_path, monkeypatch):
    catalogue, _ = built_store

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service, "open_current", broken)
    index = CatalogueIndex(AppSettings(catalogue=catalogue, store=tmp_path / "store"))
    index.prepare()
    assert index.engine is None
    assert index.status().startswith("⚠️") and "disk on fire" in index.status()


def test_a_shops_page_keeps_its_last_store_while_its_feed_cannot_be_read(shop_store, tmp_path, caplog):
    store = tmp_path / "store"
    shutil.copytree(shop_store, store)
    index = CatalogueIndex(AppSettings(feed="http://127.0.0.1:9/feed.tsv", store=store))  # nothing listens there
    index.prepare()
    assert index.error == "" and index.status().startswith("Catalogue: 12 products")
    assert "the feed could not be indexed" in caplog.text
    empty = CatalogueIndex(AppSettings(feed=str(tmp_path / "missing.tsv"), store=tmp_path / "none"))
    empty.prepare()
    assert empty.engine is None and "no index in" in empty.status()


def test_settings_come_from_the_environment_and_old_names_still_work(tmp_path, caplog):
    settings = AppSettings.from_environment({"FURNITURE_CATALOGUE": str(tmp_path), "GRADIO_SERVER_PORT": "8000"})
    assert settings.catalogue == tmp_path and settings.port == 8000 and settings.host == "127.0.0.1"
    shop = AppSettings.from_environment({"FURNITURE_FEED": "https://s.example/f.tsv", "FURNITURE_NOTICE": "demo"})
    assert (shop.feed, shop.notice) == ("https://s.example/f.tsv", "demo")
    old = AppSettings.from_environment({"FURNITURE_GALLERY": str(tmp_path / "shop")})
    assert old.catalogue == tmp_path / "shop" and "FURNITURE_GALLERY is now called FURNITURE_CATALOGUE" in caplog.text


def test_freed_memory_goes_back_only_once_the_page_is_idle(monkeypatch):
    trims = []

    class FakeLibc:
        def malloc_trim(self, pad):
            trims.append(pad)

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


def test_each_instance_has_its_own_folders_and_clears_those_of_instances_gone(tmp_path):
    gone = tmp_path / "999999999"  # no such process
    (gone / "uploads").mkdir(parents=True)
    (gone / "uploads" / "photo.jpg").write_bytes(b"x")
    (tmp_path / "1").mkdir()  # process 1 (init) is alive: its folder stays
    folders = instance_folders(tmp_path)
    assert not gone.exists() and (tmp_path / "1").exists()
    assert folders.uploads.is_dir() and folders.pictures.is_dir() and not list(folders.uploads.iterdir())
