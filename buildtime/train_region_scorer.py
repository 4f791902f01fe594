"""Train the window scorer that ranks region proposals (``engine.window_scorer.WindowScorer``).

    python -m buildtime.train_region_scorer [--scenes 600] [--store index_store/default]

The training photos are room scenes composed exactly like the scenes benchmark's
(``buildtime/scenes.py``: held-out views of catalogue products pasted into a
drawn room, exact boxes) but from other seeds (21, 22, ...; the benchmark uses 5),
200 per seed, cached under ``build/region_training/``. Each scene's candidate
windows get ``engine.window_features.candidate_windows``'s features plus their embedding
projected on the catalogue's 16 main directions and, as the target,
their IoU with the nearest true box mapped to [0, 1] (IoU 0.3 -> 0, 0.7 -> 1).
A two-layer network (64 hidden units) is fitted to that with a logistic loss, the
windows fitting each object weighted so that small objects count as much as big
ones (few windows fit a lamp, dozens fit a bed; lamps boxed: 17% -> 39%). A second
one learns, from the windows with IoU >= 0.3, how far each edge of the window lies
from the nearest true box's (in shares of the window's width and height; smooth L1
loss), so that a region's box is not stuck on the 32 px cell grid. Both are saved
to ``engine/models/region_scorer_<backbone>.npz``. Needs the catalogue
build's Sweet Home 3D cache (``python -m buildtime.catalogue build`` makes it) to
render the scenes; takes about 20 minutes on 2 cores, half of it rendering the scenes (cached for
later runs).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from buildtime.scenes import ROOT, box_iou, candidate_boxes, load_or_compose
from engine.indexing import index_catalogue, index_is_current
from engine.window_scorer import (
    TwoLayerNetwork,
    WindowScorer,
    appearance_projection,
    scorer_inputs,
    scorer_path,
    window_feature_names,
)
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
# Windows at least this close (IoU) to a true box teach the edge offsets.
OFFSET_IOU = 0.3
# Offsets within this (share of the window's size) count as small errors in the smooth L1 loss.
OFFSET_BETA = 0.1


@dataclass(frozen=True)
class TrainingWindows:
    """The candidate windows of the training scenes: scorer inputs and what each network learns from them."""

    inputs: np.ndarray  # [N, scorer inputs]
    targets: np.ndarray  # [N] fit in [0, 1] (from the IoU with the nearest true box)
    weights: np.ndarray  # [N] loss weights (window_weights)
    offsets: np.ndarray  # [N, 4] edge offsets to the nearest true box (edge_offsets)
    near: np.ndarray  # [N] whether the window is close enough to a true box to learn its offsets


def training_windows(engine: SearchEngine, catalogue: Path, count: int, projection_mean: np.ndarray,
                     projection: np.ndarray) -> TrainingWindows:
    """Scorer inputs and targets of every candidate window of ``count`` composed training scenes."""
    inputs, targets, weights, offsets, near = [], [], [], [], []
    for first in range(0, count, SCENES_PER_SEED):
        seed = FIRST_SEED + first // SCENES_PER_SEED
        folder = TRAINING_DIR / f"seed{seed}"
        scenes = load_or_compose(catalogue, min(SCENES_PER_SEED, count - first), folder, seed)
        for scene in scenes:
            candidates, boxes = candidate_boxes(engine, folder / scene.file)
            ious = np.array([[box_iou(obj.box, box) for obj in scene.objects] for box in boxes], dtype=float)
            ious = ious.reshape(len(boxes), len(scene.objects))
            best = ious.max(axis=1, initial=0.0)
            inputs.append(scorer_inputs(candidates.features, candidates.embeddings, projection_mean, projection))
            targets.append(np.clip((best - LOW) / (HIGH - LOW), 0.0, 1.0))
            weights.append(window_weights(ious))
            truth = np.array([obj.box for obj in scene.objects], dtype=float).reshape(-1, 4)
            window_boxes = np.array(boxes, dtype=float).reshape(-1, 4)
            offsets.append(edge_offsets(window_boxes, truth[ious.argmax(axis=1)]) if len(truth) else np.zeros_like(window_boxes))
            near.append(best >= OFFSET_IOU)
        print(f"seed {seed}: {len(scenes)} scenes", flush=True)
    return TrainingWindows(np.vstack(inputs), np.concatenate(targets), np.concatenate(weights), np.vstack(offsets),
                           np.concatenate(near))


def edge_offsets(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """How far each (x0, y0, x1, y1) edge of ``boxes`` [N, 4] lies from ``truth``'s, in shares of the box's width and height."""
    extent = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    return (truth - boxes) / np.maximum(np.tile(extent, 2), 1.0)


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


def fit_network(inputs: torch.Tensor, outputs: int, loss_of) -> TwoLayerNetwork:
    """Fit a two-layer network on scaled ``inputs`` by full-batch Adam (fixed seed), minimising ``loss_of(predictions)``."""
    torch.manual_seed(0)
    hidden = torch.nn.Linear(inputs.shape[1], HIDDEN)
    output = torch.nn.Linear(HIDDEN, outputs)
    parameters = [*hidden.parameters(), *output.parameters()]
    optimiser = torch.optim.Adam(parameters, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    for step in range(STEPS):
        optimiser.zero_grad()
        loss = loss_of(output(torch.relu(hidden(inputs))))
        loss.backward()
        optimiser.step()
        if step % 200 == 0 or step == STEPS - 1:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    with torch.no_grad():
        return TwoLayerNetwork(hidden.weight.T.numpy().copy(), hidden.bias.numpy().copy(),
                               output.weight.T.numpy().copy(), output.bias.numpy().copy())


def fit_scorer(windows: TrainingWindows, names: tuple[str, ...], projection_mean: np.ndarray,
               projection: np.ndarray) -> WindowScorer:
    """Fit the fit and edge-offset networks on the training windows; return them as a ``WindowScorer``."""
    mean, scale = windows.inputs.mean(axis=0), windows.inputs.std(axis=0) + 1e-6
    x = torch.from_numpy((windows.inputs - mean) / scale).float()
    y = torch.from_numpy(windows.targets).float()
    w = torch.from_numpy(windows.weights / windows.weights.mean()).float()
    fit = fit_network(x, 1, lambda logits: torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y, weight=w))
    near = torch.from_numpy(windows.near)
    offsets = torch.from_numpy(windows.offsets[windows.near]).float()
    edges = fit_network(x[near], 4, lambda predicted: torch.nn.functional.smooth_l1_loss(predicted, offsets, beta=OFFSET_BETA))
    return WindowScorer(names, projection_mean, projection, mean.astype(np.float32), scale.astype(np.float32), fit, edges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=600, help="training scenes (200 per seed)")
    parser.add_argument("--store", type=Path, default=ROOT / "index_store" / "default")
    parser.add_argument("--catalogue", type=Path, default=ROOT / "reference_gallery")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not index_is_current(args.catalogue, args.store):
        index_catalogue(args.catalogue, args.store)
    engine = SearchEngine.open(args.store, catalogue=args.catalogue)
    projection_mean, projection = appearance_projection(engine.stored.vectors)
    windows = training_windows(engine, args.catalogue, args.scenes, projection_mean, projection)
    print(f"{len(windows.targets)} windows, {int((windows.targets >= 0.5).sum())} with IoU >= 0.5, "
          f"{int(windows.near.sum())} near a true box", flush=True)
    scorer = fit_scorer(windows, window_feature_names(engine.categories), projection_mean, projection)
    path = scorer_path(engine.backbone.spec.name)
    scorer.save(path)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
