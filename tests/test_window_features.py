"""The proposal pass's cell grid: windows, their sums and their suppression."""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from engine.window_features import _box_sums, _distinct, _integral, _side_strips, _windows, cells_to_pixels


def test_windows_are_x0_y0_x1_y1_in_cells_like_every_box():
    # A grid 2 cells high and 3 wide: 3 row spans x 6 column spans, none past the grid.
    windows = _windows(2, 3)
    assert len(windows) == 18
    assert windows[:, 2].max() == 3 and windows[:, 3].max() == 2
    assert ((windows[:, 2] > windows[:, 0]) & (windows[:, 3] > windows[:, 1])).all()
    cells = np.arange(6, dtype=float).reshape(2, 3)  # [y, x]
    # The top row's two right cells (1 and 2); the left column (0 and 3).
    assert _box_sums(_integral(cells), np.array([[1, 0, 3, 1], [0, 0, 1, 2]])).tolist() == [3.0, 3.0]
    assert cells_to_pixels(np.array([1, 0, 3, 1]), 2.0, 1.0) == (64, 0, 192, 32)


def test_side_strips_lie_along_each_edge_and_just_outside_it():
    # Window x 1..3, y 1..2 on a 4 x 5 grid (h x w): top, bottom, left, right.
    (top, above), (bottom, below), (left, before), (right, after) = _side_strips(np.array([[1, 1, 3, 2]]), 4, 5)
    assert top.tolist() == [[1, 1, 3, 2]] and above.tolist() == [[1, 0, 3, 1]]
    assert bottom.tolist() == [[1, 1, 3, 2]] and below.tolist() == [[1, 2, 3, 3]]
    assert left.tolist() == [[1, 1, 2, 2]] and before.tolist() == [[0, 1, 1, 2]]
    assert right.tolist() == [[2, 1, 3, 2]] and after.tolist() == [[3, 1, 4, 2]]


def test_suppression_stops_early_but_keeps_what_full_suppression_keeps():
    # _distinct stops once it has enough windows; it must keep exactly what greedy suppression of all keeps first.
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 15, size=(3000, 2))
    windows = np.hstack([corners, corners + rng.integers(1, 6, size=(3000, 2))])
    scores = rng.permutation(3000).astype(float)  # no ties: one right answer
    boxes = torch.from_numpy(windows.astype(np.float32))
    everything = torchvision.ops.nms(boxes, torch.from_numpy(scores).float(), 0.7).numpy()
    for count in (1, 40, 600, 5000):
        assert _distinct(windows, scores, count, 0.7).tolist() == everything[:count].tolist()


def test_a_large_catalogue_is_sampled_evenly_per_category_for_proposals():
    from engine.window_features import proposal_sample

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [3_000, 900, 100])
    vectors = rng.standard_normal((len(labels), 8)).astype(np.float32)
    sampled = proposal_sample(vectors, labels, classifier=None, limit=400)
    # In proportion to each category, spread over its rows (first and last included), rows kept whole.
    assert np.bincount(sampled.labels).tolist() == [300, 90, 10]
    first = np.flatnonzero(labels == 2)[[0, -1]]
    assert all((sampled.vectors == vectors[row]).all(axis=1).any() for row in first)
    small = proposal_sample(vectors[:300], labels[:300], classifier=None, limit=400)
    assert (small.vectors == vectors[:300]).all() and len(small.labels) == 300  # kept whole up to the limit


def test_window_dot_products_from_the_gram_integral_are_those_of_the_summed_features():
    from engine.window_features import _gram_integral, _window_dots

    rng = np.random.default_rng(1)
    cells = rng.standard_normal((4, 5, 16)).astype(np.float32)
    windows = _windows(4, 5)
    others = windows[rng.permutation(len(windows))]
    integral = _integral(cells.astype(np.float64))
    expected = np.einsum("ij,ij->i", _box_sums(integral, windows), _box_sums(integral, others))
    assert np.allclose(_window_dots(_gram_integral(cells), windows, others), expected, rtol=1e-5, atol=1e-4)


def test_each_category_s_best_similarity_and_minus_one_where_it_has_no_image():
    from engine.window_features import _category_maxima

    rng = np.random.default_rng(2)
    labels = np.array([2, 0, 2, 0, 3, 2])  # category 1 has no image
    similarity = rng.uniform(-1, 1, (7, len(labels))).astype(np.float32)  # cosines
    expected = np.stack([similarity[:, labels == c].max(axis=1, initial=-1.0) for c in range(4)], axis=1)
    assert (_category_maxima(similarity, labels, 4) == expected).all()


def test_window_overlaps_counted_in_integers_are_the_float_ones():
    from engine.window_features import _overlapping

    rng = np.random.default_rng(3)
    windows = _windows(15, 20)
    a, b = windows[rng.choice(len(windows), 300)], windows[rng.choice(len(windows), 200)]
    af, bf = a.astype(np.float64), b.astype(np.float64)
    width = np.clip(np.minimum(af[:, None, 2], bf[None, :, 2]) - np.maximum(af[:, None, 0], bf[None, :, 0]), 0, None)
    height = np.clip(np.minimum(af[:, None, 3], bf[None, :, 3]) - np.maximum(af[:, None, 1], bf[None, :, 1]), 0, None)
    area = lambda w: (w[:, 2] - w[:, 0]) * (w[:, 3] - w[:, 1])  # noqa: E731
    intersection = width * height
    union = area(af)[:, None] + area(bf)[None, :] - intersection
    for max_iou in (0.3, 0.5, 0.7):  # 0.5 and 0.7: pairs at exactly the threshold (1/2, 7/10) are not "more"
        expected = intersection * 10 > max_iou * 10 * union + 1e-9
        assert (_overlapping(a.astype(np.int16), b.astype(np.int16), max_iou) == expected).all()
