"""Find the pieces of furniture in a cluttered photo: candidate regions with a box, a category, a confidence and an embedding.

Everything runs offline on one pass of the backbone that embeds the catalogue:

1. The photo at ``PROPOSAL_SIDE`` px on its longer side (aspect kept) gives the
   embedding layer's feature map, one 1280-d cell per 32 x 32 px.
2. Objectness per cell, the product of two cues: how unlike the photo's border
   the cell looks (walls and floors reach the border) and how much it looks like
   the catalogue: its best cosine similarity to any catalogue image, above the
   photo's median cell.
3. Every axis-aligned window of cells is scored by contrast: its mean
   objectness minus the mean in a one-cell ring around it, times sqrt(area), so
   that a window hugging one object beats its fragments and windows spanning
   two. The best ``CANDIDATES`` windows are average-pooled (via an integral
   image), L2-normalised and classified with the catalogue's
   ``CategoryClassifier``; score = contrast x category probability.
4. Greedy non-maximum suppression keeps the best, mutually distinct windows.
   Each keeps its pooled feature as its embedding, so searching a region costs
   no further backbone pass (on the scenes benchmark as good as re-embedding a
   crop of it, for half the added latency).

The boxes are in pixels of the original photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from engine.backbones import FeatureExtractor
from engine.classify import CategoryClassifier
from engine.embed import normalise

# Longer side of the proposal pass; a multiple of the 32 px stride. 448 gives a 14-cell grid.
PROPOSAL_SIDE = 448
STRIDE = 32
# Windows overlapping a kept one by more than this IoU are dropped.
NMS_IOU = 0.4
# Regions below this share of the best region's score are not proposed.
RELATIVE_SCORE = 0.25
# Border cells an object may touch without being taken for background.
BORDER_TOLERANCE = 3
# Largest per-channel standard deviation (0-255) of a "plain" photo border, as in studio shots.
PLAIN_BORDER_STD = 12.0
# Context added around a region before it is searched, as a share of its width and height.
CROP_MARGIN = 0.1
# Width in cells of the ring around a window whose objectness it must exceed.
RING = 1
# Windows with the highest objectness contrast that are pooled and classified (of 6930 on the 14 x 11
# grid); 1500 found 5 points more boxes on the dev scenes but none more on the benchmark, for 40 ms.
CANDIDATES = 400


@dataclass(frozen=True)
class Region:
    """A candidate piece of furniture: a box (x0, y0, x1, y1) in photo pixels, its category and a confidence in [0, 1].

    ``embedding`` is the region's unit embedding, average-pooled from the proposal
    pass's feature map (as the catalogue's are from theirs), or None where the
    region was not proposed (a whole photo).
    """

    box: tuple[int, int, int, int]
    category: str
    confidence: float
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)


def _proposal_input(image: Image.Image, extractor: FeatureExtractor) -> tuple[torch.Tensor, float, float]:
    """The photo resized to a multiple of the stride, normalised; plus the x and y scale back to the photo."""
    width, height = image.size
    scale = PROPOSAL_SIDE / max(width, height)
    new_w = max(STRIDE, round(width * scale / STRIDE) * STRIDE)
    new_h = max(STRIDE, round(height * scale / STRIDE) * STRIDE)
    resized = image.convert("RGB").resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0)
    prep = extractor.spec.preprocessing
    batch = torch.from_numpy(np.array(resized)).permute(2, 0, 1)[None].float().div_(255.0)
    batch = batch.sub_(torch.tensor(prep.mean).view(1, 3, 1, 1)).div_(torch.tensor(prep.std).view(1, 3, 1, 1))
    return batch, width / new_w, height / new_h


def _objectness(cells: torch.Tensor, catalogue: np.ndarray) -> np.ndarray:
    """Furniture likelihood per cell [h, w] in [0, 1] from the cells' features [h, w, C].

    The product of two cues: how unlike the photo's border the cell looks (walls
    and floors reach the border, furniture rarely fills it) and how much the cell
    looks like furniture: its best cosine similarity to any catalogue image
    (``catalogue``: unit embeddings [N, C]), above the photo's median cell. The
    catalogue knows its own products far better than ImageNet's few furniture
    classes do (those gave 32% box recall on the dev scenes against 45%).
    """
    unit = torch.nn.functional.normalize(cells, dim=-1)
    border = torch.cat([unit[0], unit[-1], unit[1:-1, 0], unit[1:-1, -1]])
    # Distance to the most similar border cell; ignoring the closest few tolerates an object touching the border.
    similarity = torch.einsum("hwc,bc->hwb", unit, border)
    nearest = similarity.topk(min(BORDER_TOLERANCE + 1, border.shape[0]), dim=-1).values[..., -1]
    unlike_border = (1.0 - nearest).clamp(min=0).numpy()
    best = (unit.numpy() @ catalogue.T).max(axis=-1)
    furniture = np.clip(best - np.median(best), 0.0, None)
    objectness = unlike_border * furniture
    return objectness / max(float(objectness.max()), 1e-6)


def _windows(grid_h: int, grid_w: int) -> np.ndarray:
    """Every window of whole cells as rows (y0, x0, y1, x1), end-exclusive."""
    ys = [(y0, y1) for y0 in range(grid_h) for y1 in range(y0 + 1, grid_h + 1)]
    xs = [(x0, x1) for x0 in range(grid_w) for x1 in range(x0 + 1, grid_w + 1)]
    y = np.array(ys).repeat(len(xs), axis=0)
    x = np.tile(np.array(xs), (len(ys), 1))
    return np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1)


def _box_sums(integral: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Sums over (y0, x0, y1, x1) boxes of the map whose zero-padded integral image is ``integral``."""
    y0, x0, y1, x1 = boxes.T
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _integral(values: np.ndarray) -> np.ndarray:
    """Zero-padded 2-D cumulative sum over the first two axes."""
    padded = np.zeros((values.shape[0] + 1, values.shape[1] + 1, *values.shape[2:]), dtype=np.float64)
    padded[1:, 1:] = values.cumsum(0).cumsum(1)
    return padded


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (y0, x0, y1, x1) box with many."""
    ih = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iw = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ih * iw
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def propose_regions(
    extractor: FeatureExtractor,
    classifier: CategoryClassifier,
    image: Image.Image,
    catalogue: np.ndarray,
    max_regions: int = 4,
) -> list[Region]:
    """Candidate furniture regions in ``image`` (decoded RGB), best first, at most ``max_regions``.

    ``catalogue`` holds the catalogue's unit embeddings [N, C] (see ``_objectness``).
    Needs a backbone whose embedding pools its last feature map (all do).
    """
    batch, scale_x, scale_y = _proposal_input(image, extractor)
    with torch.inference_mode():
        cells = extractor.feature_map(batch)[0].permute(1, 2, 0).contiguous()  # [h, w, C]
        objectness = _objectness(cells, catalogue)
    grid_h, grid_w = objectness.shape
    windows = _windows(grid_h, grid_w)
    areas = ((windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])).astype(np.float64)

    # Contrast: mean objectness inside minus in a one-cell ring around, so that a window
    # hugging one object beats both its fragments and windows spanning two objects.
    # The sqrt(area) factor breaks ties towards whole objects without drowning small ones.
    integral = _integral(objectness)
    inside = _box_sums(integral, windows) / areas
    outer = np.stack([np.maximum(windows[:, 0] - RING, 0), np.maximum(windows[:, 1] - RING, 0),
                      np.minimum(windows[:, 2] + RING, grid_h), np.minimum(windows[:, 3] + RING, grid_w)], axis=1)
    ring_area = (outer[:, 2] - outer[:, 0]) * (outer[:, 3] - outer[:, 1]) - areas
    ring = (_box_sums(integral, outer) - inside * areas) / np.maximum(ring_area, 1.0)
    contrast = np.clip(inside - ring, 0.0, None) * np.sqrt(areas)

    # Pool and classify only the windows with the most contrast: pooling all 1280-d features costs most.
    candidates = np.argsort(-contrast)[:CANDIDATES]
    candidates = candidates[contrast[candidates] > 0]
    if candidates.size == 0:
        return []
    windows, inside = windows[candidates], inside[candidates]
    # Average pooling whatever the backbone's own (GeM for the default): GeM over a window lets a few
    # strong context cells dominate (dev scenes: 32% of boxes found and 22% top 10, against 46% and 43%).
    pooled = normalise((_box_sums(_integral(cells.numpy()), windows) / areas[candidates, None]).astype(np.float32))
    probabilities = classifier.predict_proba(pooled)
    category_index = probabilities.argmax(axis=1)
    category_probability = probabilities.max(axis=1)
    scores = contrast[candidates] * category_probability

    regions: list[Region] = []
    kept: list[int] = []
    order = np.argsort(-scores)
    best = scores[order[0]]
    for index in order:
        if len(kept) == max_regions or scores[index] < RELATIVE_SCORE * best:
            break
        if kept and _iou(windows[index], windows[kept]).max() > NMS_IOU:
            continue
        kept.append(index)
        y0, x0, y1, x1 = windows[index] * STRIDE
        box = (round(x0 * scale_x), round(y0 * scale_y), round(x1 * scale_x), round(y1 * scale_y))
        category = classifier.categories[category_index[index]]
        regions.append(Region(box, category, float(category_probability[index] * inside[index]), pooled[index]))
    return regions


def is_product_shot(image: Image.Image, regions: list[Region]) -> bool:
    """Whether the photo shows one dominant product, to be searched whole rather than by region.

    The rule: no region was found; or the photo's border is plain (a studio or
    cut-out shot, like the catalogue's own) and no other region reaches half the
    best one's confidence, apart from regions mostly overlapping it (parts of the
    same object). Size alone says nothing: the best-scoring window in a room is
    often a large one, and a sofa seen close up has the room beside it.
    """
    if not regions:
        return True
    best = regions[0]
    runners_up = [r for r in regions[1:] if r.confidence >= 0.5 * best.confidence and _overlap(r.box, best.box) < 0.5]
    return not runners_up and _plain_border(image)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection of two (x0, y0, x1, y1) boxes over the smaller one's area."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(smaller, 1)


def _plain_border(image: Image.Image) -> bool:
    """Whether the outer band of the photo is nearly one flat colour."""
    small = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR), dtype=np.float32)
    band = np.concatenate([small[:3].reshape(-1, 3), small[-3:].reshape(-1, 3),
                           small[3:-3, :3].reshape(-1, 3), small[3:-3, -3:].reshape(-1, 3)])
    return float(band.std(axis=0).max()) < PLAIN_BORDER_STD


def crop_region(image: Image.Image, box: tuple[int, int, int, int], margin: float = CROP_MARGIN) -> Image.Image:
    """The box cut out of ``image`` with ``margin`` of its size added on each side (the backbone likes some context)."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return image.crop((max(0, round(x0 - dx)), max(0, round(y0 - dy)),
                       min(image.width, round(x1 + dx)), min(image.height, round(y1 + dy))))
