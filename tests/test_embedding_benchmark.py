"""The embedding levers benchmark (``benchmarks.embedding``) and the domain-randomised views it trains on."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from benchmarks.embedding import LEVERS, main, train_projection
from buildtime.domain_views import VIEW_SIDE, cut_out, domain_view
from tests.conftest import draw_furniture
from tests.test_real_benchmark import run_on_ikea_like


def test_a_cut_out_keeps_the_product_and_drops_its_backdrop():
    photo = Image.new("RGB", (300, 200), (235, 235, 235))
    photo.paste(Image.new("RGB", (100, 80), (120, 40, 30)), (150, 60))
    cut = cut_out(photo)
    assert cut.mode == "RGBA" and abs(cut.width - 100) <= 2 and abs(cut.height - 80) <= 2
    assert cut.getchannel("A").getpixel((50, 40)) == 255  # the product is opaque
    assert cut_out(Image.new("RGB", (50, 50), "white")).getchannel("A").getextrema() == (0, 0)  # nothing but backdrop


def test_views_differ_and_are_reproducible():
    cuts = [cut_out(draw_furniture(c, (40, 90, 160), 1)) for c in ("chair", "table")]
    first = [np.asarray(domain_view(cuts[0], cuts, random.Random(seed))) for seed in (1, 2)]
    again = np.asarray(domain_view(cuts[0], cuts, random.Random(1)))
    assert max(first[0].shape[:2]) == VIEW_SIDE
    assert np.array_equal(first[0], again)
    assert first[0].shape != first[1].shape or not np.array_equal(first[0], first[1])


def test_a_projection_pulls_views_of_one_product_together():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 32)).astype(np.float32)
    nuisance = rng.standard_normal((6 * 8, 32)).astype(np.float32) * 1.5  # what varies between views
    labels = np.repeat(np.arange(6), 8)
    vectors = centres[labels] + nuisance
    projection = train_projection(vectors, labels, rank=8, steps=200, keep=1e-4)

    def spread(v):
        unit = v / np.linalg.norm(v, axis=1, keepdims=True)
        return np.mean([1 - (unit[labels == c] @ unit[labels == c].T).mean() for c in range(6)])

    assert projection.shape == (32, 32)
    assert spread(vectors @ projection.T) < spread(vectors)


@pytest.mark.slow
def test_the_benchmark_measures_every_lever_and_writes_its_table(tmp_path, built_store):
    catalogue, _ = built_store
    output = run_on_ikea_like(main, tmp_path, catalogue, "embedding", "--views", "2")
    results = json.loads(output.with_suffix(".json").read_text())
    assert [row["lever"] for row in results["levers"]] == [lever.name for lever in LEVERS]
    for row in results["levers"]:
        assert 0.0 <= row["own"]["r1"] <= row["own"]["r10"] <= 1.0
        assert 0.0 <= row["bundled"]["accuracy"] <= 1.0
    assert results["levers"][0]["embeddings_per_query"] == 3 and results["levers"][1]["embeddings_per_query"] == 5
    assert "| adopted + index-time adaptation |" in output.with_suffix(".md").read_text()
