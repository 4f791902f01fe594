"""Write a network's ONNX graph, built in torch: ``engine.networks`` runs this in a child process when a graph is
missing from its cache, so that the searching process never imports torch.

    python -m engine.export backbone efficientnet_lite0 OUT.onnx [--shape HxW]
    python -m engine.export detector detector OUT.onnx

A backbone's graph outputs its ``spec.layer`` feature map; without ``--shape`` it takes any input whose sides
are multiples of 32 (every stride-2 layer then sees an even side and TensorFlow's "SAME" padding is a constant),
with ``--shape`` exactly that size. The detector's graph outputs its heat maps and box distances.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

from engine import detector_graph, efficientnet_lite
from engine.backbones import build_backbone
from engine.models import child_exit_code

TRACE_SHAPE = (480, 640)  # any multiple of 32 traces the same graph
OPSET = 17


class _FeatureMap(torch.nn.Module):
    def __init__(self, extractor: torch.nn.Module):
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor.feature_map(x)


def _constant(padding):
    """A padding function of the traced sizes as plain numbers: the exported graph keeps the amounts fixed
    instead of deriving them from its input's shape (which, traced, the exporter got wrong)."""
    return lambda size, *args: padding([int(v) for v in size], *args)


def export(kind: str, name: str, path: Path, shape: tuple[int, int] | None) -> None:
    """Trace network ``name`` and write its graph to ``path``."""
    if kind == "detector":
        model: torch.nn.Module = detector_graph.DetectorGraph.load(Path(__file__).with_name("models") / "detector_centernet.npz")
        outputs, sample = ["heatmap", "sizes"], torch.rand(1, 3, *(shape or TRACE_SHAPE)) * 255
    else:
        model = _FeatureMap(build_backbone(name))
        outputs, sample = ["features"], torch.rand(1, 3, *(shape or TRACE_SHAPE))
    efficientnet_lite.tf_same_padding = _constant(efficientnet_lite.tf_same_padding)
    dynamic = {0: "batch"} if shape else {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the tracer's notes on the sizes taken as constants, intended here
        torch.onnx.export(model, (sample,), str(path), input_names=["x"], output_names=outputs,
                          dynamic_axes={"x": dynamic}, opset_version=OPSET, dynamo=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["backbone", "detector"])
    parser.add_argument("name")
    parser.add_argument("path", type=Path)
    parser.add_argument("--shape", help="HxW: a graph for exactly this input size")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split("x")) if args.shape else None
    torch.set_num_threads(1)
    return child_exit_code(lambda: export(args.kind, args.name, args.path, shape))


if __name__ == "__main__":
    sys.exit(main())
