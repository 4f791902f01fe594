"""Benchmark helpers: the benchmark's default variant must be exactly the product's embedding."""

from __future__ import annotations

import numpy as np

from benchmarks.common import non_furniture_images
from benchmarks.quality import DEFAULT, Whitening, combine, pooled_features, product_scores, suggest_threshold
from engine.backbones import load_backbone
from engine.embed import embed_images
from engine.images import preprocess
from tests.conftest import draw_furniture


def test_default_variant_matches_product_embedding():
    extractor = load_backbone(DEFAULT.backbone)
    images = [draw_furniture("chair", (200, 30, 30), 0), draw_furniture("lamp", (20, 90, 200), 1)]
    wanted = {(layer, DEFAULT.pooling) for layer in DEFAULT.layers}
    ours = combine(pooled_features(extractor, preprocess(images, DEFAULT.preprocessing()), wanted), DEFAULT)
    np.testing.assert_allclose(ours, embed_images(extractor, images), atol=1e-5)


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
