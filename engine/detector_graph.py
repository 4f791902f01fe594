"""The detector's network in torch: the converted graph's operations run one by one (``engine.export`` writes it
as the ONNX graph a search runs; ``engine.detector`` decodes its outputs).

The graph as converted (``buildtime/convert_detector.py``) spells each hard-swish as four element-wise passes over
a map; fused, and with channels-last maps and weights (oneDNN's layout), torch took about half the time
(benchmarks/README.md, "Detector").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _same_padding(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "SAME" padding: as much as needed for ceil(size / stride) outputs, the extra pixel at the end."""
    padded = []
    for size in (x.shape[3], x.shape[2]):  # F.pad takes the last dimension first
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        padded += [total // 2, total - total // 2]
    return F.pad(x, padded)


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow 1's bilinear resize to twice the size (no half-pixel centres): even outputs copy, odd ones average the next."""
    for dim in (2, 3):
        following = torch.cat([x.narrow(dim, 1, x.shape[dim] - 1), x.narrow(dim, x.shape[dim] - 1, 1)], dim=dim)
        x = torch.stack([x, (x + following) / 2], dim=dim + 1).flatten(dim, dim + 1)
    return x


class DetectorGraph(nn.Module):
    """The converted network: ``operations`` rows are [operation, output name, input names, parameters]."""

    def __init__(self, operations: list, arrays: dict[str, np.ndarray]):
        super().__init__()
        self.operations = operations
        self.steps = _fused_steps(operations)
        self.last_uses = _last_uses(self.steps)
        self.tensors = {name: _as_weight(array) for name, array in arrays.items()}

    @classmethod
    def load(cls, path: Path) -> DetectorGraph:
        with np.load(path) as stored:
            return cls(json.loads(str(stored["operations"])), {k: stored[k] for k in stored.files if k != "operations"})

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network(batch)

    def network(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heat maps [N, 80, h, w] (sigmoid) and box distances [N, 4, h, w] (left, top, right, bottom, input pixels)
        for a batch [N, 3, H, W] of RGB in 0-255."""
        values = {"tower_0/images": batch.contiguous(memory_format=torch.channels_last)}
        for operation, name, inputs, params in self.steps:
            args = [values[i] for i in inputs]
            if operation == "conv":
                y = self._conv(name, args[0], params)
            elif operation == "hard_swish":  # x * relu6(x + 3) * c, c the graph's float16 1/6
                y = F.hardswish(args[0]).mul_(params["scale"])
            elif operation == "hard_sigmoid":  # relu6(x + 3) * c
                y = F.hardsigmoid(args[0]).mul_(params["scale"])
            elif operation in ("add", "mul"):
                other = params.get("constant", args[-1])
                y = args[0] + other if operation == "add" else args[0] * other
            elif operation in ("relu", "relu6", "sigmoid"):
                y = {"relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid}[operation](args[0])
            elif operation == "mean":
                y = args[0].mean(dim=(2, 3), keepdim=True)
            elif operation == "concat":
                y = torch.cat(args, dim=1)
            elif operation == "upsample2":
                y = _upsample2(args[0])
            elif operation == "outputs":
                return args[0], args[1]
            else:
                raise ValueError(f"unknown operation {operation!r} in the detector's operations")
            values[name] = y
            for done in self.last_uses.get(name, ()):  # free maps no later step reads: less memory traffic
                del values[done]
        raise ValueError("the detector's operations have no outputs row")

    def _conv(self, name: str, x: torch.Tensor, params: dict) -> torch.Tensor:
        """One convolution with its activation applied in place. TensorFlow's "SAME" padding is symmetric for
        stride 1 (the convolution pads, no padded copy of the map); stride 2 pads one pixel more at the end."""
        weight = self.tensors[f"weight:{name}"]
        bias = self.tensors[f"bias:{name}"] if params["bias"] else None
        kernel, stride = weight.shape[-1], params["stride"]
        if params["same_padding"] and kernel > 1 and stride > 1:
            y = F.conv2d(_same_padding(x, kernel, stride), weight, bias, stride=stride, groups=params["groups"])
        else:
            padding = kernel // 2 if params["same_padding"] else 0
            y = F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=params["groups"])
        if params["activation"] == "relu":
            return y.relu_()
        return y.clamp_(0.0, 6.0) if params["activation"] == "relu6" else y

def _as_weight(array: np.ndarray) -> torch.Tensor:
    """A stored float16 array as the float32 tensor the kernels want; convolution weights channels-last."""
    tensor = torch.from_numpy(array.astype(np.float32))
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor


def _fused_steps(operations: list) -> list:
    """The operation rows with each hard-swish (mul c, add 3, relu6, mul) and hard-sigmoid (add 3, relu6, mul c)
    run of rows replaced by one row doing the same."""
    steps, at = [], 0
    while at < len(operations):
        operation, name, inputs, params = operations[at]
        following = operations[at + 1:at + 4]
        kinds = [row[0] for row in following]
        if (operation == "mul" and "constant" in params and kinds == ["add", "relu6", "mul"]
                and following[0][2] == inputs and following[0][3].get("constant") == 3.0
                and following[1][2] == [following[0][1]] and sorted(following[2][2]) == sorted([name, following[1][1]])):
            steps.append(["hard_swish", following[2][1], inputs, {"scale": params["constant"] * 6}])
            at += 4
        elif (operation == "add" and params.get("constant") == 3.0 and kinds[:2] == ["relu6", "mul"]
                and following[0][2] == [name] and following[1][2] == [following[0][1]] and "constant" in following[1][3]):
            steps.append(["hard_sigmoid", following[1][1], inputs, {"scale": following[1][3]["constant"] * 6}])
            at += 3
        else:
            steps.append(operations[at])
            at += 1
    return steps


def _last_uses(steps: list) -> dict[str, list[str]]:
    """For each step's output name, the maps that no step after it reads (the network's input excepted)."""
    last_reader = {}
    for operation, name, inputs, params in steps:
        for read in inputs:
            last_reader[read] = name
    uses: dict[str, list[str]] = {}
    for read, name in last_reader.items():
        if read != "tower_0/images":
            uses.setdefault(name, []).append(read)
    return uses


