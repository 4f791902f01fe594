"""The detector converter, on a small TensorFlow.js graph written by the test, checked against NHWC arithmetic in NumPy."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.detector_graph import DetectorGraph
from buildtime.convert_detector import main


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _conv_attrs(padding: str, fused: list[str] | None = None) -> dict:
    attrs = {"strides": {"list": {"i": ["1", "1", "1", "1"]}}, "padding": _s(padding)}
    if fused is not None:
        attrs["fused_ops"] = {"list": {"s": [_s(op)["s"] for op in fused]}}
    return attrs


def write_graph(folder: Path, weights: dict[str, np.ndarray]) -> Path:
    """image -> 1x1 conv + bias + relu6 -> x0.5 -> + its spatial mean -> 2x resize -> 3x3 depthwise (SAME)
    -> sigmoid = keypoints; the resized map -> 1x1 conv (no bias) = wh."""
    def const(name):
        return {"name": name, "op": "Const"}

    nodes = [
        {"name": "tower_0/images", "op": "Placeholder"},
        const("w1"), const("b1"), const("half"), const("axes"), const("size"), const("dw"), const("w2"),
        {"name": "c1", "op": "_FusedConv2D", "input": ["tower_0/images", "w1", "b1"],
         "attr": _conv_attrs("VALID", ["BiasAdd", "Relu6"])},
        {"name": "m", "op": "Mul", "input": ["half", "c1"]},
        {"name": "se", "op": "Mean", "input": ["m", "axes"], "attr": {"keep_dims": {"b": True}}},
        {"name": "a", "op": "Add", "input": ["m", "se"]},
        {"name": "up", "op": "ResizeBilinear", "input": ["a", "size"],
         "attr": {"align_corners": {"b": False}, "half_pixel_centers": {"b": False}}},
        {"name": "d", "op": "DepthwiseConv2dNative", "input": ["up", "dw"], "attr": _conv_attrs("SAME")},
        {"name": "sig", "op": "Sigmoid", "input": ["d"]},
        {"name": "tower_0/keypoints", "op": "Identity", "input": ["sig"]},
        {"name": "c2", "op": "Conv2D", "input": ["up", "w2"], "attr": _conv_attrs("VALID")},
        {"name": "tower_0/wh", "op": "Identity", "input": ["c2"]},
    ]
    manifest, data = [], b""
    for name, array in weights.items():
        quantised = array.dtype == np.float32
        stored = array.astype(np.float16) if quantised else array
        entry = {"name": name, "shape": list(array.shape), "dtype": "float32" if quantised else "int32"}
        if quantised:
            entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
        manifest.append(entry)
        data += stored.tobytes()
    (folder / "graph.bin").write_bytes(data)
    model = {"modelTopology": {"node": nodes}, "weightsManifest": [{"paths": ["graph.bin"], "weights": manifest}]}
    (folder / "graph.json").write_text(json.dumps(model))
    return folder / "graph.json"


def test_the_converted_graph_computes_what_the_tensorflow_graph_does(tmp_path):
    rng = np.random.default_rng(0)
    half16 = lambda a: a.astype(np.float16).astype(np.float32)  # the graph's weights are float16
    weights = {
        "w1": half16(rng.normal(size=(1, 1, 3, 4))), "b1": half16(rng.normal(size=4)),
        "half": np.array(0.5, np.float32), "axes": np.array([1, 2], np.int32), "size": np.array([8, 8], np.int32),
        "dw": half16(rng.normal(size=(3, 3, 4, 1))), "w2": half16(rng.normal(size=(1, 1, 4, 4))),
    }
    output = tmp_path / "detector.npz"
    main([str(write_graph(tmp_path, weights)), "--output", str(output)])
    image = rng.uniform(0, 6, size=(4, 4, 3)).astype(np.float32)  # NHWC without the batch

    c1 = np.clip(np.einsum("hwi,io->hwo", image, weights["w1"][0, 0]) + weights["b1"], 0, 6) * 0.5
    a = c1 + c1.mean(axis=(0, 1), keepdims=True)
    up = np.zeros((8, 8, 4), np.float32)  # TF1 bilinear: source pixel = output pixel / 2
    for y in range(8):
        for x in range(8):
            y0, x0, fy, fx = y // 2, x // 2, (y % 2) / 2, (x % 2) / 2
            y1, x1 = min(y0 + 1, 3), min(x0 + 1, 3)
            up[y, x] = ((1 - fy) * ((1 - fx) * a[y0, x0] + fx * a[y0, x1]) + fy * ((1 - fx) * a[y1, x0] + fx * a[y1, x1]))
    padded = np.pad(up, ((1, 1), (1, 1), (0, 0)))
    depthwise = sum(padded[i:i + 8, j:j + 8] * weights["dw"][i, j, :, 0] for i in range(3) for j in range(3))
    keypoints = 1 / (1 + np.exp(-depthwise))
    wh = np.einsum("hwi,io->hwo", up, weights["w2"][0, 0])

    detector = DetectorGraph.load(output)
    heatmap, sizes = detector.network(torch.from_numpy(image).permute(2, 0, 1)[None])
    np.testing.assert_allclose(heatmap[0].permute(1, 2, 0).numpy(), keypoints, atol=1e-5)
    np.testing.assert_allclose(sizes[0].permute(1, 2, 0).numpy(), wh, atol=1e-4)


def test_an_unsupported_operation_is_named(tmp_path):
    graph = write_graph(tmp_path, {"w1": np.ones((1, 1, 3, 4), np.float32), "b1": np.zeros(4, np.float32),
                                   "half": np.array(0.5, np.float32), "axes": np.array([1, 2], np.int32),
                                   "size": np.array([8, 8], np.int32), "dw": np.ones((3, 3, 4, 1), np.float32),
                                   "w2": np.ones((1, 1, 4, 4), np.float32)})
    model = json.loads(graph.read_text())
    next(node for node in model["modelTopology"]["node"] if node["name"] == "sig")["op"] = "Tanh"
    graph.write_text(json.dumps(model))
    with pytest.raises(NotImplementedError, match="sig: operation Tanh"):
        main([str(graph), "--output", str(tmp_path / "out.npz")])
