"""Benchmark: EfficientNet-Lite0 in int8 against the fp32 network the product runs, in the same run (issue #12).

    python -m benchmarks.int8

Static post-training quantisation through torch's FX path with its x86 kernels (``get_default_qconfig_mapping
("x86")``), calibrated on every 7th catalogue image. Times one and three 224 px images through the embedding
layer, scores retrieval on the held-out queries (each query's nearest catalogue image over all categories, the
same rule for both networks) and the cosine of each int8 embedding with its fp32 one. Results go to
``benchmarks/results/int8.md``.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.ao.quantization.quantize_fx as qfx
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping

from benchmarks.common import DEFAULT_CATALOGUE, DEFAULT_QUERIES, RESULTS, load_queries, machine_info, machine_line
from engine.backbones import FeatureExtractor, build_backbone, pool_features
from engine.catalogue import scan_catalogue
from engine.efficientnet_lite import ConvBNAct, tf_same_padding
from engine.vectors import normalise
from engine.images import load_image, preprocess

INPUT_SIDE = 224
BATCH = 32


class FixedPadConv(nn.Module):
    """A ``ConvBNAct`` with TensorFlow's "SAME" padding fixed for one input size, so that FX can trace it."""

    def __init__(self, inner: ConvBNAct, pad: list[int]):
        super().__init__()
        self.pad, self.conv, self.bn, self.act = nn.ZeroPad2d(pad), inner.conv, inner.bn, inner.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


def traceable_body(extractor: FeatureExtractor) -> nn.Sequential:
    """The stages up to the embedding layer, with every stride-2 padding fixed for INPUT_SIDE inputs."""
    names = list(extractor.stages)
    body = nn.Sequential(*copy.deepcopy([extractor.stages[n] for n in names[: names.index(extractor.spec.layer) + 1]]))
    pads: dict[nn.Module, list[int]] = {}

    def record(module, inputs):
        pads[module] = tf_same_padding(inputs[0].shape[-2:], module.conv.kernel_size[0], module.conv.stride[0])

    hooks = [m.register_forward_pre_hook(record) for m in body.modules()
             if isinstance(m, ConvBNAct) and m.conv.stride[0] > 1]
    with torch.inference_mode():
        body(torch.zeros(1, 3, INPUT_SIDE, INPUT_SIDE))
    for hook in hooks:
        hook.remove()

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if child in pads:
                setattr(module, name, FixedPadConv(child, pads[child]))
            else:
                swap(child)

    swap(body)
    return body.eval()


def batches(paths: list[Path], extractor: FeatureExtractor):
    for start in range(0, len(paths), BATCH):
        images = [load_image(p, min_side=INPUT_SIDE) for p in paths[start : start + BATCH]]
        yield torch.from_numpy(preprocess(images, extractor.spec.preprocessing))


def embed(model: nn.Module, paths: list[Path], extractor: FeatureExtractor) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([normalise(pool_features(model(b), extractor.spec.pooling).float().numpy())
                               for b in batches(paths, extractor)])


def median_ms(run, repeats: int = 15) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return sorted(times)[repeats // 2] * 1000


def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    info = machine_info()
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    extractor = build_backbone("efficientnet_lite0")
    fp32 = traceable_body(extractor)
    catalogue = scan_catalogue(DEFAULT_CATALOGUE)
    catalogue_paths = [catalogue.root / item.path for item in catalogue.images]
    example = next(batches(catalogue_paths[:3], extractor))
    prepared = qfx.prepare_fx(copy.deepcopy(fp32), get_default_qconfig_mapping("x86"), (example,))
    with torch.inference_mode():
        for batch in batches(catalogue_paths[::7], extractor):
            prepared(batch)
    int8 = qfx.convert_fx(prepared)

    queries = load_queries(DEFAULT_QUERIES)
    products = np.array([item.product_id for item in catalogue.images])
    truth = np.array([q.product_id for q in queries])
    rows, embeddings = {}, {}
    for name, model in (("fp32 (the product)", fp32), ("int8", int8)):
        with torch.inference_mode():
            one = median_ms(lambda: model(example[:1].contiguous(memory_format=torch.channels_last)))
            three = median_ms(lambda: model(example.contiguous(memory_format=torch.channels_last)))
        catalogue, query = embed(model, catalogue_paths, extractor), embed(model, [q.path for q in queries], extractor)
        embeddings[name] = (catalogue, query)
        rows[name] = (one, three, float(np.mean(products[np.argmax(query @ catalogue.T, axis=1)] == truth)))
    (c32, q32), (c8, q8) = embeddings.values()
    baseline = rows["fp32 (the product)"]
    lines = [
        "# EfficientNet-Lite0 in int8 against fp32", "", machine_line(info),
        f"Load average before the run: {load_before}. Command: `python -m benchmarks.int8`.", "",
        "| network | 1 × 224 px | 3 × 224 px (a search: photo + 2 pieces) | R@1, nearest image (468 held-out queries) |",
        "|---|---|---|---|",
        *[f"| {name} | {one:.1f} ms ({one / baseline[0]:.2f}×) | {three:.1f} ms ({three / baseline[1]:.2f}×) | {r1:.3f} |"
          for name, (one, three, r1) in rows.items()],
        "",
        f"Mean cosine of the int8 embedding with the fp32 one: catalogue {np.mean(np.sum(c8 * c32, 1)):.3f}, "
        f"queries {np.mean(np.sum(q8 * q32, 1)):.3f}.", "",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    (RESULTS / "int8.md").write_text(markdown, encoding="utf-8")


if __name__ == "__main__":
    main()
