"""The furniture detector: its TensorFlow-compatible operations, its decoding, and the shipped network on renders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.detector import OUTPUT_STRIDE, Detector, _same_padding, _upsample2, decode, input_size, load_detector
from engine.images import load_image
from engine.settings import DEFAULT_SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def test_same_padding_puts_the_extra_pixel_at_the_end_as_tensorflow_does():
    x = torch.ones(1, 1, 8, 8)
    assert _same_padding(x, 3, 2).shape[-2:] == (9, 9)  # 4 outputs need 9 pixels: 0 before, 1 after
    assert _same_padding(x, 3, 2)[0, 0, 0, 0] == 1 and _same_padding(x, 3, 2)[0, 0, -1, -1] == 0
    assert _same_padding(x, 3, 1).shape[-2:] == (10, 10)
    assert _same_padding(x, 5, 1)[0, 0, 2, 2] == 1 and _same_padding(x, 5, 1)[0, 0, 1, 1] == 0


def test_upsampling_is_tensorflow_1s_bilinear_without_half_pixel_centres():
    x = torch.tensor([[0.0, 2.0], [4.0, 6.0]])[None, None]
    expected = torch.tensor([[0.0, 1.0, 2.0, 2.0], [2.0, 3.0, 4.0, 4.0], [4.0, 5.0, 6.0, 6.0], [4.0, 5.0, 6.0, 6.0]])
    assert torch.equal(_upsample2(x)[0, 0], expected)


def test_decoding_keeps_local_maxima_and_boxes_them_around_their_cell():
    heatmap = torch.zeros(1, 3, 16, 16)
    heatmap[0, 2, 10, 5] = 0.9  # a peak of class 2 at row 10, column 5
    heatmap[0, 2, 10, 6] = 0.8  # its neighbour: not a local maximum
    heatmap[0, 0, 3, 3] = 0.5
    sizes = torch.zeros(1, 4, 16, 16)
    sizes[0, :, 10, 5] = torch.tensor([4.0, 8.0, 12.0, 16.0])  # left, top, right, bottom
    detections = decode(heatmap, sizes, count=3)[0]
    x, y = 5 * OUTPUT_STRIDE, 10 * OUTPUT_STRIDE
    assert detections[0].tolist() == [x - 4, y - 8, x + 12, y + 16, torch.tensor(0.9).item(), 2]
    assert detections[1, 4].item() == 0.5 and detections[1, 5].item() == 0
    assert detections[2, 4].item() == 0  # the suppressed neighbour is not among them


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
    network = detector.network
    monkeypatch.setattr(detector, "network", lambda batch: runs.append(batch.shape) or network(batch))
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
    network = detector.network
    monkeypatch.setattr(detector, "network", lambda batch: shapes.append(tuple(batch.shape)) or network(batch))
    # The armchair render on the top half of a tall white photo: its box must come back in the photo's pixels.
    chair = load_image(ROOT / "reference_gallery" / "chair" / "chair-bs0-armchair" / "front_three_quarter.jpg")
    photo = Image.new("RGB", (chair.width, chair.height * 2), "white")
    photo.paste(chair, (0, 0))
    found = detector.detect(photo, 0.2, 448)
    assert shapes == [(1, 3, 448, 224)]
    assert found and found[0].category == "chair"
    x0, y0, x1, y1 = found[0].box
    assert x0 < chair.width / 2 < x1 and y0 < chair.height / 2 < y1 < chair.height * 1.1


def test_fused_steps_compute_what_the_graph_rows_do():
    # The hard-swish and hard-sigmoid runs of rows are fused and convolutions pad themselves: same maps.
    fused = Detector.load()
    rows = Detector.load()
    rows.steps, rows.last_uses = rows.operations, {}
    assert [step[0] for step in fused.steps].count("hard_swish") > 10
    assert len(fused.steps) < len(rows.operations)
    photo = torch.rand(1, 3, 160, 224, generator=torch.Generator().manual_seed(0)) * 255
    with torch.inference_mode():
        (fused_heat, fused_sizes), (row_heat, row_sizes) = fused.network(photo), rows.network(photo)
    assert torch.allclose(fused_heat, row_heat, atol=1e-5)
    assert torch.allclose(fused_sizes, row_sizes, atol=1e-2)  # input pixels
