"""An EfficientNet-Lite backbone's graph in 8-bit integers, for CPUs whose integer dot products (VNNI) make it pay.

Static post-training quantisation with ONNX Runtime's tools: weights per output channel, activations per tensor,
their ranges calibrated on the bundled catalogue's renders (every 7th image, and mosaics of them at the proposal
pass's 640 x 480, where a room's cells are embedded). The stem and stages 1-2 stay in float: quantising them lost
most of the accuracy (the pooled embedding's cosine with float32's on real photos 0.986 with every stage in 8 bits,
0.998 without those three; benchmarks/README.md, "The backbone in 8 bits"). ``engine.networks`` runs this in a child
process, as it runs ``engine.export``, once the float graph is there; the search process only loads the graph written:

    python -m engine.quantise efficientnet_lite0 FLOAT.onnx OUT.onnx
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from engine.backbone_specs import get_spec
from engine.catalogue import BUNDLED_CATALOGUE, scan_catalogue
from engine.errors import SearchError
from engine.images import load_image, normalised_batch, preprocess
from engine.models import ModelUnavailableError, child_exit_code

FLOAT_STAGES = ("stem", "stage1", "stage2")  # the graph's node names begin with "/<stage>/"
CALIBRATION_STRIDE = 7  # every 7th catalogue image: ~100 of the bundled 702
MOSAICS, MOSAIC_GRID, MOSAIC_TILE = 8, (4, 3), 160  # 640 x 480, as the proposal pass sees a room


def calibration_batches(name: str, catalogue: Path = BUNDLED_CATALOGUE) -> list[np.ndarray]:
    """The network inputs whose activations set the 8-bit ranges: catalogue images two at a time as indexing
    embeds them, then mosaics of them at the proposal pass's size."""
    prep = get_spec(name).preprocessing
    try:
        scanned = scan_catalogue(catalogue)
        images = [load_image(scanned.root / image.path, min_side=prep.size)
                  for image in scanned.images[::CALIBRATION_STRIDE]]
    except SearchError as error:
        raise ModelUnavailableError(f"cannot calibrate the 8-bit {name} without the bundled catalogue at "
                                    f"{catalogue} ({error})") from error
    batches = [preprocess(images[start : start + 2], prep) for start in range(0, len(images), 2)]
    columns, rows = MOSAIC_GRID
    for mosaic in range(MOSAICS):
        canvas = Image.new("RGB", (columns * MOSAIC_TILE, rows * MOSAIC_TILE))
        for tile in range(columns * rows):
            image = images[(mosaic * columns * rows + tile) % len(images)].convert("RGB")
            canvas.paste(image.resize((MOSAIC_TILE, MOSAIC_TILE)), ((tile % columns) * MOSAIC_TILE,
                                                                   (tile // columns) * MOSAIC_TILE))
        batches.append(normalised_batch(np.asarray(canvas)[None], prep))
    return batches


def quantise_backbone(name: str, float_graph: Path, path: Path) -> None:
    """Write the 8-bit graph of backbone ``name`` to ``path`` from its float32 graph ``float_graph``."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static, shape_inference)

    batches = iter(calibration_batches(name))

    class Batches(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(batches, None)
            return None if batch is None else {"x": batch}

    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        shape_inference.quant_pre_process(str(float_graph), str(prepared), skip_symbolic_shape=True)
        kept = [node.name for node in onnx.load(str(prepared)).graph.node
                if node.name.startswith(tuple(f"/{stage}/" for stage in FLOAT_STAGES))]
        quantize_static(str(prepared), str(path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="an EfficientNet-Lite backbone of the registry")
    parser.add_argument("float_graph", type=Path, help="its float32 graph, as engine.export writes it")
    parser.add_argument("path", type=Path, help="where to write the 8-bit graph")
    args = parser.parse_args(argv)
    return child_exit_code(lambda: quantise_backbone(args.name, args.float_graph, args.path))


if __name__ == "__main__":
    sys.exit(main())
