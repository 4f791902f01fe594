"""The networks a search runs on ONNX Runtime: the same maps as torch's, one graph per size class, threads per
caller, a clear error where a graph cannot be had."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import networks
from engine.backbones import build_backbone
from engine.models import ModelUnavailableError
from engine.images import load_image, preprocess
from engine.networks import Backbone, beside, cpu_has_vnni, load_backbone, pool_features, thread_count, use_threads
from engine.catalogue import BUNDLED_CATALOGUE
from engine.vectors import normalise


@pytest.mark.parametrize("name, shape", [("efficientnet_lite0", (224, 224)), ("efficientnet_lite0", (352, 448)),
                                         ("efficientnet_lite1", (240, 240))])
def test_the_exported_backbone_computes_torchs_feature_map(name, shape):
    # Lite-0 at 224 and 448 x 352 runs the one graph for sides that are multiples of 32 (traced at 480 x 640);
    # Lite-1's 240 px is not one, so it has a graph of its own.
    x = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        expected = build_backbone(name).feature_map(x).numpy()
    backbone = Backbone(networks.get_spec(name))  # float32, whatever this CPU would choose
    actual = backbone.feature_map(x.numpy())
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    np.testing.assert_allclose(backbone.embed(x.numpy()), pool_features(expected, backbone.spec.pooling), atol=1e-4)


def test_one_backbone_per_process_and_unknown_names_refused():
    assert load_backbone("efficientnet_lite0") is load_backbone("efficientnet_lite0")
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        load_backbone("vgg16")


def test_pool_features():
    fmap = np.tile(np.array([[1.0, 2.0], [3.0, 6.0]], np.float32).reshape(1, 1, 2, 2), (2, 4, 1, 1))
    assert np.allclose(pool_features(fmap, "avg"), 3.0) and np.allclose(pool_features(fmap, "max"), 6.0)
    gem = np.mean([1.0, 8.0, 27.0, 216.0]) ** (1 / 3)
    assert np.allclose(pool_features(fmap, "gem"), gem) and 3.0 < gem < 6.0
    with pytest.raises(ValueError):
        pool_features(fmap, "median")


def test_threads_are_each_callers_own():
    import threading

    seen = []
    use_threads(1)
    worker = threading.Thread(target=lambda: seen.append(thread_count()))
    worker.start()
    worker.join()
    assert thread_count() == 1 and seen == [networks.CORES]
    use_threads(networks.CORES)


def test_work_beside_runs_on_another_thread_only_where_this_one_has_cores_to_spare():
    import threading

    def where() -> tuple[int, int]:
        return threading.get_ident(), thread_count()

    def fails() -> None:
        raise ValueError("broken")

    try:
        use_threads(2)
        helper, helper_threads = beside(where).result(timeout=30)
        assert helper != threading.get_ident() and helper_threads == 1  # the other core, one network thread
        use_threads(1)  # a search side by side with another: a third thread would only slow both
        assert beside(where).result(timeout=0) == (threading.get_ident(), 1)
        for count in (1, 2):
            use_threads(count)
            with pytest.raises(ValueError, match="broken"):
                beside(fails).result(timeout=30)
    finally:
        use_threads(networks.CORES)


def test_a_graph_that_cannot_be_exported_says_so_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(networks, "MODEL_CACHE", tmp_path)
    monkeypatch.setattr(networks, "shared", lambda key, load: load())
    monkeypatch.setattr(networks, "export_command", lambda *args: ["false"])
    with pytest.raises(ModelUnavailableError, match="cannot export the efficientnet_lite2 network"):
        Backbone(networks.get_spec("efficientnet_lite2")).feature_map(np.zeros((1, 3, 64, 64), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_graph_is_exported_again(monkeypatch, tmp_path):
    monkeypatch.setattr(networks, "MODEL_CACHE", tmp_path)
    monkeypatch.setattr(networks, "shared", lambda key, load: load())  # each call a new process: nothing kept
    spec = networks.get_spec("efficientnet_lite0")
    backbone = Backbone(spec)
    x = np.zeros((1, 3, 64, 64), np.float32)
    expected = backbone.feature_map(x)
    (graph,) = tmp_path.glob("*.onnx")
    graph.write_bytes(graph.read_bytes()[:1000])  # cut short, as by a full disk
    np.testing.assert_allclose(Backbone(spec).feature_map(x), expected)
    assert graph.stat().st_size > 1_000_000


def test_a_cache_that_cannot_be_written_says_where(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setattr(networks, "MODEL_CACHE", blocked / "models")
    monkeypatch.setattr(networks, "shared", lambda key, load: load())
    with pytest.raises(ModelUnavailableError, match="make that folder writable"):
        Backbone(networks.get_spec("efficientnet_lite0")).feature_map(np.zeros((1, 3, 64, 64), np.float32))


def test_the_8_bit_backbone_embeds_as_the_float_one():
    # Real photos' kind of input: catalogue renders not among the calibration images (every 7th), at 224 px
    # for their embeddings and a mosaic at 640 x 480 for a room's cells, as the proposal pass sees one.
    spec = networks.get_spec("efficientnet_lite0")
    paths = sorted(BUNDLED_CATALOGUE.glob("*/*/*.jpg"))[3::29][:8]
    batch = preprocess([load_image(path, min_side=224) for path in paths], spec.preprocessing)
    float_net, int8_net = Backbone(spec), Backbone(spec, int8=True)
    # Without VNNI, ONNX Runtime's AVX2 kernels sum pairs of 8-bit products in 16 bits, which can saturate; the
    # product runs the 8-bit graph only where VNNI is (uses_int8), so only there is float32's agreement promised.
    close, cells_close = (0.99, 0.98) if cpu_has_vnni() else (0.95, 0.9)
    cosines = (normalise(float_net.embed(batch)) * normalise(int8_net.embed(batch))).sum(axis=1)
    assert cosines.min() > close, cosines
    room = np.concatenate([np.concatenate(list(batch[row * 4:row * 4 + 4]), axis=2) for row in range(2)], axis=1)
    float_cells, int8_cells = (net.feature_map(room[None, :, :448, :640])[0].reshape(1280, -1).T
                               for net in (float_net, int8_net))
    lit = np.linalg.norm(float_cells, axis=1) > 1e-3
    cell_cosines = (normalise(float_cells[lit]) * normalise(int8_cells[lit])).sum(axis=1)
    assert cell_cosines.mean() > cells_close, cell_cosines.mean()
    assert not np.allclose(float_net.embed(batch), int8_net.embed(batch), atol=1e-4)  # it is another graph


def test_8_bits_where_the_cpu_has_vnni_unless_told(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert cpu_has_vnni(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert not cpu_has_vnni(cpuinfo) and not cpu_has_vnni(tmp_path / "missing")
    lite, resnet = networks.get_spec("efficientnet_lite0"), networks.get_spec("resnet50")
    assert networks.uses_int8(lite, "on") and not networks.uses_int8(lite, "off")
    assert not networks.uses_int8(resnet, "on")  # its graph has no quantised form
    monkeypatch.setattr(networks, "cpu_has_vnni", lambda: True)
    assert networks.uses_int8(lite, "auto")
    monkeypatch.setattr(networks, "cpu_has_vnni", lambda: False)
    assert not networks.uses_int8(lite, "auto")
    monkeypatch.setenv("FURNITURE_INT8", "maybe")
    with pytest.raises(ModelUnavailableError, match="FURNITURE_INT8 is 'maybe'; set it to auto, on or off"):
        networks.uses_int8(lite)


def test_an_8_bit_graph_that_cannot_be_made_says_so_and_keeps_the_float_one(monkeypatch, tmp_path):
    monkeypatch.setattr(networks, "MODEL_CACHE", tmp_path)
    monkeypatch.setattr(networks, "shared", lambda key, load: load())
    monkeypatch.setattr(networks, "quantise_command", lambda *args: ["false"])
    with pytest.raises(ModelUnavailableError, match="cannot export the efficientnet_lite0 network"):
        Backbone(networks.get_spec("efficientnet_lite0"), int8=True).feature_map(np.zeros((1, 3, 64, 64), np.float32))
    assert [path.name.split("-")[1] for path in tmp_path.iterdir()] == ["any"]  # the float graph, quantised from
