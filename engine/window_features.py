"""The proposal pass's cell grid: which windows of a photo stand out as furniture, and the numbers that rank them.

Steps 1-3 of region proposal (``engine.regions`` does the ranking, suppression and boxes):

1. The photo at ``PROPOSAL_SIDE`` px on its longer side (aspect kept) gives the
   embedding layer's feature map, one 1280-d cell per 32 x 32 px.
2. Objectness per cell, the product of two cues: how unlike the photo's border
   the cell looks (walls and floors reach the border) and how much it looks like
   the catalogue: its best cosine similarity to any catalogue image, above the
   photo's median cell.
3. Every axis-aligned window of cells gets a contrast score: its mean
   objectness minus the mean in a one-cell ring around it, times sqrt(area).
   The ``CANDIDATES`` best windows that do not overlap a better one by more than
   ``CANDIDATE_IOU`` are average-pooled (via an integral image), L2-normalised,
   classified with the catalogue's ``CategoryClassifier`` and described by the
   numbers the window scorer reads (``engine.window_scorer.window_feature_names``).

Windows and boxes are (x0, y0, x1, y1) everywhere, as in ``engine.regions``; here in cells,
end-exclusive, and ``cells_to_pixels`` turns them into photo pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.networks import Backbone
from engine.classify import CategoryClassifier
from engine.images import normalised_batch
from engine.vectors import dot_products
from engine.window_scorer import window_feature_names

# Longer side of the proposal pass; a multiple of the 32 px cell. A 20-cell grid: with fewer cells no
# candidate window fits most thin pieces such as lamps (benchmarks/README.md).
PROPOSAL_SIDE = 640
CELL_SIZE = 32  # input pixels per cell of the proposal pass (the backbone's output stride)

# Border cells an object may touch without being taken for background.
BORDER_TOLERANCE = 3
# Width in cells of the ring around a window whose objectness it must exceed.
RING = 1
# Candidate windows pooled, classified and scored per photo (of 25,200 on the 20 x 15 grid), taken in
# contrast order, skipping any that overlaps an already taken one by more than CANDIDATE_IOU: the top
# windows by contrast alone are mostly shifted copies of a few windows, and miss objects.
CANDIDATES = 500
CANDIDATE_IOU = 0.7
# Windows taken at a time by the suppression (see _distinct).
SUPPRESSION_BLOCK = 512
# Catalogue images the cells are compared with. A larger catalogue is sampled evenly (``proposal_sample``):
# comparing each cell with every image of a million costs seconds, and the window scorer was trained on
# the best similarities to a catalogue of 702 images, which a few thousand approximate.
PROPOSAL_SAMPLE_LIMIT = 2_000


@dataclass(frozen=True)
class ProposalSample:
    """What region proposal uses of a catalogue: its unit embeddings [N, C], each row's category index, its classifier."""

    vectors: np.ndarray
    labels: np.ndarray
    classifier: CategoryClassifier

    @property
    def categories(self) -> list[str]:
        return self.classifier.categories


def proposal_sample(vectors: np.ndarray, labels: np.ndarray, classifier: CategoryClassifier,
                       limit: int = PROPOSAL_SAMPLE_LIMIT) -> ProposalSample:
    """The catalogue as region proposal sees it: every image up to ``limit``; above it ``limit`` images
    evenly spaced through each category's rows, in proportion to the category's size (at least one each)."""
    if len(vectors) <= limit:
        return ProposalSample(vectors, labels, classifier)
    rows = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        share = max(1, round(limit * len(members) / len(labels)))
        rows.append(members[np.linspace(0, len(members) - 1, min(share, len(members))).round().astype(int)])
    picked = np.unique(np.concatenate(rows))
    return ProposalSample(np.ascontiguousarray(vectors[picked]), labels[picked], classifier)


@dataclass(frozen=True)
class WindowCandidates:
    """The candidate windows of one photo, in contrast order, with what ranking them needs.

    ``windows`` rows are (x0, y0, x1, y1) in cells, end-exclusive; ``features``
    follow ``window_feature_names``; ``embeddings`` are unit average-pooled
    features; ``probabilities`` the catalogue's category probabilities.
    """

    windows: np.ndarray
    contrast: np.ndarray
    inside: np.ndarray
    features: np.ndarray
    embeddings: np.ndarray
    probabilities: np.ndarray


def proposal_feature_map(backbone: Backbone, image: Image.Image,
                         side: int = PROPOSAL_SIDE) -> tuple[np.ndarray, float, float]:
    """The proposal pass: feature map cells [h, w, C] of the photo at ``side`` px on its longer side, and the x and
    y scale from cells' pixels back to the photo's."""
    width, height = image.size
    scale = side / max(width, height)
    new_w = max(CELL_SIZE, round(width * scale / CELL_SIZE) * CELL_SIZE)
    new_h = max(CELL_SIZE, round(height * scale / CELL_SIZE) * CELL_SIZE)
    resized = image.convert("RGB").resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0)
    batch = normalised_batch(np.asarray(resized)[None], backbone.spec.preprocessing)
    cells = np.ascontiguousarray(backbone.feature_map(batch)[0].transpose(1, 2, 0))
    return cells, width / new_w, height / new_h


def _objectness(unit_cells: np.ndarray, catalogue_similarity: np.ndarray) -> np.ndarray:
    """Furniture likelihood per cell [h, w] in [0, 1] from the cells' unit features [h, w, C].

    The product of two cues: how unlike the photo's border the cell looks (walls
    and floors reach the border, furniture rarely fills it) and how much the cell
    looks like furniture: its best cosine similarity to any catalogue image
    (``catalogue_similarity`` [h, w, N]), above the photo's median cell. The
    catalogue knows its own products far better than ImageNet's few furniture
    classes do (those gave 32% box recall on the dev scenes against 45%).
    """
    border = np.concatenate([unit_cells[0], unit_cells[-1], unit_cells[1:-1, 0], unit_cells[1:-1, -1]])
    # Distance to the most similar border cell; ignoring the closest few tolerates an object touching the border.
    similarity = dot_products(unit_cells, border)
    tolerance = min(BORDER_TOLERANCE, border.shape[0] - 1)
    nearest = -np.partition(-similarity, tolerance, axis=-1)[..., tolerance]
    unlike_border = np.clip(1.0 - nearest, 0.0, None)
    best = catalogue_similarity.max(axis=-1)
    furniture = np.clip(best - np.median(best), 0.0, None)
    objectness = unlike_border * furniture
    return objectness / max(float(objectness.max()), 1e-6)


@functools.lru_cache(maxsize=16)
def _windows(grid_h: int, grid_w: int) -> np.ndarray:
    """Every window of whole cells as rows (x0, y0, x1, y1), end-exclusive (cached per grid; read-only)."""
    ys = [(y0, y1) for y0 in range(grid_h) for y1 in range(y0 + 1, grid_h + 1)]
    xs = [(x0, x1) for x0 in range(grid_w) for x1 in range(x0 + 1, grid_w + 1)]
    y = np.array(ys).repeat(len(xs), axis=0)
    x = np.tile(np.array(xs), (len(ys), 1))
    windows = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    windows.flags.writeable = False
    return windows


def _box_sums(integral: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Sums over (x0, y0, x1, y1) boxes of the map whose zero-padded integral image [y, x] is ``integral``."""
    x0, y0, x1, y1 = boxes.T
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _areas(boxes: np.ndarray) -> np.ndarray:
    """Areas in cells of (x0, y0, x1, y1) boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _box_means(integral: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Means over boxes (0 for empty boxes, e.g. a strip beyond the photo's edge)."""
    areas = _areas(boxes)
    return np.where(areas > 0, _box_sums(integral, boxes) / np.maximum(areas, 1), 0.0)


def _integral(values: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Zero-padded 2-D cumulative sum over the first two axes."""
    padded = np.zeros((values.shape[0] + 1, values.shape[1] + 1, *values.shape[2:]), dtype=dtype)
    inner = padded[1:, 1:]
    inner[...] = values
    # Row by row, then column by column: whole contiguous slices per step, ~6x np.cumsum's speed on [h, w, C].
    for row in range(1, inner.shape[0]):
        inner[row] += inner[row - 1]
    for column in range(1, inner.shape[1]):
        inner[:, column] += inner[:, column - 1]
    return padded


def _distinct(windows: np.ndarray, scores: np.ndarray, count: int, max_iou: float) -> np.ndarray:
    """Indices of the best-scoring windows, none overlapping a better kept one by more than ``max_iou``, at most ``count``.

    Greedy non-maximum suppression, a block of ``SUPPRESSION_BLOCK`` windows at a time in score order: each
    block's overlaps with the windows kept so far and with each other are one array operation, and it stops
    once ``count`` are kept (over all 25,200 windows of a 20 x 15 grid, most of the work lies past the 500th).
    """
    order = np.argsort(-scores, kind="stable")
    boxes = windows[order].astype(np.int16)  # a grid's cells: a window's area is at most a few hundred
    kept = np.zeros(0, dtype=np.int64)
    for start in range(0, len(order), SUPPRESSION_BLOCK):
        block = np.arange(start, min(start + SUPPRESSION_BLOCK, len(order)))
        # Windows overlapping a kept one too much are out; the rest are settled within the block, in order.
        alive = block[~_overlapping(boxes[block], boxes[kept], max_iou).any(axis=1)]
        overlaps = _overlapping(boxes[alive], boxes[alive], max_iou)
        suppressed = np.zeros(len(alive), dtype=bool)
        for i in range(len(alive)):
            if not suppressed[i]:
                suppressed[i + 1:] |= overlaps[i, i + 1:]
        kept = np.concatenate([kept, alive[~suppressed]])
        if len(kept) >= count:
            break
    return order[kept[:count]]


def _overlapping(a: np.ndarray, b: np.ndarray, max_iou: float) -> np.ndarray:
    """Whether each pair of (x0, y0, x1, y1) windows in whole cells overlaps by more than ``max_iou``: [len(a), len(b)].

    Intersections and unions are counted in small integers (exact), and the intersection compared with
    ``max_iou`` times the union: no division (the suppression's blocks of 512 x 500: 1.4 ms against 2.9 for IoUs
    divided out in floats, the same answers).
    """
    width = np.minimum(a[:, None, 2], b[None, :, 2])
    width -= np.maximum(a[:, None, 0], b[None, :, 0])
    np.maximum(width, 0, out=width)
    height = np.minimum(a[:, None, 3], b[None, :, 3])
    height -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(height, 0, out=height)
    width *= height  # the intersections
    union = _areas(a)[:, None] + _areas(b)[None, :]
    union -= width
    return width > np.float32(max_iou) * union


def _grown(windows: np.ndarray, by: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Windows grown by ``by`` cells on every side, clipped to the grid."""
    return np.stack([np.maximum(windows[:, 0] - by, 0), np.maximum(windows[:, 1] - by, 0),
                     np.minimum(windows[:, 2] + by, grid_w), np.minimum(windows[:, 3] + by, grid_h)], axis=1)


def _ring_means(integral: np.ndarray, windows: np.ndarray, inside: np.ndarray, width: int) -> np.ndarray:
    """Mean objectness in the ring ``width`` cells wide around each window (clipped to the grid)."""
    grid_h, grid_w = integral.shape[0] - 1, integral.shape[1] - 1
    areas = _areas(windows)
    outer = _grown(windows, width, grid_h, grid_w)
    return (_box_sums(integral, outer) - inside * areas) / np.maximum(_areas(outer) - areas, 1.0)


def _side_strips(windows: np.ndarray, grid_h: int, grid_w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per side (top, bottom, left, right): the window's edge row/column and the one just outside it (empty at the grid's edge)."""
    x0, y0, x1, y1 = windows.T
    return [
        (np.stack([x0, y0, x1, y0 + 1], 1), np.stack([x0, np.maximum(y0 - 1, 0), x1, y0], 1)),
        (np.stack([x0, y1 - 1, x1, y1], 1), np.stack([x0, y1, x1, np.minimum(y1 + 1, grid_h)], 1)),
        (np.stack([x0, y0, x0 + 1, y1], 1), np.stack([np.maximum(x0 - 1, 0), y0, x0, y1], 1)),
        (np.stack([x1 - 1, y0, x1, y1], 1), np.stack([x1, y0, np.minimum(x1 + 1, grid_w), y1], 1)),
    ]


def _edge_strips(integral: np.ndarray, windows: np.ndarray, grid_h: int, grid_w: int) -> list[np.ndarray]:
    """Per side: mean objectness on the window's edge row/column, just outside it, and the step.

    A window that fits an object has object on all four edges and background just outside.
    """
    columns = []
    for edge, outside in _side_strips(windows, grid_h, grid_w):
        edge_mean, outside_mean = _box_means(integral, edge), _box_means(integral, outside)
        columns += [edge_mean, outside_mean, edge_mean - outside_mean]
    return columns


def _gram_integral(cells: np.ndarray) -> np.ndarray:
    """The zero-padded 4-D integral [h+1, w+1, h+1, w+1] of the cells' Gram matrix (float64): the dot product of two
    windows' summed features is 16 of its entries (``_window_dots``), where summing 1280-d features over each
    window costs a 1280-d gather per corner."""
    grid_h, grid_w, channels = cells.shape
    flat = cells.reshape(-1, channels)
    gram = dot_products(flat, flat).astype(np.float64).reshape(grid_h, grid_w, grid_h, grid_w)
    integral = np.zeros((grid_h + 1, grid_w + 1, grid_h + 1, grid_w + 1))
    integral[1:, 1:, 1:, 1:] = gram
    for axis in range(4):
        np.cumsum(integral, axis=axis, out=integral)
    return integral


def _corners(windows: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray, int], ...]:
    """The (y, x) corners of windows [N, 4] in a zero-padded integral image, each with the sign it adds to a window's
    sum (as in ``_box_sums``)."""
    x0, y0, x1, y1 = windows.T
    return (y1, x1, 1), (y0, x1, -1), (y1, x0, -1), (y0, x0, 1)


def _window_dots(gram_integral: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products of windows ``a`` [N, 4]'s summed features with windows ``b`` [N, 4]'s, row by row."""
    total = np.zeros(len(a))
    for ya, xa, sign_a in _corners(a):
        for yb, xb, sign_b in _corners(b):
            total += (sign_a * sign_b) * gram_integral[ya, xa, yb, xb]
    return total


def _cosines(dots: np.ndarray, a_norms: np.ndarray, b_squared_norms: np.ndarray) -> np.ndarray:
    """Cosines from dot products and norms (0 where either vector is zero)."""
    norms = a_norms * np.sqrt(np.maximum(b_squared_norms, 0.0))
    return np.where(norms > 0, dots / np.maximum(norms, 1e-12), 0.0)


def _context_columns(gram_integral: np.ndarray, product_integral: np.ndarray, windows: np.ndarray,
                     summed_norms: np.ndarray, best_similarity: np.ndarray) -> list[np.ndarray]:
    """How much a window's surroundings look like its inside: a window cut through an object looks like
    what lies past its cut edge, and grows more like a catalogue image when widened.

    Columns: cosine of the window's summed features with its one-cell ring's, then with the strip just
    outside each side (top, bottom, left, right), then the best catalogue similarity gained by growing the
    window one cell on every side.
    """
    grid_h, grid_w = gram_integral.shape[0] - 1, gram_integral.shape[1] - 1
    grown = _grown(windows, 1, grid_h, grid_w)
    inside_dot_grown = _window_dots(gram_integral, windows, grown)
    grown_squared = _window_dots(gram_integral, grown, grown)
    squared = summed_norms.astype(np.float64) ** 2
    # The ring is the grown window less the window; one beyond the grid's edge is empty (cosine 0).
    ring = _cosines(inside_dot_grown - squared, summed_norms, grown_squared - 2 * inside_dot_grown + squared)
    columns = [np.where(_areas(grown) > _areas(windows), ring, 0.0)]
    for _, outside in _side_strips(windows, grid_h, grid_w):
        strip = _cosines(_window_dots(gram_integral, windows, outside), summed_norms,
                         _window_dots(gram_integral, outside, outside))
        columns.append(np.where(_areas(outside) > 0, strip, 0.0))
    grown_norms = np.maximum(np.sqrt(np.maximum(grown_squared, 0.0)), 1e-12)
    grown_best = (_box_sums(product_integral, grown) / grown_norms[:, None]).max(axis=1)
    return [*columns, grown_best - best_similarity]


def _category_maxima(similarity: np.ndarray, labels: np.ndarray, categories: int) -> np.ndarray:
    """Each window's best similarity [N, categories] to the catalogue images of each category (-1 for a category
    with none): one gather of the columns in category order, then one maximum per category's run of columns."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=categories)
    present = np.flatnonzero(counts)
    maxima = np.full((len(similarity), categories), -1.0, dtype=similarity.dtype)
    if len(present):
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[present]
        maxima[:, present] = np.maximum.reduceat(similarity[:, order], starts, axis=1)
    return maxima


def candidate_windows(cells: np.ndarray, sample: ProposalSample) -> WindowCandidates:
    """The photo's distinct high-contrast windows with their scorer features (see the module docstring)."""
    cell_features = cells
    norms = np.maximum(np.linalg.norm(cell_features, axis=-1, keepdims=True), 1e-12)
    # Products with the catalogue are linear, so a window's are the sums of its cells' (as its embedding is
    # the sum of its cells', normalised): one product per cell instead of one per candidate window.
    cell_products = dot_products(cell_features, sample.vectors)
    objectness = _objectness(cell_features / norms, cell_products / norms)
    grid_h, grid_w = objectness.shape
    windows = _windows(grid_h, grid_w)
    areas = _areas(windows).astype(np.float64)
    integral = _integral(objectness)
    inside = _box_sums(integral, windows) / areas
    ring = _ring_means(integral, windows, inside, RING)
    # Contrast: a window hugging one object beats both its fragments and windows spanning two objects;
    # the sqrt(area) factor breaks ties towards whole objects without drowning small ones.
    contrast = np.clip(inside - ring, 0.0, None) * np.sqrt(areas)
    positive = np.flatnonzero(contrast > 0)
    picked = positive[_distinct(windows[positive], contrast[positive], CANDIDATES, CANDIDATE_IOU)]
    categories = sample.categories
    if picked.size == 0:
        empty = np.zeros((0,))
        return WindowCandidates(np.zeros((0, 4), int), empty, empty, np.zeros((0, len(window_feature_names(categories)))),
                                np.zeros((0, cells.shape[-1]), np.float32), np.zeros((0, len(categories))))
    chosen, chosen_inside = windows[picked], inside[picked]
    # Average pooling whatever the backbone's own (GeM for the default): GeM over a window lets a few
    # strong context cells dominate it (benchmarks/README.md).
    # float32 integrals: sums of windows to ~1e-4 relative, at half the memory traffic of float64.
    feature_integral, product_integral = _integral(cell_features, np.float32), _integral(cell_products, np.float32)
    summed = _box_sums(feature_integral, chosen)
    summed_norms = np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)
    pooled = (summed / summed_norms).astype(np.float32)
    probabilities = sample.classifier.predict_proba(pooled)
    ranked = np.sort(probabilities, axis=1)[:, ::-1]
    second = ranked[:, 1] if ranked.shape[1] > 1 else np.zeros(len(ranked))
    similarity = _box_sums(product_integral, chosen) / summed_norms
    top = min(5, similarity.shape[1])
    top5 = np.sort(np.partition(similarity, similarity.shape[1] - top, axis=1)[:, -top:], axis=1)
    per_category = _category_maxima(similarity, sample.labels, len(categories))
    rings = [ring[picked], _ring_means(integral, chosen, chosen_inside, RING + 1)]
    width, height = (chosen[:, 2] - chosen[:, 0]) / grid_w, (chosen[:, 3] - chosen[:, 1]) / grid_h
    columns = [
        chosen_inside, rings[0], chosen_inside - rings[0], rings[1], chosen_inside - rings[1],
        np.log(height), np.log(width), np.log(height * width),
        chosen[:, 1] == 0, chosen[:, 3] == grid_h, (chosen[:, 0] == 0) | (chosen[:, 2] == grid_w),
        (chosen[:, 1] + chosen[:, 3]) / (2 * grid_h),
        *_edge_strips(integral, chosen, grid_h, grid_w),
        ranked[:, 0], ranked[:, 0] - second, top5[:, -1], top5.mean(axis=1), top5[:, -1] - np.median(similarity, axis=1),
        *_context_columns(_gram_integral(cell_features), product_integral, chosen, summed_norms[:, 0], top5[:, -1]),
    ]
    features = np.column_stack([*columns, probabilities, per_category]).astype(np.float32)
    return WindowCandidates(chosen, contrast[picked], chosen_inside, features, pooled, probabilities)


def cells_to_pixels(window: np.ndarray, scale_x: float, scale_y: float) -> tuple[int, int, int, int]:
    """An (x0, y0, x1, y1) window in cells as a box in photo pixels."""
    x0, y0, x1, y1 = window * CELL_SIZE
    return round(x0 * scale_x), round(y0 * scale_y), round(x1 * scale_x), round(y1 * scale_y)
