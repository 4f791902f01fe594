"""Train the window scorer that ranks region proposals (``engine.regions.WindowScorer``).

    python -m scripts.train_region_scorer [--scenes 600] [--store index_store/default]

The training photos are room scenes composed exactly like the scenes benchmark's
(``benchmarks/scenes.py``: held-out views of catalogue products pasted into a
drawn room, exact boxes) but from other seeds (21, 22, ...; the benchmark uses 5),
200 per seed, cached under ``build/region_training/``. Each scene's candidate
windows get ``engine.regions.candidate_windows``'s features plus their embedding
projected on the catalogue's 16 main directions and, as the target,
their IoU with the nearest true box mapped to [0, 1] (IoU 0.3 -> 0, 0.7 -> 1).
A two-layer network (64 hidden units) is fitted to that with a logistic loss, the
windows fitting each object weighted so that small objects count as much as big
ones (few windows fit a lamp, dozens fit a bed; lamps boxed: 17% -> 39%), and
saved to ``engine/models/region_scorer_<backbone>.npz``. Needs the gallery
build's Sweet Home 3D cache (``python -m engine.gallery build`` makes it) to
render the scenes; takes about 15 minutes on 2 cores, most of it rendering.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DEFAULT_GALLERY, ROOT
from benchmarks.scenes import box_iou, candidate_boxes, load_or_compose
from engine.indexing import index_catalog, index_is_current
from engine.regions import WindowScorer, appearance_projection, scorer_inputs, scorer_path, window_feature_names
from engine.search import SearchEngine

TRAINING_DIR = ROOT / "build" / "region_training"
FIRST_SEED = 21
SCENES_PER_SEED = 200
HIDDEN = 64
STEPS = 800
LEARNING_RATE = 5e-3
WEIGHT_DECAY = 1e-3
# Candidate IoU with the nearest true box -> target: 0 up to LOW, 1 from HIGH on, linear between.
LOW, HIGH = 0.3, 0.7
# Least total loss weight of the windows that fit one object (see window_weights).
OBJECT_WEIGHT = 30.0


def training_windows(engine: SearchEngine, gallery: Path, count: int, projection_mean: np.ndarray,
                     projection: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scorer inputs, IoU targets and loss weights of every candidate window of ``count`` composed training scenes."""
    inputs, targets, weights = [], [], []
    for first in range(0, count, SCENES_PER_SEED):
        seed = FIRST_SEED + first // SCENES_PER_SEED
        folder = TRAINING_DIR / f"seed{seed}"
        scenes = load_or_compose(gallery, min(SCENES_PER_SEED, count - first), folder, seed)
        for scene in scenes:
            candidates, boxes = candidate_boxes(engine, folder / scene.file)
            ious = np.array([[box_iou(obj.box, box) for obj in scene.objects] for box in boxes], dtype=float)
            ious = ious.reshape(len(boxes), len(scene.objects))
            inputs.append(scorer_inputs(candidates.features, candidates.embeddings, projection_mean, projection))
            targets.append(np.clip((ious.max(axis=1, initial=0.0) - LOW) / (HIGH - LOW), 0.0, 1.0))
            weights.append(window_weights(ious))
        print(f"seed {seed}: {len(scenes)} scenes", flush=True)
    return np.vstack(inputs), np.concatenate(targets), np.concatenate(weights)


def window_weights(ious: np.ndarray) -> np.ndarray:
    """Loss weight per window from its IoUs [windows, objects]: the windows fitting an object (IoU >= 0.5) share
    at least ``OBJECT_WEIGHT``, so that a lamp that two windows fit counts as much as a bed that forty fit."""
    weights = np.ones(len(ious))
    if ious.size == 0:
        return weights
    fitting = ious >= 0.5
    nearest = ious.argmax(axis=1)
    fits = fitting.any(axis=1)
    weights[fits] = np.maximum(1.0, OBJECT_WEIGHT / fitting.sum(axis=0)[nearest[fits]])
    return weights


def fit_scorer(inputs: np.ndarray, targets: np.ndarray, weights: np.ndarray, names: tuple[str, ...],
               projection_mean: np.ndarray, projection: np.ndarray) -> WindowScorer:
    """Fit the two-layer network on ``scorer_inputs`` rows (full-batch Adam, fixed seed); return it as a ``WindowScorer``."""
    mean, scale = inputs.mean(axis=0), inputs.std(axis=0) + 1e-6
    x = torch.from_numpy((inputs - mean) / scale).float()
    y = torch.from_numpy(targets).float()
    w = torch.from_numpy(weights).float()
    torch.manual_seed(0)
    hidden = torch.nn.Linear(inputs.shape[1], HIDDEN)
    output = torch.nn.Linear(HIDDEN, 1)
    parameters = [*hidden.parameters(), *output.parameters()]
    optimiser = torch.optim.Adam(parameters, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    for step in range(STEPS):
        optimiser.zero_grad()
        logits = output(torch.relu(hidden(x)))[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=w / w.mean())
        loss.backward()
        optimiser.step()
        if step % 200 == 0 or step == STEPS - 1:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    with torch.no_grad():
        return WindowScorer(names, projection_mean, projection, mean.astype(np.float32), scale.astype(np.float32),
                            hidden.weight.T.numpy().copy(), hidden.bias.numpy().copy(),
                            output.weight[0].numpy().copy(), float(output.bias[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=600, help="training scenes (200 per seed)")
    parser.add_argument("--store", type=Path, default=ROOT / "index_store" / "default")
    parser.add_argument("--gallery", type=Path, default=DEFAULT_GALLERY)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not index_is_current(args.gallery, args.store):
        index_catalog(args.gallery, args.store)
    engine = SearchEngine.open(args.store, gallery=args.gallery)
    projection_mean, projection = appearance_projection(engine.stored.vectors)
    inputs, targets, weights = training_windows(engine, args.gallery, args.scenes, projection_mean, projection)
    print(f"{len(targets)} windows, {int((targets >= 0.5).sum())} with IoU >= 0.5", flush=True)
    scorer = fit_scorer(inputs, targets, weights, window_feature_names(engine.categories), projection_mean, projection)
    path = scorer_path(engine.extractor.spec.name)
    scorer.save(path)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
