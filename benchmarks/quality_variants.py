"""The embeddings the quality benchmark compares (``Variant``: backbone, layers, pooling, fit, flip, whitening),
each computed from one forward pass per backbone and preprocessing fit (``FeatureCache``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from engine.backbone_specs import BACKBONES, DEFAULT_BACKBONE
from engine.backbones import FeatureExtractor, build_backbone, pool_features
from engine.images import Preprocessing, preprocess
from engine.vectors import normalise

BATCH = 16
# Whitening keeps at most this many principal directions: the catalogue has far fewer
# images than 1280 dimensions, and whitening the near-zero directions only amplifies noise.
WHITEN_DIMS = 256
# Concatenated "last blocks" of EfficientNet-Lite: the last two MBConv stages and the 1x1 head.
LAST_BLOCKS = ("stage6", "stage7", "head")


@dataclass(frozen=True)
class Variant:
    """One way of turning an image into an embedding."""

    label: str
    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ("head",)  # several: each pooled and L2-normalised, then concatenated
    pooling: str = "avg"
    fit: str = "pad"
    flip: bool = False  # average with the embedding of the mirrored image
    whiten: bool = False  # PCA-whitening learned on the catalogue embeddings

    def preprocessing(self) -> Preprocessing:
        return replace(BACKBONES[self.backbone].preprocessing, fit=self.fit)


_SPEC = BACKBONES[DEFAULT_BACKBONE]
# The product's embedding as engine/backbones.py defines it today; the no-match threshold is calibrated on it.
DEFAULT = Variant(
    f"{_SPEC.name.replace('efficientnet_', '')} (product default)",
    backbone=_SPEC.name,
    layers=(_SPEC.layer,),
    pooling=_SPEC.pooling,
    fit=_SPEC.preprocessing.fit,
)
VARIANTS = [
    DEFAULT,
    Variant("lite1", backbone="efficientnet_lite1"),
    Variant("lite2", backbone="efficientnet_lite2"),
    Variant("lite0 GeM", pooling="gem"),
    Variant("lite0 max", pooling="max"),
    Variant("lite0 stage7 (last MBConv block)", layers=("stage7",)),
    Variant("lite0 concat stage6+stage7+head", layers=LAST_BLOCKS),
    Variant("lite0 whitened", whiten=True),
    Variant("lite0 flip", flip=True),
    Variant("lite0 crop", fit="crop"),
    Variant("lite0 GeM whitened", pooling="gem", whiten=True),
    Variant("lite0 avg pad (first default)"),
    Variant("lite2 GeM", backbone="efficientnet_lite2", pooling="gem"),
    Variant("lite2 GeM whitened", backbone="efficientnet_lite2", pooling="gem", whiten=True),
]
QUICK_VARIANTS = [DEFAULT, Variant("lite0 GeM", pooling="gem"), Variant("lite0 whitened", whiten=True)]


def pooled_features(
    extractor: FeatureExtractor, batch: torch.Tensor, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], np.ndarray]:
    """Every wanted (layer, pooling) of one batch, L2-normalised, from a single forward pass."""
    with torch.inference_mode():
        maps = extractor.feature_maps(batch)
        return {(layer, pool): normalise(pool_features(maps[layer], pool).numpy()) for layer, pool in wanted}


def combine(features: dict[tuple[str, str], np.ndarray], variant: Variant) -> np.ndarray:
    """The variant's embedding from pooled features (concatenation for several layers), unit length."""
    return normalise(np.concatenate([features[(layer, variant.pooling)] for layer in variant.layers], axis=1))


class FeatureCache:
    """Pooled features of an image set, per (backbone, fit, mirrored); computed once each."""

    def __init__(self, images_for_size) -> None:
        # images_for_size(size) -> decoded images, so that JPEG draft decoding matches each backbone's size.
        self._images_for_size = images_for_size
        self._cache: dict[tuple[str, str, bool], dict[tuple[str, str], np.ndarray]] = {}

    def fill(self, variants: Sequence[Variant]) -> None:
        groups: dict[tuple[str, str, bool], set[tuple[str, str]]] = {}
        for v in variants:
            for mirrored in (False, True) if v.flip else (False,):
                groups.setdefault((v.backbone, v.fit, mirrored), set()).update((l, v.pooling) for l in v.layers)
        for key, wanted in groups.items():
            if key in self._cache and wanted <= set(self._cache[key]):
                continue
            backbone, fit, mirrored = key
            extractor = build_backbone(backbone)
            prep = replace(extractor.spec.preprocessing, fit=fit)
            images = self._images_for_size(prep.size)
            chunks: list[dict[tuple[str, str], np.ndarray]] = []
            for start in range(0, len(images), BATCH):
                batch = torch.from_numpy(preprocess(images[start : start + BATCH], prep))
                chunks.append(pooled_features(extractor, batch.flip(3) if mirrored else batch, wanted))
            self._cache[key] = {pair: np.concatenate([c[pair] for c in chunks]) for pair in wanted}

    def embeddings(self, variant: Variant) -> np.ndarray:
        vectors = combine(self._cache[(variant.backbone, variant.fit, False)], variant)
        if variant.flip:
            vectors = normalise(vectors + combine(self._cache[(variant.backbone, variant.fit, True)], variant))
        return vectors


@dataclass
class Whitening:
    """PCA-whitening: centre, rotate onto principal axes, scale each to unit variance."""

    mean: np.ndarray
    projection: np.ndarray  # [dim, kept]

    @classmethod
    def learn(cls, vectors: np.ndarray, dims: int = WHITEN_DIMS) -> Whitening:
        mean = vectors.mean(axis=0)
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov(vectors - mean, rowvar=False))
        keep = min(dims, len(vectors) - 1, vectors.shape[1])
        order = np.argsort(eigenvalues)[::-1][:keep]
        # The small floor keeps a degenerate direction from blowing up to infinity.
        scale = 1.0 / np.sqrt(np.maximum(eigenvalues[order], 1e-9))
        return cls(mean, (eigenvectors[:, order] * scale).astype(np.float32))

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        return normalise((vectors - self.mean) @ self.projection)
