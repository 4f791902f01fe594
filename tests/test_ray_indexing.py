"""Indexing on Ray: a local Ray instance writes the same store as the local path, and stays incremental."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from engine.cli import main
from engine.store.versions import open_store
from engine.indexing import index_catalogue
from engine.ray_indexing import ROOT, WorkerPlan, worker_plan
from tests.conftest import draw_furniture



def test_worker_plan_shares_the_gpus_or_else_the_cpus():
    # By default one worker per GPU, each with one GPU and its share of the CPUs.
    assert worker_plan({"CPU": 16, "GPU": 2}, batches=100) == WorkerPlan(2, 8, 1.0)
    # More workers than GPUs share them, so that every worker can be placed.
    assert worker_plan({"CPU": 16, "GPU": 2}, batches=100, workers=8) == WorkerPlan(8, 2, 0.25)
    assert worker_plan({"CPU": 16, "GPU": 2}, batches=100, workers=1) == WorkerPlan(1, 16, 1.0)
    # No GPUs: one worker per CPU, each on one CPU.
    assert worker_plan({"CPU": 4}, batches=100) == WorkerPlan(4, 1, 0.0)
    # Never more workers than batches (an idle worker would still load a model), never fewer than one CPU.
    assert worker_plan({"CPU": 4, "GPU": 1}, batches=3, workers=8) == WorkerPlan(3, 1, 1 / 3)
    assert worker_plan({}, batches=1) == WorkerPlan(1, 1, 0.0)


def without_vector_digests(items):
    return [dataclasses.replace(item, vector_digest="") for item in items]


ray = pytest.importorskip("ray", reason="Ray is an optional extra (requirements-scale.txt); make test installs it")


@pytest.mark.slow
def test_ray_writes_the_local_store_and_embeds_only_what_changed(catalogue, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    index_catalogue(catalogue, local)
    progress = []
    try:
        report = index_catalogue(catalogue, on_ray, ray_address="local", ray_workers=2,
                               progress=lambda done, total: progress.append((done, total)))
        assert report.embedded == 24 and progress[-1] == (24, 24)
        expected, found = open_store(local), open_store(on_ray)
        # Same products, digests, colours, in the same order (the vectors' own digests differ with their rounding).
        assert without_vector_digests(found.images) == without_vector_digests(expected.images)
        # Same vectors up to float rounding: the workers run the network on fewer threads each.
        np.testing.assert_allclose(found.vectors, expected.vectors, atol=1e-6)

        draw_furniture("lamp", (10, 200, 30), 1).save(catalogue / "lamp" / "lamp-9.jpg")
        (catalogue / "chair" / "chair-1" / "view0.jpg").unlink()
        again = index_catalogue(catalogue, on_ray, ray_address="local", ray_workers=2)
        assert (again.embedded, again.reused, again.removed) == (1, 23, 1)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_workers_given_a_gpu_without_onnx_runtimes_gpu_build_embed_on_their_cpu(catalogue, tmp_path):
    # A local instance that declares a GPU: both workers are placed on a half of it; this ONNX Runtime build
    # has no GPU provider (and there is no GPU here), so they run on the CPU, writing the same store.
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    index_catalogue(catalogue, local)
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        assert worker_plan(ray.cluster_resources(), batches=2, workers=2).gpus == 0.5
        index_catalogue(catalogue, on_ray, ray_address="local", ray_workers=2)
        expected, found = open_store(local), open_store(on_ray)
        assert without_vector_digests(found.images) == without_vector_digests(expected.images)
        np.testing.assert_allclose(found.vectors, expected.vectors, atol=1e-6)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_starts_after_the_store_module_is_imported_first():
    # As python -m engine index --ray loads them: the store (usearch) first, Ray when indexing starts.
    code = ("import engine.store.versions; from engine.ray_indexing import connect; connect('local'); "
            "import ray; print(int(ray.cluster_resources()['CPU'])); ray.shutdown()")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) >= 1


def test_workers_without_ray_and_ray_missing_are_clear_errors(catalogue, tmp_path, capsys, monkeypatch):
    assert main(["index", "--catalogue", str(catalogue), "--store", str(tmp_path / "s"), "--workers", "2"]) == 2
    assert "--workers is for indexing on Ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["index", "--catalogue", str(catalogue), "--store", str(tmp_path / "s"), "--ray"]) == 2
    assert "pip install -r requirements-scale.txt" in capsys.readouterr().err
