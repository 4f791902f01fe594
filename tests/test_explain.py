"""Why a result matched: heat maps from the backbone's feature maps."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.explain import EXPLAIN_SIDE, heat_overlay
from engine.errors import InvalidRequestError
from tests.conftest import draw_furniture


def test_the_photo_is_warm_where_the_product_is(search_engine, tmp_path):
    # A catalogue lamp's drawing on the right of a plain wall: the photo's lamp cells look like the lamp.
    row = next(item.row for item in search_engine.stored.images if item.category == "lamp")
    lamp = Image.open(search_engine.item_path(search_engine.stored.images[row])).convert("RGB")
    photo = Image.new("RGB", (lamp.width * 2, lamp.height), (200, 190, 170))
    photo.paste(lamp, (lamp.width, 0))
    photo.save(tmp_path / "photo.jpg")
    explanation = search_engine.explain_match(tmp_path / "photo.jpg", row)
    heat = explanation.photo_heat
    assert heat.shape[1] == EXPLAIN_SIDE // 32 and 0.0 <= heat.min() and heat.max() == pytest.approx(1.0)
    assert heat[:, heat.shape[1] // 2 :].mean() > 1.5 * heat[:, : heat.shape[1] // 2].mean()
    assert explanation.product_heat.max() == pytest.approx(1.0)
    with pytest.raises(InvalidRequestError, match="no catalogue image"):
        search_engine.explain_match(tmp_path / "photo.jpg", len(search_engine.stored.images))


def test_the_overlay_paints_only_the_warm_cells():
    image = draw_furniture("chair", (30, 90, 200), 0, size=256)
    heat = np.zeros((8, 8))
    heat[:, 4:] = 1.0
    painted = np.asarray(heat_overlay(image, heat), dtype=float)
    original = np.asarray(image.convert("RGB"), dtype=float)
    assert np.abs(painted[:, :100] - original[:, :100]).max() < 8  # cold half: (almost) unchanged
    assert painted[:, 160:, 2].mean() < original[:, 160:, 2].mean() - 60  # warm half: towards orange, less blue
