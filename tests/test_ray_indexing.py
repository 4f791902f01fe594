"""Indexing on Ray: a local Ray instance writes the same store as the local path, and stays incremental."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from engine.cli import main
from engine.index_store import open_store
from engine.indexing import index_catalog
from tests.conftest import draw_furniture

ray = pytest.importorskip("ray", reason="Ray is an optional extra (requirements-scale.txt); make test installs it")


@pytest.mark.slow
def test_ray_writes_the_local_store_and_embeds_only_what_changed(gallery, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    index_catalog(gallery, local)
    progress = []
    try:
        report = index_catalog(gallery, on_ray, ray_address="local", ray_workers=2,
                               progress=lambda done, total: progress.append((done, total)))
        assert report.embedded == 24 and progress[-1] == (24, 24)
        expected, found = open_store(local), open_store(on_ray)
        assert found.items == expected.items  # same products, digests, colours, in the same order
        # Same vectors up to float rounding: the workers run the network on fewer threads each.
        np.testing.assert_allclose(found.vectors, expected.vectors, atol=1e-6)

        draw_furniture("lamp", (10, 200, 30), 1).save(gallery / "lamp" / "lamp-9.jpg")
        (gallery / "chair" / "chair-1" / "view0.jpg").unlink()
        again = index_catalog(gallery, on_ray, ray_address="local", ray_workers=2)
        assert (again.embedded, again.reused, again.removed) == (1, 23, 1)
    finally:
        ray.shutdown()


def test_workers_without_ray_and_ray_missing_are_clear_errors(gallery, tmp_path, capsys, monkeypatch):
    assert main(["index", "--gallery", str(gallery), "--store", str(tmp_path / "s"), "--workers", "2"]) == 2
    assert "--workers is for indexing on Ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["index", "--gallery", str(gallery), "--store", str(tmp_path / "s"), "--ray"]) == 2
    assert "pip install -r requirements-scale.txt" in capsys.readouterr().err
