"""benchmarks.load end to end, small: the app started on a catalogue built by the tests, two clients."""

import json

import pytest

from benchmarks import load


@pytest.mark.slow
def test_load_benchmark_reports_a_clean_burst(built_store, tmp_path):
    catalogue, store = built_store
    output = tmp_path / "load.md"
    load.main(["--clients", "2", "--searches", "1", "--no-big-photo", "--store", str(store),
               "--catalogue", str(catalogue), "--output", str(output)])
    figures = json.loads(output.with_suffix(".json").read_text())
    assert figures["ok"] == 2 and figures["errors"] == 0 and figures["rejected"] == 0
    assert figures["page_answers"] >= 1 and figures["page_failures"] == 0
    assert figures["memory_mb"]["before"] > 100
    assert "| searches answered / errors / rejected as busy | 2 / 0 / 0 |" in output.read_text()


def test_bounds_are_enforced():
    with pytest.raises(SystemExit):
        load.main(["--clients", "500"])


def test_phone_photo_has_the_size_asked(tmp_path):
    from PIL import Image

    from tests.conftest import draw_furniture

    source = tmp_path / "render.png"
    draw_furniture("lamp", (200, 40, 40), 0).save(source)
    path = load.phone_photo(source, (640, 480), tmp_path / "photo.jpg")
    assert Image.open(path).size == (640, 480)
