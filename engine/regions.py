"""Find the pieces of furniture in a cluttered photo: candidate regions with a box, a category, a confidence and an embedding.

Where the catalogue has chairs, sofas, beds or tables, a detector trained on real
photos (``engine.detector``) boxes those first, each embedded from the cells of the
proposal pass (step 1) its box covers and ranked by its score and how much that
embedding looks like the catalogue's pieces of its category. The rest (lamps, pieces
it missed, other catalogues' categories) comes from that one pass of the backbone that
embeds the catalogue (beside the detector's boxes, only windows the scorer is sure of):

1-3. ``engine.window_features``: the photo's feature map, objectness per 32 px cell, and the
   distinct high-contrast windows of cells with the numbers that describe each.
4. A ``WindowScorer`` ranks the candidates: a small two-layer network over ~45
   numbers per window (objectness inside, in rings and along each edge, size,
   position, the pooled window's category probabilities and best similarity to
   each category's images, how much its surroundings look like it) and 16
   numbers of what the window looks like (its embedding on the catalogue's main
   directions), trained on composed room scenes to predict how tightly the
   window fits one piece of furniture (``buildtime/train_region_scorer.py``).
   Without a scorer for the backbone and categories (someone else's catalogue),
   the ranking falls back to contrast x category probability.
5. Greedy non-maximum suppression keeps the best, mutually distinct windows.
   Each keeps its pooled feature as its embedding, so searching a region costs
   no further backbone pass (on the scenes benchmark as good as re-embedding a
   crop of it, for half the added latency). The scorer's second network then
   moves each kept window's edges off the 32 px cell grid towards the object's.

Boxes are (x0, y0, x1, y1), in pixels of the original photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine.detector import Detection, Detector
from engine.networks import Backbone, beside
from engine.settings import DEFAULT_SETTINGS
from engine.vectors import dot_products, normalise
from engine.window_features import (CELL_SIZE, ProposalSample, WindowCandidates, candidate_windows, cells_to_pixels,
                                    proposal_feature_map)
from engine.window_scorer import WindowScorer

# Regions overlapping a better one by more than this IoU are dropped...
NMS_IOU = 0.4
# ...and, with a trained scorer, so are those of the same category lying this much (intersection over the
# smaller) inside or around it: another box of the same sofa, whose slot is better given to another piece
# of furniture; a chair in front of a bed is of another category and stays. Not with the untrained ranking,
# which puts loose boxes first and would lose the tight ones inside (benchmarks/README.md has the figures).
SAME_CATEGORY_OVERLAP = 0.4
# Detections (engine.detector) considered as regions: those scoring at least DETECTION_SCORE, ranked by their
# score + SIMILARITY_WEIGHT x the best similarity of their pooled box to the catalogue's images of their
# category, and kept from DETECTION_RANK. The detector alone calls a cabinet or a cushion a chair as confidently
# as a chair; the catalogue's look tells them apart. Hand-labelled dev rooms (python -m benchmarks.boxes), the
# page's 4 boxes: the detector's score alone from 0.15, precision 0.59 and recall 0.35; ranked, 0.71 and 0.35.
DETECTION_SCORE = 0.1
SIMILARITY_WEIGHT = 0.5
DETECTION_RANK = 0.4
# Where the detector boxed pieces, the trained scorer's windows fill the remaining places of a photo searched
# for any piece only from this confidence: on real rooms its less confident windows were baskets, cushions and
# bits of wall far more often than furniture (the same dev rooms: windows from 0.5, precision 0.59 and recall
# 0.37; from 0.7, 0.68 and 0.36; no windows, 0.71 and 0.35). Not none: they are the only boxes of what the
# detector does not know (lamps, other catalogues' categories).
WINDOW_CONFIDENCE = 0.7
# Regions below this share of the best region's score are not proposed.
RELATIVE_SCORE = 0.25
# Largest per-channel standard deviation (0-255) of a "plain" photo border, as in studio shots.
PLAIN_BORDER_STD = 12.0
# Context added around a region before it is searched, as a share of its width and height.
CROP_MARGIN = 0.1


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


def propose_regions(
    backbone: Backbone,
    sample: ProposalSample,
    image: Image.Image,
    max_regions: int = 4,
    scorer: WindowScorer | None = None,
    category: str | None = None,
    detector: Detector | None = None,
    detection_side: int = DEFAULT_SETTINGS.detection_side,
) -> list[Region]:
    """Candidate furniture regions in ``image`` (decoded RGB), best first, at most ``max_regions``.

    ``detector`` (``engine.detector``, trained on real photos) boxes the chairs, sofas,
    beds and tables it finds first; windows of the proposal pass fill the remaining
    places (lamps, pieces it missed), skipping those that overlap a detection and, unless
    ``category`` is asked, those the trained scorer is not confident of.
    ``scorer`` ranks the windows (see ``load_window_scorer``); without one they are
    ranked by contrast x category probability. ``category`` (a catalogue category)
    asks for pieces of that category only: windows rank by their score x the
    probability that they show it, and every region is labelled with it.
    Needs a backbone whose embedding pools its last feature map (all do).
    """
    cells, scale_x, scale_y = proposal_feature_map(backbone, image)
    # The detector's pass runs on the other core while this one finds the windows (numpy work, one core).
    detections = beside(detector.detect, image, DETECTION_SCORE, detection_side) if detector is not None else None
    candidates = candidate_windows(cells, sample)
    regions = []
    min_confidence = 0.0
    if detections is not None:
        regions = _detected_regions(detections.result(), cells, (scale_x, scale_y), sample, category, max_regions)
        # Asked for a category, the shopper says such a piece is there: the windows' best guesses are wanted; so
        # they are where the detector boxed nothing (a drawn scene, pieces it does not know).
        min_confidence = WINDOW_CONFIDENCE if scorer is not None and category is None and regions else 0.0
    for region in _window_regions(candidates, (scale_x, scale_y), image.size, sample, max_regions, scorer, category,
                                  min_confidence):
        if len(regions) == max_regions:
            break
        if all(_iou(region.box, kept.box) <= NMS_IOU for kept in regions):
            regions.append(region)
    return regions


def _detected_regions(detections: list[Detection], cells: np.ndarray, scale: tuple[float, float],
                      sample: ProposalSample, category: str | None, count: int) -> list[Region]:
    """The detector's boxes of the catalogue's categories (or of ``category``) ranking at least ``DETECTION_RANK``,
    best first, none overlapping a better one by more than ``NMS_IOU``; each embedded by average-pooling the
    proposal cells whose centres it holds."""
    wanted = [d for d in detections if d.category in sample.categories and category in (None, d.category)]
    if not wanted:
        return []
    embeddings = np.stack([_pooled_box(cells, detection.box, scale) for detection in wanted])
    similarities = dot_products(embeddings, sample.vectors)
    ranks = np.array([detection.score + SIMILARITY_WEIGHT * similarities[i, sample.labels == sample.categories.index(
        detection.category)].max(initial=0.0) for i, detection in enumerate(wanted)])
    regions: list[Region] = []
    for i in np.argsort(-ranks, kind="stable"):
        if ranks[i] < DETECTION_RANK:
            break
        detection = wanted[i]
        if all(_iou(detection.box, kept.box) <= NMS_IOU for kept in regions):
            regions.append(Region(detection.box, detection.category, detection.score, embeddings[i]))
            if len(regions) == count:
                break
    return regions


def _pooled_box(cells: np.ndarray, box: tuple[int, int, int, int], scale: tuple[float, float]) -> np.ndarray:
    """The unit average of the cells [h, w, C] whose centres lie in ``box`` (photo pixels); the nearest row or
    column where the box is narrower than a cell."""
    selected = []
    for axis, (start, end) in enumerate(((box[1], box[3]), (box[0], box[2]))):
        centres = (np.arange(cells.shape[axis]) + 0.5) * CELL_SIZE * scale[1 - axis]
        inside = (centres >= start) & (centres <= end)
        if not inside.any():
            inside[np.argmin(np.abs(centres - (start + end) / 2))] = True
        selected.append(np.flatnonzero(inside))
    summed = cells[selected[0]][:, selected[1]].sum(axis=(0, 1), dtype=np.float32)
    return normalise(summed[None])[0]


def _window_regions(candidates: WindowCandidates, scale: tuple[float, float], size: tuple[int, int],
                    sample: ProposalSample, max_regions: int, scorer: WindowScorer | None, category: str | None,
                    min_confidence: float = 0.0) -> list[Region]:
    """The best distinct windows of the proposal pass (its ``candidates``), of at least ``min_confidence``, as regions
    (steps 3-5 of the module docstring)."""
    if len(candidates.windows) == 0:
        return []
    best_probability = candidates.probabilities.max(axis=1)
    if scorer is not None:
        scores = confidences = scorer.confidence(candidates.features, candidates.embeddings)
    else:
        scores = candidates.contrast * best_probability
        confidences = best_probability * candidates.inside
    categories = candidates.probabilities.argmax(axis=1)
    same_category_overlap = SAME_CATEGORY_OVERLAP if scorer is not None else 1.0
    if category is not None:
        wanted = sample.categories.index(category)
        scores = confidences = scores * candidates.probabilities[:, wanted]
        categories = np.full(len(categories), wanted)
        # Nested boxes of the asked category stay: a chair inside a box around a table and its chairs.
        same_category_overlap = 1.0
    eligible = np.flatnonzero((scores >= RELATIVE_SCORE * scores.max()) & (confidences >= min_confidence))
    if len(eligible) == 0:
        return []
    kept = eligible[_distinct_regions(candidates.windows[eligible], categories[eligible], scores[eligible], max_regions,
                                      same_category_overlap)]
    boxes = np.array([cells_to_pixels(candidates.windows[i], *scale) for i in kept], dtype=float)
    if scorer is not None:
        boxes = moved_edges(boxes, scorer.box_offsets(candidates.features[kept], candidates.embeddings[kept]), size)
    return [
        Region(tuple(int(v) for v in box), sample.categories[int(categories[i])],
               float(confidences[i]), candidates.embeddings[i])
        for i, box in zip(kept, boxes)
    ]


def _distinct_regions(windows: np.ndarray, categories: np.ndarray, scores: np.ndarray, count: int,
                      same_category_overlap: float = SAME_CATEGORY_OVERLAP) -> list[int]:
    """Indices of the best-scoring windows, at most ``count``: none overlaps a better kept one by more than
    ``NMS_IOU``, nor by more than ``same_category_overlap`` of the smaller one when both have the same category
    (1.0: no such check)."""
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(_iou(windows[i], windows[k]) <= NMS_IOU
               and (categories[i] != categories[k] or _overlap(windows[i], windows[k]) <= same_category_overlap)
               for k in kept):
            kept.append(int(i))
            if len(kept) == count:
                break
    return kept


def moved_edges(boxes: np.ndarray, offsets: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(x0, y0, x1, y1) boxes [N, 4] with their edges moved by ``offsets`` (shares of width and height), rounded and
    kept inside the photo of ``size`` (width, height), at least 1 px wide and high."""
    extent = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    moved = np.round(boxes + offsets * np.tile(extent, 2))
    width, height = size
    x0, x1 = np.clip(moved[:, 0], 0, width - 1), np.clip(moved[:, 2], 1, width)
    y0, y1 = np.clip(moved[:, 1], 0, height - 1), np.clip(moved[:, 3], 1, height)
    return np.stack([x0, y0, np.maximum(x1, x0 + 1), np.maximum(y1, y0 + 1)], axis=1)


def is_product_shot(plain: bool, regions: list[Region]) -> bool:
    """Whether the photo shows one product, to be searched whole rather than by its pieces: its border is ``plain``
    (``plain_border``: a studio or cut-out shot, as shops and the catalogue photograph products), or no region
    was found.

    A plain border separates the real-photo benchmark's dev product photos from its rooms without one error
    (benchmarks/results/real.md); a studio shot's several regions are parts of the product (a lamp's shade and
    base) or what it is sold with (a bed's night tables), not pieces to choose from.
    """
    return plain or not regions


def _intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Intersection area of two boxes (either axis order, as long as both use the same)."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(box: tuple[int, int, int, int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    inter = _intersection(a, b)
    return inter / max(_area(a) + _area(b) - inter, 1)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection of two boxes over the smaller one's area."""
    return _intersection(a, b) / max(min(_area(a), _area(b)), 1)


def plain_border(image: Image.Image) -> bool:
    """Whether the outer band of the photo is nearly one flat colour."""
    # Shrunk by whole factors first (a box filter): a 12 MP photo's 1008 x 756 decode in 1.2 ms against 3.0, and
    # the same answer on 1,020 real and rendered photos.
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    small = np.asarray(rgb.resize((64, 64), Image.BILINEAR, reducing_gap=2.0), dtype=np.float32)
    band = np.concatenate([small[:3].reshape(-1, 3), small[-3:].reshape(-1, 3),
                           small[3:-3, :3].reshape(-1, 3), small[3:-3, -3:].reshape(-1, 3)])
    return float(band.std(axis=0).max()) < PLAIN_BORDER_STD


def crop_region(image: Image.Image, box: tuple[int, int, int, int], margin: float = CROP_MARGIN) -> Image.Image:
    """The box cut out of ``image`` with ``margin`` of its size added on each side (the backbone likes some context)."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return image.crop((max(0, round(x0 - dx)), max(0, round(y0 - dy)),
                       min(image.width, round(x1 + dx)), min(image.height, round(y1 + dy))))
