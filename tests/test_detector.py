"""The furniture detector: its TensorFlow-compatible operations, its decoding, and the shipped network on renders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.detector import OUTPUT_STRIDE, Detector, decode, input_size, load_detector
from engine.images import load_image
from engine.settings import DEFAULT_SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def test_decoding_keeps_local_maxima_and_boxes_them_around_their_cell():
    heatmap = np.zeros((1, 3, 16, 16), np.float32)
    heatmap[0, 2, 10, 5] = 0.9  # a peak of class 2 at row 10, column 5
    heatmap[0, 2, 10, 6] = 0.8  # its neighbour: not a local maximum
    heatmap[0, 0, 3, 3] = 0.5
    sizes = np.zeros((1, 4, 16, 16), np.float32)
    sizes[0, :, 10, 5] = [4.0, 8.0, 12.0, 16.0]  # left, top, right, bottom
    detections = decode(heatmap, sizes, count=3)[0]
    x, y = 5 * OUTPUT_STRIDE, 10 * OUTPUT_STRIDE
    assert detections[0].tolist() == [x - 4, y - 8, x + 12, y + 16, np.float32(0.9), 2]
    assert detections[1, 4] == 0.5 and detections[1, 5] == 0
    assert detections[2, 4] == 0  # the suppressed neighbour is not among them


@pytest.mark.parametrize("side", [DEFAULT_SETTINGS.detection_side, 320])
def test_the_shipped_detector_boxes_rendered_furniture_and_nothing_in_a_cheetah(side):
    detector = load_detector()
    assert detector is not None
    chair = load_image(ROOT / "reference_gallery" / "chair" / "chair-bs0-armchair" / "front_three_quarter.jpg")
    found = detector.detect(chair, 0.2, side)
    assert found and found[0].category == "chair"
    x0, y0, x1, y1 = found[0].box
    assert x0 < chair.width / 2 < x1 and y0 < chair.height / 2 < y1
    sofa = load_image(ROOT / "reference_gallery" / "sofa" / "sofa-bs0-couch" / "front_three_quarter.jpg")
    assert detector.detect(sofa, 0.2, side)[0].category == "sofa"
    assert detector.detect(load_image(ROOT / "tests" / "data" / "cheetah.jpg"), 0.2, side) == []


def test_the_input_side_must_suit_the_network():
    with pytest.raises(ValueError, match="multiple of 32"):
        load_detector().detect(load_image(ROOT / "tests" / "data" / "cheetah.jpg"), 0.2, 300)


def test_search_and_region_search_share_one_detector_pass(monkeypatch):
    # The page searches a photo, then finds its regions: the same network input, so the network runs once,
    # and a lower score threshold still sees every detection the pass kept.
    detector = Detector.load()
    runs = []
    run = detector.network.run
    monkeypatch.setattr(detector.network, "run", lambda batch: runs.append(batch.shape) or run(batch))
    chair = load_image(ROOT / "reference_gallery" / "chair" / "chair-bs0-armchair" / "front_three_quarter.jpg")
    loose = detector.detect(chair, DEFAULT_SETTINGS.main_piece_score, DEFAULT_SETTINGS.detection_side)
    strict = detector.detect(chair.copy(), 0.2, DEFAULT_SETTINGS.detection_side)
    assert len(runs) == 1 and strict == [d for d in loose if d.score >= 0.2]
    detector.detect(chair, 0.2, 320)  # another input: another pass
    sofa = load_image(ROOT / "reference_gallery" / "sofa" / "sofa-bs0-couch" / "front_three_quarter.jpg")
    assert detector.detect(sofa, 0.2, DEFAULT_SETTINGS.detection_side)[0].category == "sofa"
    assert len(runs) == 3


def test_the_network_sees_the_photo_with_its_aspect_kept(monkeypatch):
    assert input_size((1416, 1024), 448) == (448, 320)
    assert input_size((1024, 1416), 448) == (320, 448)
    assert input_size((4000, 100), 448) == (448, 32)
    detector = Detector.load()
    shapes = []
    run = detector.network.run
    monkeypatch.setattr(detector.network, "run", lambda batch: shapes.append(tuple(batch.shape)) or run(batch))
    # The armchair render on the top half of a tall white photo: its box must come back in the photo's pixels.
    chair = load_image(ROOT / "reference_gallery" / "chair" / "chair-bs0-armchair" / "front_three_quarter.jpg")
    photo = Image.new("RGB", (chair.width, chair.height * 2), "white")
    photo.paste(chair, (0, 0))
    found = detector.detect(photo, 0.2, 448)
    assert shapes == [(1, 3, 448, 224)]
    assert found and found[0].category == "chair"
    x0, y0, x1, y1 = found[0].box
    assert x0 < chair.width / 2 < x1 and y0 < chair.height / 2 < y1 < chair.height * 1.1
