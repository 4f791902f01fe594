"""Fitting the region window scorer (the rendering of training scenes is covered by the gallery tests)."""

from __future__ import annotations

import numpy as np

from scripts.train_region_scorer import fit_scorer


def test_fit_scorer_learns_which_windows_fit():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 6)).astype(np.float32)
    # Windows fit when the first two numbers are both high (an interaction a linear model cannot rank alone).
    targets = ((features[:, 0] > 0) & (features[:, 1] > 0)).astype(np.float64)
    names = tuple(f"f{i}" for i in range(6))
    scorer = fit_scorer(features, targets, names)
    assert scorer.feature_names == names
    test = rng.normal(size=(500, 6)).astype(np.float32)
    truth = (test[:, 0] > 0) & (test[:, 1] > 0)
    confidence = scorer.confidence(test)
    assert confidence[truth].mean() > 0.7 > 0.3 > confidence[~truth].mean()
    assert ((confidence > 0.5) == truth).mean() > 0.9
