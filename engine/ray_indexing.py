"""Decode and embed a catalogue's images on Ray: Ray Data batches over a pool of actors, one model each.

Used by ``engine.indexing.index_catalogue(..., ray_address=...)`` (``python -m engine index --ray``): the
driver still scans the catalogue, finds what changed and writes the store; only the work per image moves.
Each Ray Data row is one batch of ``ImageJob``s, processed by ``engine.batches.process_batch`` exactly as
the local path processes it, so the store is the same. Workers read the images by path: on a cluster the
catalogue folder must be readable at the same path on every node (a shared file system), and the code is
shipped to the workers as the Ray job's working directory. Ray (PyPI ``ray[data]``) is an optional extra:
``pip install -r requirements-scale.txt``.

On a cluster with GPUs each worker is given a GPU (or a share of one, ``worker_plan``) and runs its model
there where ONNX Runtime's GPU build (``onnxruntime-gpu``) is installed; otherwise workers run on their CPUs.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.errors import SearchError
from engine.batches import ImageJob, ImageResult, process_batch

ROOT = Path(__file__).resolve().parent.parent
# What the working directory shipped to a cluster's workers leaves out: the environment, stores, data.
SHIPPED_EXCLUDES = [".venv", ".git", "index_store", "reference_gallery", "benchmarks/queries", "benchmarks/results",
                    "docs", "**/__pycache__"]


class RayUnavailableError(SearchError):
    """Ray is not installed, or the cluster cannot be reached."""


class BatchEmbedder:
    """A Ray actor: loads the backbone once, then processes the batches of images it is given."""

    def __init__(self, backbone: str, min_side: int):
        from engine.networks import load_backbone, use_threads

        # The worker's share of the cores, as Ray gave them (Ray sets OMP_NUM_THREADS per worker). Ray sets
        # CUDA_VISIBLE_DEVICES to the GPUs it gave the worker: there ONNX Runtime's GPU build runs on them.
        use_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.backbone = load_backbone(backbone)
        self.min_side = min_side

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = [pickle.dumps(process_batch(pickle.loads(payload), self.backbone, self.min_side))
                for payload in rows["jobs"]]
        return {"results": np.array(done, dtype=object)}


def connect(address: str) -> None:
    """Join the Ray cluster at ``address``, or start a local instance for "local"."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(
            "indexing on Ray needs Ray, an optional extra: pip install -r requirements-scale.txt") from None
    if ray.is_initialized():
        return
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False,
                     runtime_env={"working_dir": str(ROOT), "excludes": SHIPPED_EXCLUDES})
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise RayUnavailableError(f"cannot reach the Ray cluster at {address!r}: {error}") from None


@dataclass(frozen=True)
class WorkerPlan:
    """How many actors embed, and the CPUs and GPUs (possibly a fraction of one) each asks Ray for."""

    workers: int
    cpus: int
    gpus: float


def worker_plan(resources: dict[str, float], batches: int, workers: int | None = None) -> WorkerPlan:
    """The actor pool for a cluster with ``resources`` (``ray.cluster_resources()``): by default one worker
    per GPU, or per CPU on a cluster without GPUs; never more workers than batches, since an idle actor
    would still load a model. With GPUs, they are shared evenly (at most one each), so every worker can
    be placed; the CPUs are shared evenly too."""
    cpus, gpus = max(1, int(resources.get("CPU", 1))), int(resources.get("GPU", 0))
    workers = max(1, min(batches, workers or gpus or cpus))
    return WorkerPlan(workers, max(1, cpus // workers), min(1.0, gpus / workers) if gpus else 0.0)


def process_on_ray(batches: list[list[ImageJob]], backbone: str, min_side: int, address: str,
                   workers: int | None = None) -> Iterator[list[ImageResult]]:
    """``process_batch`` of every batch, run by ``workers`` actors (default: ``worker_plan``'s), yielded
    as they finish, in order."""
    if not batches:
        return
    connect(address)
    import ray

    plan = worker_plan(ray.cluster_resources(), len(batches), workers)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the caller reports progress
    rows = ray.data.from_items([{"jobs": pickle.dumps(batch)} for batch in batches], override_num_blocks=len(batches))
    processed = rows.map_batches(BatchEmbedder, fn_constructor_args=(backbone, min_side), batch_size=1,
                                 compute=ray.data.ActorPoolStrategy(size=plan.workers), num_cpus=plan.cpus,
                                 num_gpus=plan.gpus, batch_format="numpy")
    for row in processed.iter_rows():
        yield pickle.loads(row["results"])
