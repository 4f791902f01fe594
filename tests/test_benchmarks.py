"""Benchmark helpers: the benchmark's default variant must be exactly the product's embedding in float32 (on a CPU
with VNNI the product runs it in 8 bits, ~0.998 in cosine: ``tests/test_networks.py``)."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import non_furniture_images
from benchmarks.quality import product_scores, suggest_threshold
from benchmarks.quality_variants import DEFAULT, Whitening, combine, pooled_features
from engine.backbone_specs import get_spec
from engine.backbones import build_backbone
from engine.embed import embed_images
from engine.images import preprocess
from engine.networks import Backbone
from tests.conftest import draw_furniture


def test_default_variant_matches_product_embedding():
    extractor = build_backbone(DEFAULT.backbone)
    images = [draw_furniture("chair", (200, 30, 30), 0), draw_furniture("lamp", (20, 90, 200), 1)]
    wanted = {(layer, DEFAULT.pooling) for layer in DEFAULT.layers}
    ours = combine(pooled_features(extractor, torch.from_numpy(preprocess(images, DEFAULT.preprocessing())), wanted), DEFAULT)
    np.testing.assert_allclose(ours, embed_images(Backbone(get_spec(DEFAULT.backbone)), images), atol=1e-5)


def test_product_scores_take_each_products_best_image():
    similarities = np.array([[0.1, 0.9, 0.3, 0.2]], np.float32)
    assert product_scores(similarities, np.array([0, 0, 1, 1]), 2).tolist() == [[np.float32(0.9), np.float32(0.3)]]


def test_whitening_decorrelates_catalogue():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
    whitened = (vectors - vectors.mean(0)) @ Whitening.learn(vectors, dims=8).projection
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(8), atol=1e-6)


def test_threshold_separates_and_distractors_are_images():
    assert 0.5 < suggest_threshold([0.8, 0.9, 0.95], [0.2, 0.3, 0.5]) <= 0.8
    assert all(image.mode == "RGB" for image in non_furniture_images(count=5, size=(64, 48)))


def test_colour_benchmark_pairs_each_recolouring_with_its_original():
    from benchmarks.colour import main_colour, variant_pairs
    from engine.colours import Colour

    products = {"bed1", "bed1-blue", "bed1-dusty", "sofa-red", "chair-x-teal", "chair-x"}
    assert variant_pairs(products) == [("bed1", "bed1-blue", "blue"), ("chair-x", "chair-x-teal", "teal")]
    images = [(Colour("#f5f5f5", 0.5), Colour("#2850b0", 0.4)), (Colour("#2850b0", 0.6),)]
    assert main_colour(images).name == "blue"
    assert main_colour(images, avoid={"blue"}).name == "white"


def test_catalogue_like_vectors_follow_the_real_profile_and_uniform_ones_do_not():
    from benchmarks import catalogue_vectors as cv
    from engine.vectors import normalise

    rng = np.random.default_rng(0)
    centres = {c: normalise(rng.standard_normal((1, 64))) for c in ("bed", "chair", "lamp")}
    groups, categories = [], []
    for category, centre in centres.items():
        for _ in range(30):  # 30 products of 4 images around each category's centre
            product = centre + 0.5 * rng.standard_normal((1, 64)) / 8
            groups.append(normalise(product + 0.2 * rng.standard_normal((4, 64)) / 8))
            categories.append(category)
    model = cv.fit(groups, categories)
    assert model.variant_spread in cv.SPREADS
    vectors, _ = cv.catalogue(model, 1000, 4, seed=1)
    assert vectors.shape == (1000, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    real = np.concatenate(groups)
    labels = np.repeat(np.arange(len(groups)), 4)
    wanted = cv.profile(real, labels)

    def gap(sample):
        figures = cv.profile(sample[: len(real)], labels)
        return sum(abs(figures[name] - wanted[name]) for name in cv.COSINE_FIGURES)

    assert gap(vectors) < 0.25 * gap(cv.uniform(len(real), 64, 2))
