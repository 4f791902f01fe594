"""Helpers shared by the quality and speed benchmarks: data loading, timing, reporting."""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from engine.backbone_specs import DEFAULT_BACKBONE, get_spec
from engine.networks import uses_int8

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_CATALOGUE = ROOT / "reference_gallery"
DEFAULT_QUERIES = ROOT / "benchmarks" / "queries"


@dataclass(frozen=True)
class Query:
    """One held-out photo and the catalogue product it shows."""

    path: Path
    product_id: str
    category: str
    variant: str  # how it was made (e.g. lighting, background); reported separately


def load_queries(folder: Path) -> list[Query]:
    """Read ``ground_truth.csv`` (columns path, product_id, category, variant; paths relative to ``folder``)."""
    truth = folder / "ground_truth.csv"
    if not truth.is_file():
        raise SystemExit(f"no {truth}: generate the held-out queries first (or pass --queries)")
    with truth.open(newline="", encoding="utf-8") as handle:
        return [
            Query(folder / row["path"], row["product_id"], row["category"], row.get("variant") or "-")
            for row in csv.DictReader(handle)
        ]


def machine_info() -> dict[str, str]:
    """CPU model, core count, library versions and the date, for the header of every result file."""
    model = platform.processor() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "embedding_network": "8 bits" if uses_int8(get_spec(DEFAULT_BACKBONE)) else "float32",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(info: dict[str, str]) -> str:
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}), "
        f"Python {info['python']}, torch {info['torch']}"
        + (f", ONNX Runtime {info['onnxruntime']} (the searches' networks)" if "onnxruntime" in info else "")
        + (f", the embedding network in {info['embedding_network']}" if "embedding_network" in info else "")
        + f"; {info['date']}."
    )


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; floats are shown with 3 decimals."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def non_furniture_images(count: int = 40, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[Image.Image]:
    """Images that show no furniture: noise, gradients, flat colours, landscapes and textures.

    They calibrate the "no close match" threshold: their best catalogue hit
    should score below it.
    """
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    width, height = size
    makers = [_noise, _gradient, _flat, _landscape, _texture]
    return [makers[i % len(makers)](rng, np_rng, width, height) for i in range(count)]


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _noise(rng: random.Random, np_rng: np.random.Generator, width: int, height: int) -> Image.Image:
    pixels = np_rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    # Half of them blurred: smooth noise looks like clouds or stone rather than static.
    return image.filter(ImageFilter.GaussianBlur(rng.choice([0, 4]))) if rng.random() < 0.5 else image


def _gradient(rng: random.Random, np_rng: np.random.Generator, width: int, height: int) -> Image.Image:
    start, end = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    t = np.linspace(0, 1, width if rng.random() < 0.5 else height, dtype=np.float32)[:, None]
    line = (start + (end - start) * t).astype(np.uint8)
    pixels = np.broadcast_to(line[None], (height, width, 3)) if len(line) == width else np.broadcast_to(line[:, None], (height, width, 3))
    return Image.fromarray(np.ascontiguousarray(pixels))


def _flat(rng: random.Random, np_rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), _colour(rng))


def _landscape(rng: random.Random, np_rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Sky gradient, a sun, rolling hills and a lake: a crude outdoor photo."""
    image = _gradient(random.Random(rng.random()), np_rng, width, height)
    sky = Image.new("RGB", (width, height), (120 + rng.randrange(80), 170 + rng.randrange(60), 235))
    image = Image.blend(image, sky, 0.7)
    draw = ImageDraw.Draw(image)
    sun = (rng.randrange(width), rng.randrange(height // 3))
    draw.ellipse([sun[0] - 30, sun[1] - 30, sun[0] + 30, sun[1] + 30], fill=(255, 230, 120))
    for layer in range(3):
        base = height * (0.45 + 0.15 * layer)
        amplitude, phase = rng.uniform(10, 60), rng.uniform(0, 6.3)
        xs = np.linspace(0, width, 40)
        ys = base + amplitude * np.sin(xs / width * rng.uniform(2, 8) + phase)
        green = (40 + 30 * layer + rng.randrange(40), 110 + rng.randrange(80), 40 + rng.randrange(40))
        draw.polygon([*zip(xs.tolist(), ys.tolist()), (width, height), (0, height)], fill=green)
    if rng.random() < 0.5:
        draw.rectangle([0, int(height * 0.85), width, height], fill=(60, 110, 170))
    return image.filter(ImageFilter.GaussianBlur(1))


def _texture(rng: random.Random, np_rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Stripes, checkers or bricks in two colours."""
    image = Image.new("RGB", (width, height), _colour(rng))
    draw = ImageDraw.Draw(image)
    ink, step, kind = _colour(rng), rng.randrange(12, 60), rng.choice(["stripes", "checks", "bricks"])
    for y in range(0, height, step):
        for x in range(0, width, step * 2 if kind != "checks" else step):
            if kind == "stripes":
                draw.rectangle([0, y, width, y + step // 3], fill=ink)
                break
            if kind == "checks" and (x // step + y // step) % 2 == 0:
                draw.rectangle([x, y, x + step, y + step], fill=ink)
            if kind == "bricks":
                offset = step if (y // step) % 2 else 0
                draw.rectangle([x + offset, y, x + offset + step * 2 - 3, y + step - 3], outline=ink, width=2)
    return image


def save_results(output: Path, markdown: str, results: dict) -> None:
    """Write a benchmark's table (``output``.md) and its figures (``output``.json)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(markdown, encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(f"wrote {output.with_suffix('.md')} and .json")
