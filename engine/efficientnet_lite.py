"""EfficientNet-Lite0/1/2 as plain PyTorch modules.

EfficientNet-Lite (Google, 2020) is EfficientNet made friendly to mobile CPUs:
no squeeze-and-excitation, ReLU6 instead of swish, and the stem and head are not
scaled with the width multiplier. The ImageNet weights we use were converted from
the official TensorFlow checkpoints, so two TensorFlow habits are kept here:

* "SAME" padding. For a stride-2 convolution on an even-sized input TensorFlow
  pads only on the bottom/right, whereas PyTorch's ``padding=k//2`` pads both
  sides; the weights only reproduce the TF logits with TF's padding.
* BatchNorm epsilon 1e-3 (PyTorch's default is 1e-5).

``fuse_batchnorm`` folds every BatchNorm into the convolution before it; the
model is only ever used for inference, and folding removes a third of the ops.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from engine.backbone_specs import LiteVariant

BN_EPS = 1e-3  # TensorFlow's default, which the checkpoints were trained with
STEM_CHANNELS = 32  # fixed for every Lite variant
HEAD_CHANNELS = 1280  # fixed for every Lite variant
WIDTH_DIVISOR = 8


@dataclass(frozen=True)
class StageConfig:
    """One stage of MBConv blocks, before width/depth scaling."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int


# The EfficientNet-B0 / Lite0 layout (efficientnet_lite_builder.py in the TF repo).
BASE_STAGES = (
    StageConfig(1, 3, 1, 1, 32, 16),
    StageConfig(2, 3, 2, 6, 16, 24),
    StageConfig(2, 5, 2, 6, 24, 40),
    StageConfig(3, 3, 2, 6, 40, 80),
    StageConfig(3, 5, 1, 6, 80, 112),
    StageConfig(4, 5, 2, 6, 112, 192),
    StageConfig(1, 3, 1, 6, 192, 320),
)


def round_channels(channels: int, width: float) -> int:
    """Scale a channel count by ``width`` and round to a multiple of 8, as TF does."""
    scaled = channels * width
    rounded = max(WIDTH_DIVISOR, int(scaled + WIDTH_DIVISOR / 2) // WIDTH_DIVISOR * WIDTH_DIVISOR)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += WIDTH_DIVISOR
    return rounded


def scaled_stages(variant: LiteVariant) -> list[StageConfig]:
    """Apply the variant's width and depth multipliers to ``BASE_STAGES``.

    Lite keeps the first and last stage's depth, and the first stage's input
    (it is the stem output, which is not scaled either).
    """
    stages = []
    last = len(BASE_STAGES) - 1
    for index, stage in enumerate(BASE_STAGES):
        fixed_depth = index in (0, last)
        stages.append(
            StageConfig(
                repeats=stage.repeats if fixed_depth else math.ceil(stage.repeats * variant.depth),
                kernel_size=stage.kernel_size,
                stride=stage.stride,
                expand_ratio=stage.expand_ratio,
                in_channels=STEM_CHANNELS if index == 0 else round_channels(stage.in_channels, variant.width),
                out_channels=round_channels(stage.out_channels, variant.width),
            )
        )
    return stages


class ConvBNAct(nn.Module):
    """Convolution with TensorFlow "SAME" padding, BatchNorm, optional ReLU6."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        super().__init__()
        # With stride 1 and an odd kernel, "SAME" is symmetric and the conv can pad
        # itself; with stride 2 the split depends on the input size (see forward).
        padding = kernel_size // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn: nn.Module = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act: nn.Module = nn.ReLU6(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.conv.stride[0]
        if stride > 1:
            x = F.pad(x, tf_same_padding(x.shape[-2:], self.conv.kernel_size[0], stride))
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the (eval-mode) BatchNorm into the convolution."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
            self.bn = nn.Identity()


def tf_same_padding(size: torch.Size, kernel_size: int, stride: int) -> list[int]:
    """F.pad amounts (left, right, top, bottom) reproducing TensorFlow's "SAME" padding."""
    pads = []
    for length in (size[1], size[0]):  # F.pad wants the last dimension (width) first
        out = math.ceil(length / stride)
        total = max((out - 1) * stride + kernel_size - length, 0)
        pads += [total // 2, total - total // 2]
    return pads


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 linear projection."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = ConvBNAct(in_channels, hidden, 1) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden)
        self.project = ConvBNAct(hidden, out_channels, 1, activation=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier.

    The network is a chain ``stem -> stage1 .. stage7 -> head -> pool -> classifier``;
    ``stages()`` lists the named feature-map producers in order so that callers can
    tap intermediate maps. Inputs are RGB scaled to about [-1, 1]:
    ``(pixel - 127) / 128``.
    """

    def __init__(self, variant: LiteVariant, num_classes: int = 1000) -> None:
        super().__init__()
        self.variant = variant
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2)
        self.blocks = nn.ModuleList()
        for stage in scaled_stages(variant):
            blocks = [
                MBConv(
                    stage.in_channels if i == 0 else stage.out_channels,
                    stage.out_channels,
                    stage.kernel_size,
                    stage.stride if i == 0 else 1,
                    stage.expand_ratio,
                )
                for i in range(stage.repeats)
            ]
            self.blocks.append(nn.Sequential(*blocks))
        self.head = ConvBNAct(self.blocks[-1][-1].project.conv.out_channels, HEAD_CHANNELS, 1)
        self.dropout = nn.Dropout(variant.dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """Named modules that map one feature map to the next, input to "head"."""
        named = [("stem", self.stem)]
        named += [(f"stage{i}", stage) for i, stage in enumerate(self.blocks, start=1)]
        named.append(("head", self.head))
        return named

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, module in self.stages():
            x = module(x)
        return self.classifier(self.dropout(x.mean(dim=(2, 3))))


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``ConvBNAct``'s BatchNorm into its convolution (in place); returns ``model``."""
    model.eval()
    for module in model.modules():
        if isinstance(module, ConvBNAct):
            module.fuse()
    return model


def convert_reference_state_dict(state_dict: dict[str, torch.Tensor], model: EfficientNetLite) -> dict[str, torch.Tensor]:
    """Rename a state dict of the ``efficientnet-lite-pytorch`` package to this module's names.

    The reference numbers its blocks 0..N-1 across all stages and calls the
    BatchNorms ``_bn0/_bn1/_bn2`` by position; here blocks live in per-stage
    ``Sequential``s and each conv owns its BatchNorm.
    """
    flat_to_nested = [
        f"blocks.{s}.{b}" for s, stage in enumerate(model.blocks) for b in range(len(stage))
    ]
    block_parts = {
        "_expand_conv": "expand.conv",
        "_bn0": "expand.bn",
        "_depthwise_conv": "depthwise.conv",
        "_bn1": "depthwise.bn",
        "_project_conv": "project.conv",
        "_bn2": "project.bn",
    }
    top_level = {
        "_conv_stem": "stem.conv",
        "_bn0": "stem.bn",
        "_conv_head": "head.conv",
        "_bn1": "head.bn",
        "_fc": "classifier",
    }
    converted = {}
    for key, tensor in state_dict.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            index, part, param = block.groups()
            new_key = f"{flat_to_nested[int(index)]}.{block_parts[part]}.{param}"
        else:
            part, param = key.split(".")
            new_key = f"{top_level[part]}.{param}"
        converted[new_key] = tensor
    return converted
