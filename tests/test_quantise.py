"""The 8-bit backbone's calibration: the bundled catalogue's images as indexing and the proposal pass see them,
and a clear error without it."""

from __future__ import annotations

import pytest

from engine.models import ModelUnavailableError
from engine.catalogue import BUNDLED_CATALOGUE
from engine.quantise import CALIBRATION_STRIDE, MOSAICS, calibration_batches


def test_calibration_sees_catalogue_images_and_room_sized_mosaics():
    batches = calibration_batches("efficientnet_lite0")
    images = len(sorted(BUNDLED_CATALOGUE.glob("*/*/*.jpg"))[::CALIBRATION_STRIDE])
    singles, mosaics = batches[:-MOSAICS], batches[-MOSAICS:]
    assert sum(len(batch) for batch in singles) == images
    assert all(batch.shape[1:] == (3, 224, 224) for batch in singles)
    assert all(batch.shape == (1, 3, 480, 640) for batch in mosaics)
    assert -1.01 < min(batch.min() for batch in batches) and max(batch.max() for batch in batches) < 1.01


def test_without_the_bundled_catalogue_it_says_what_is_missing(tmp_path):
    with pytest.raises(ModelUnavailableError, match="cannot calibrate the 8-bit efficientnet_lite0 without the"):
        calibration_batches("efficientnet_lite0", tmp_path / "gone")
