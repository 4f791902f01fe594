"""The detector's network in torch: its TensorFlow-compatible operations, and its exported graph."""

from __future__ import annotations

import numpy as np
import torch

from engine.detector import DETECTOR_PATH, Detector
from engine.detector_graph import DetectorGraph, _same_padding, _upsample2


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


def test_fused_steps_compute_what_the_graph_rows_do():
    # The hard-swish and hard-sigmoid runs of rows are fused and convolutions pad themselves: same maps.
    fused = DetectorGraph.load(DETECTOR_PATH)
    rows = DetectorGraph.load(DETECTOR_PATH)
    rows.steps, rows.last_uses = rows.operations, {}
    assert [step[0] for step in fused.steps].count("hard_swish") > 10
    assert len(fused.steps) < len(rows.operations)
    photo = torch.rand(1, 3, 160, 224, generator=torch.Generator().manual_seed(0)) * 255
    with torch.inference_mode():
        (fused_heat, fused_sizes), (row_heat, row_sizes) = fused.network(photo), rows.network(photo)
    assert torch.allclose(fused_heat, row_heat, atol=1e-5)
    assert torch.allclose(fused_sizes, row_sizes, atol=1e-2)  # input pixels


def test_the_exported_graph_a_search_runs_computes_what_torch_does():
    # Exported from a 480 x 640 trace; run at another size, on the same photo: the same maps.
    photo = torch.rand(1, 3, 320, 224, generator=torch.Generator().manual_seed(1)) * 255
    with torch.inference_mode():
        heat, sizes = DetectorGraph.load(DETECTOR_PATH)(photo)
    exported_heat, exported_sizes = Detector.load().network.run(photo.numpy())
    assert exported_heat.shape == tuple(heat.shape) and exported_sizes.shape == tuple(sizes.shape)
    np.testing.assert_allclose(exported_heat, heat.numpy(), atol=1e-5)
    np.testing.assert_allclose(exported_sizes, sizes.numpy(), atol=1e-2)  # input pixels
