"""Predict a photo's catalogue category from its embedding.

A multinomial logistic regression fitted on the catalogue's own embeddings at
index time: the categories are whatever folders the catalogue has, so no
ImageNet label mapping is needed, and refitting takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.vectors import dot_products


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
    """
    import torch  # here, not above: reading a store's classifier needs no torch

    categories = sorted(set(labels))
    if len(categories) == 1:
        dim = embeddings.shape[1]
        return CategoryClassifier(categories, np.zeros((1, dim), np.float32), np.zeros(1, np.float32))
    x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)) * temperature_scale
    y = torch.tensor([categories.index(label) for label in labels])
    counts = torch.bincount(y, minlength=len(categories)).float()
    class_weights = counts.sum() / (len(categories) * counts)

    linear = torch.nn.Linear(x.shape[1], len(categories))
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y, weight=class_weights)
        loss = loss + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    weights = (linear.weight.detach() * temperature_scale).numpy().astype(np.float32)
    return CategoryClassifier(categories, weights, linear.bias.detach().numpy().astype(np.float32))
