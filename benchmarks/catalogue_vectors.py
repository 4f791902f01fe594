"""Catalogue-like embeddings at any size, for benchmarks at scales no bundled catalogue reaches (issue #13).

A mixture fitted to real embeddings grouped by product and category (the bundled catalogue's images and
the held-out photos of its products), in three levels, as a shop's catalogue grows:

* models: one Gaussian per category, with that category's mean and the covariance of its products' mean
  embeddings (low rank plus isotropic), weighted by the category's share of products;
* products: each model comes in 1 + Poisson(``VARIANTS_PER_MODEL``) products (colours, sizes), moved from
  the model by ``variant_spread`` times the category covariance;
* images: each product's images add a Gaussian with the real covariance between images of one product.

``variant_spread`` is calibrated so that a synthetic catalogue of the real one's size has the real
similarity profile (``fit``); ``profile`` compares the two, and uniform random vectors (the worst case).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.vectors import normalise

# Principal directions kept for each covariance; the rest of the variance is spread evenly.
RANK = 128
# The bundled catalogue: 46 recolourings over 188 models.
VARIANTS_PER_MODEL = 0.25
SPREADS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
# The profile figures the spread is calibrated on.
COSINE_FIGURES = ("random pair cosine (mean)", "nearest cosine p10", "nearest cosine p50", "nearest cosine p90",
                  "11th nearest cosine p50")


@dataclass
class Gaussian:
    """A Gaussian in D dimensions: mean, principal directions x standard deviations, std of the remainder."""

    mean: np.ndarray
    basis: np.ndarray
    rest: float

    def sample(self, count: int, rng: np.random.Generator, scale: float = 1.0, centres: np.ndarray | None = None):
        noise = rng.standard_normal((count, len(self.basis)), dtype=np.float32) @ self.basis
        noise += self.rest * rng.standard_normal((count, len(self.mean)), dtype=np.float32)
        return (self.mean if centres is None else centres) + scale * noise


@dataclass
class CatalogueModel:
    categories: list[Gaussian]  # the products' mean embeddings, per category
    weights: np.ndarray  # each category's share of products
    within: Gaussian  # an image around its product's mean (mean 0)
    variant_spread: float = 0.2


def fit_gaussian(points: np.ndarray, rank: int = RANK) -> Gaussian:
    mean = points.mean(axis=0)
    _, singular, directions = np.linalg.svd(points - mean, full_matrices=False)
    variances = singular**2 / max(1, len(points) - 1)
    rank = min(rank, len(variances))
    rest = float(np.sqrt(variances[rank:].sum() / points.shape[1]))
    return Gaussian(mean.astype(np.float32), (directions[:rank] * np.sqrt(variances[:rank])[:, None]).astype(np.float32), rest)


def fit(groups: list[np.ndarray], categories: list[str], seed: int = 0) -> CatalogueModel:
    """The model of products given as groups of unit embeddings (one [n_i, D] array per product, n_i >= 2) and
    their categories, with the ``variant_spread`` whose catalogue of the real one's size has the closest
    similarity profile."""
    names = sorted(set(categories))
    means = np.stack([group.mean(axis=0) for group in groups])
    labels = np.array([names.index(category) for category in categories])
    per_category = [fit_gaussian(means[labels == c]) for c in range(len(names))]
    weights = np.bincount(labels, minlength=len(names)) / len(labels)
    within = fit_gaussian(np.concatenate([group - group.mean(axis=0) for group in groups]))
    within.mean = np.zeros_like(within.mean)
    model = CatalogueModel(per_category, weights, within)

    real = np.concatenate(groups)
    real_profile = profile(real, np.repeat(np.arange(len(groups)), [len(g) for g in groups]), seed)
    views = round(len(real) / len(groups))

    def mismatch(spread: float) -> float:
        model.variant_spread = spread
        synthetic, _ = catalogue(model, len(real), views, seed)
        figures = profile(synthetic, np.arange(len(synthetic)) // views, seed)
        return sum(abs(figures[name] - real_profile[name]) for name in COSINE_FIGURES)

    model.variant_spread = min(SPREADS, key=mismatch)
    return model


def sample_products(model: CatalogueModel, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` product centres (not normalised): models drawn per category, each in one or more variants."""
    centres = []
    while sum(len(c) for c in centres) < count:
        models = max(1, round((count - sum(len(c) for c in centres)) / (1 + VARIANTS_PER_MODEL)))
        category = rng.choice(len(model.weights), models, p=model.weights)
        for c in np.unique(category):
            drawn = model.categories[c].sample(int((category == c).sum()), rng)
            variants = 1 + rng.poisson(VARIANTS_PER_MODEL, len(drawn))
            parents = np.repeat(drawn, variants, axis=0)
            centres.append(model.categories[c].sample(len(parents), rng, model.variant_spread, parents))
    return np.concatenate(centres)[rng.permutation(sum(len(c) for c in centres))[:count]]


def sample_images(model: CatalogueModel, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One unit embedding per centre: the product seen once more (another view, light, photo)."""
    return normalise(model.within.sample(len(centres), rng, centres=centres))


def catalogue(model: CatalogueModel, count: int, views: int, seed: int, chunk: int = 60_000):
    """``count`` catalogue embeddings, ``views`` per product (float32, unit rows), and the product centres."""
    rng = np.random.default_rng(seed)
    centres = sample_products(model, -(-count // views), rng)
    vectors = np.empty((count, len(model.within.mean)), np.float32)
    for start in range(0, count, chunk):
        rows = np.arange(start, min(count, start + chunk))
        vectors[rows] = sample_images(model, centres[rows // views], rng)
    return vectors, centres


def uniform(count: int, dims: int, seed: int) -> np.ndarray:
    """Uniform random unit vectors: no clusters, distances concentrated near 0 (the hardest case for HNSW)."""
    return normalise(np.random.default_rng(seed).standard_normal((count, dims), dtype=np.float32))


def profile(vectors: np.ndarray, products: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Distance and neighbour figures of a set of embeddings with their product labels."""
    rng = np.random.default_rng(seed)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    best = similarity.max(axis=1)
    pairs = rng.integers(0, len(vectors), (5000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    eleventh = -np.partition(-similarity, 10, axis=1)[:, 10]
    return {
        "random pair cosine (mean)": float(similarity[pairs[:, 0], pairs[:, 1]].mean()),
        "nearest cosine p10": float(np.percentile(best, 10)),
        "nearest cosine p50": float(np.median(best)),
        "nearest cosine p90": float(np.percentile(best, 90)),
        "11th nearest cosine p50": float(np.median(eleventh)),
        "nearest is the same product": float(np.mean(products[nearest] == products)),
    }
