"""Fitting the region window scorer (the rendering of training scenes is covered by the catalogue tests)."""

from __future__ import annotations

import numpy as np

from engine.window_scorer import appearance_projection, scorer_inputs
from buildtime.train_region_scorer import OBJECT_WEIGHT, TrainingWindows, edge_offsets, fit_scorer, window_weights


def windows(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window features, unit embeddings, and whether each window fits: the first feature is high and the
    embedding points along the first axis (an interaction a linear model cannot rank alone)."""
    features = rng.normal(size=(count, 6)).astype(np.float32)
    embeddings = rng.normal(size=(count, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return features, embeddings, (features[:, 0] > 0) & (embeddings[:, 0] > 0)


def test_fit_scorer_learns_from_window_numbers_and_appearance():
    rng = np.random.default_rng(0)
    features, embeddings, fits = windows(rng, 3000)
    catalogue = rng.normal(size=(50, 8)).astype(np.float32)
    catalogue[:, 0] *= 5  # the first axis is the catalogue's main direction
    projection_mean, projection = appearance_projection(catalogue, dims=2)
    inputs = scorer_inputs(features, embeddings, projection_mean, projection)
    assert inputs.shape == (3000, 8)
    names = tuple(f"f{i}" for i in range(6))
    # The windows' edges lie off the object's by an amount the second feature tells (only near windows learn it).
    offsets = np.outer(features[:, 1], [0.2, -0.1, 0.0, 0.1])
    near = np.arange(3000) % 2 == 0
    training = TrainingWindows(inputs, fits.astype(np.float64), np.ones(len(fits)), offsets, near)
    scorer = fit_scorer(training, names, projection_mean, projection)
    assert scorer.feature_names == names
    test_features, test_embeddings, truth = windows(rng, 500)
    confidence = scorer.confidence(test_features, test_embeddings)
    assert confidence[truth].mean() > 0.7 > 0.3 > confidence[~truth].mean()
    assert ((confidence > 0.5) == truth).mean() > 0.9
    predicted = scorer.box_offsets(test_features, test_embeddings)
    error = np.abs(predicted - np.outer(test_features[:, 1], [0.2, -0.1, 0.0, 0.1])).mean()
    assert error < 0.25 * np.abs(np.outer(test_features[:, 1], [0.2, -0.1, 0.0, 0.1])).mean()


def test_edge_offsets_are_shares_of_the_window_size():
    boxes = np.array([[100.0, 50.0, 200.0, 250.0]])
    truth = np.array([[110.0, 40.0, 180.0, 250.0]])
    offsets = edge_offsets(boxes, truth)
    assert np.allclose(offsets, [[0.1, -0.05, -0.2, 0.0]])
    assert np.allclose(boxes + offsets * [100, 200, 100, 200], truth)


def test_window_weights_give_each_object_the_same_say():
    # Windows x objects: three windows fit the bed (object 0), one fits the lamp (object 1), one fits nothing.
    ious = np.array([[0.8, 0.0], [0.6, 0.1], [0.55, 0.0], [0.1, 0.7], [0.2, 0.3]])
    weights = window_weights(ious)
    assert np.allclose(weights, [OBJECT_WEIGHT / 3] * 3 + [OBJECT_WEIGHT, 1.0])
    assert np.allclose(window_weights(np.zeros((4, 0))), 1.0)  # a scene without objects
