"""Predict a photo's catalogue category from its embedding.

A multinomial logistic regression fitted on the catalogue's own embeddings at
index time: the categories are whatever folders the catalogue has, so no
ImageNet label mapping is needed, and refitting takes well under a second.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass

import numpy as np

from engine.vectors import dot_products

# L-BFGS steps of the fit: as many as the torch fit it replaced took (its figures in benchmarks/README.md).
FIT_ITERATIONS = 200


@dataclass
class CategoryClassifier:
    """Linear softmax classifier over L2-normalised embeddings."""

    categories: list[str]
    weights: np.ndarray  # [num_categories, dim]
    bias: np.ndarray  # [num_categories]

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """Category probabilities, shape [N, num_categories], rows summing to 1."""
        logits = dot_products(np.atleast_2d(embeddings), self.weights) + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for saving with ``np.savez``."""
        return {"categories": np.array(self.categories), "weights": self.weights, "bias": self.bias}

    @classmethod
    def from_arrays(cls, arrays) -> CategoryClassifier:
        return cls([str(c) for c in arrays["categories"]], np.asarray(arrays["weights"]), np.asarray(arrays["bias"]))


def import_fitter_beside() -> None:
    """Import the fit's optimiser on a thread of its own, for ``fit_classifier`` to find loaded: indexing starts it
    before embedding, so that its 0.4-0.8 s pass while the main thread waits for batches."""
    def import_quietly() -> None:
        try:
            importlib.import_module("scipy.optimize")
        except ImportError:
            pass  # fit_classifier's own import says what is missing

    threading.Thread(target=import_quietly, daemon=True).start()


def fit_classifier(
    embeddings: np.ndarray,
    labels: list[str],
    l2: float = 1e-3,
    temperature_scale: float = 16.0,
) -> CategoryClassifier:
    """Fit a category classifier on embeddings with their category labels.

    Classes are weighted equally whatever their image counts, so a category
    with few products is not drowned out. ``temperature_scale`` multiplies the
    unit-norm inputs so that plain L2 regularisation leaves confident margins.
    Minimised by L-BFGS (scipy's, at most ``FIT_ITERATIONS`` steps), in numpy: indexing needs no torch.
    """
    from scipy.optimize import minimize  # here, not above: reading a store's classifier needs no scipy
    from threadpoolctl import threadpool_limits

    categories = sorted(set(labels))
    if len(categories) == 1:
        dim = embeddings.shape[1]
        return CategoryClassifier(categories, np.zeros((1, dim), np.float32), np.zeros(1, np.float32))
    x = np.asarray(embeddings, dtype=np.float64) * temperature_scale
    y = np.array([categories.index(label) for label in labels])
    counts = np.bincount(y, minlength=len(categories))
    sample_weights = (counts.sum() / (len(categories) * counts))[y]
    sample_weights /= sample_weights.sum()  # a weighted mean, as torch's cross_entropy with class weights
    shape = (len(categories), x.shape[1])

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = params[:-len(categories)].reshape(shape), params[-len(categories):]
        logits = x @ weights.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss = -(sample_weights * log_p[np.arange(len(y)), y]).sum() + l2 * (weights ** 2).sum()
        residual = np.exp(log_p)
        residual[np.arange(len(y)), y] -= 1.0
        residual *= sample_weights[:, None]
        gradient = np.concatenate([(residual.T @ x + 2 * l2 * weights).ravel(), residual.sum(axis=0)])
        return loss, gradient

    # One BLAS thread: the products are small, and a second thread spinning between them takes the core L-BFGS
    # runs on (702 images: 1.9 s against 0.7 s; benchmarks/README.md, "Indexing: two images a pass").
    with threadpool_limits(1, user_api="blas"):
        fitted = minimize(loss_and_gradient, np.zeros(shape[0] * shape[1] + shape[0]), jac=True,
                          method="L-BFGS-B", options={"maxiter": FIT_ITERATIONS, "gtol": 1e-7})
    weights = fitted.x[:-len(categories)].reshape(shape) * temperature_scale
    return CategoryClassifier(categories, weights.astype(np.float32), fitted.x[-len(categories):].astype(np.float32))
