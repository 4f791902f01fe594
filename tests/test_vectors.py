"""Unit vectors and their dot products."""

from __future__ import annotations

import numpy as np

from engine.vectors import dot_products, normalise


def test_dot_products_keep_the_leading_axes_of_a_photo_s_cells():
    rng = np.random.default_rng(0)
    cells, others = rng.standard_normal((3, 4, 8)), rng.standard_normal((5, 8))
    products = dot_products(cells, others)
    assert products.shape == (3, 4, 5) and products.dtype == np.float32
    assert np.allclose(products, np.einsum("hwc,nc->hwn", cells, others), atol=1e-5)
    assert dot_products(cells[0, 0], others).shape == (5,)  # one vector: one row of products


def test_normalised_vectors_have_unit_length_and_zero_stays_zero():
    unit = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(unit, [[0.6, 0.8], [0.0, 0.0]]) and unit.dtype == np.float32
