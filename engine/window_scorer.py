"""The window scorer: the trained part of region proposal (``engine.regions``), and its contract with the trainer.

A ``WindowScorer`` is two small networks over a candidate window's numbers (``WINDOW_FEATURES``, then the
catalogue categories' probabilities and similarities, then ``APPEARANCE_DIMS`` numbers of its embedding):
how tightly the window fits one piece of furniture, and how far to move its edges. It is trained by
``buildtime/train_region_scorer.py`` for one backbone and one set of categories and saved in
``engine/models/``; for any other ``load_window_scorer`` says it is unavailable, and regions then rank by contrast.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.models import ModelUnavailableError, shared
from engine.vectors import dot_products

# Numbers of a window's embedding a WindowScorer reads (its projection on the catalogue's main directions).
APPEARANCE_DIMS = 16
# Trained window scorers, one per backbone: region_scorer_<backbone>.npz.
SCORER_DIR = Path(__file__).with_name("models")
# The window numbers a WindowScorer reads, in order; then per catalogue category its probability, then the
# best similarity to its images (see window_feature_names).
WINDOW_FEATURES = (
    "inside", "ring1", "contrast1", "ring2", "contrast2", "log_height", "log_width", "log_area",
    "touches_top", "touches_bottom", "touches_side", "centre_y",
    *(f"{side}_{part}" for side in ("top", "bottom", "left", "right") for part in ("edge", "outside", "step")),
    "probability_best", "probability_margin", "similarity_best", "similarity_top5", "similarity_above_median",
    "context_similarity", *(f"{side}_continues" for side in ("top", "bottom", "left", "right")), "grown_similarity_gain",
)



@dataclass(frozen=True)
class TwoLayerNetwork:
    """A small fully connected network: ReLU hidden layer, linear outputs."""

    hidden_weight: np.ndarray  # [inputs, hidden]
    hidden_bias: np.ndarray  # [hidden]
    output_weight: np.ndarray  # [hidden, outputs]
    output_bias: np.ndarray  # [outputs]

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        hidden = np.maximum(dot_products(inputs, self.hidden_weight.T) + self.hidden_bias, 0.0)
        return dot_products(hidden, self.output_weight.T) + self.output_bias

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_{name}": getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> TwoLayerNetwork:
        return cls(*(arrays[f"{prefix}_{name}"] for name in cls.__dataclass_fields__))


@dataclass(frozen=True)
class WindowScorer:
    """Two small networks over a window: how tightly it fits one piece of furniture, and how to move its edges to fit better.

    Their inputs are a window's ``features`` and ``APPEARANCE_DIMS`` numbers of its
    embedding (projected on the catalogue's main directions, saved with the
    scorer): what the window looks like tells a whole lamp from a sofa's armrest.
    Trained by ``buildtime/train_region_scorer.py`` on composed room scenes for one
    backbone and one set of categories; ``feature_names`` records the inputs it
    was trained on, so a mismatch is detected rather than scored wrongly.
    """

    feature_names: tuple[str, ...]
    projection_mean: np.ndarray  # [C]
    projection: np.ndarray  # [C, APPEARANCE_DIMS]
    mean: np.ndarray
    scale: np.ndarray
    fit: TwoLayerNetwork  # one output: the fit's logit
    offsets: TwoLayerNetwork  # four outputs: see box_offsets

    def _scaled_inputs(self, features: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        return (scorer_inputs(features, embeddings, self.projection_mean, self.projection) - self.mean) / self.scale

    def confidence(self, features: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Predicted fit in [0, 1] per window (rows of ``features`` and of ``embeddings``)."""
        return 1.0 / (1.0 + np.exp(-self.fit(self._scaled_inputs(features, embeddings))[:, 0]))

    def box_offsets(self, features: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Per window, how far to move its (x0, y0, x1, y1) edges [N, 4], in shares of its width and height.

        Windows are whole cells (32 px at the proposal pass); an object's edges
        rarely are, and a table lamp is one or two cells wide.
        """
        return self.offsets(self._scaled_inputs(features, embeddings))

    def save(self, path: Path) -> None:
        """Write to ``path`` (.npz) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp.npz")
        np.savez(temporary, feature_names=np.array(self.feature_names), projection_mean=self.projection_mean,
                 projection=self.projection, mean=self.mean, scale=self.scale,
                 **self.fit.arrays("fit"), **self.offsets.arrays("offsets"))
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> WindowScorer:
        with np.load(path) as arrays:
            return cls(tuple(str(n) for n in arrays["feature_names"]), arrays["projection_mean"], arrays["projection"],
                       arrays["mean"], arrays["scale"], TwoLayerNetwork.from_arrays(arrays, "fit"),
                       TwoLayerNetwork.from_arrays(arrays, "offsets"))


def scorer_inputs(features: np.ndarray, embeddings: np.ndarray, projection_mean: np.ndarray,
                  projection: np.ndarray) -> np.ndarray:
    """A window scorer's inputs, before scaling: the window features, then the embeddings projected [N, dims]."""
    return np.hstack([features, dot_products(embeddings - projection_mean, projection.T)])


def appearance_projection(vectors: np.ndarray, dims: int = APPEARANCE_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """The catalogue embeddings' mean [C] and main directions [C, dims] (principal components), for ``WindowScorer``."""
    mean = vectors.mean(axis=0)
    _, _, directions = np.linalg.svd(vectors - mean, full_matrices=False)
    return mean.astype(np.float32), directions[:dims].T.astype(np.float32)


def window_feature_names(categories: list[str]) -> tuple[str, ...]:
    """The window features (``WindowCandidates.features``) for a catalogue with these categories."""
    return (*WINDOW_FEATURES, *(f"probability:{category}" for category in categories),
            *(f"similarity:{category}" for category in categories))


def scorer_path(backbone: str) -> Path:
    """Where the trained window scorer of ``backbone`` lives."""
    return SCORER_DIR / f"region_scorer_{backbone}.npz"


def load_window_scorer(backbone: str, categories: list[str]) -> WindowScorer:
    """The trained scorer for this backbone and these categories; ``ModelUnavailableError`` saying why where
    there is none (regions then use the contrast ranking)."""
    scorer = _saved_scorer(backbone)
    if scorer is None or scorer.feature_names != window_feature_names(categories):
        raise ModelUnavailableError(f"region search: {region_ranking(backbone, categories)}")
    return scorer


def region_ranking(backbone: str, categories: list[str]) -> str:
    """How region search ranks its candidate windows for a store of this backbone and these categories, in words
    (``info`` prints it): the trained scorer, or the untrained ranking and why."""
    scorer = _saved_scorer(backbone)
    if scorer is None:
        return f"untrained contrast ranking (no trained window scorer for {backbone}; fewer boxes found)"
    if scorer.feature_names == window_feature_names(categories):
        return "trained window scorer"
    known = [name.split(":", 1)[1] for name in scorer.feature_names if name.startswith("probability:")]
    return (f"untrained contrast ranking (the trained window scorer knows {', '.join(known)}, "
            f"not this catalogue's {', '.join(categories)}; fewer boxes found)")


def _saved_scorer(backbone: str) -> WindowScorer | None:
    """The scorer file of ``backbone``, read once per process; None where it is missing or unreadable."""
    path = scorer_path(backbone)

    def load() -> WindowScorer | None:
        try:
            return WindowScorer.load(path) if path.is_file() else None
        except (OSError, KeyError, ValueError):  # unreadable, or written by an older version: rank without it
            return None

    return shared(("window scorer", path), load)
