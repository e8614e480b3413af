"""From block strings to modules: compound scaling of a stage list and the stage builder.

Mobile networks (MobileNetV2, EfficientNet, MobileNetV3) are written as stage lists in the
block-string notation of :mod:`archzoo.blockstring`. :func:`scale_stages` applies a width and a
depth multiplier (the compound scaling of Tan & Le 2019, arXiv:1905.11946), and
:func:`build_stages` turns the specs into :class:`DepthwiseSeparable` / :class:`InvertedResidual`
blocks, with the network's squeeze-excitation style (MobileNetV3's hard-sigmoid SE, Howard et al.
2019, arXiv:1905.02244).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterable, Sequence

import torch.nn as nn

from ..blockstring import ACTIVATIONS, BlockSpec, Stages
from ..features import feature
from .conv import ActLayer, make_divisible
from .dilation import OutputStride
from .drop import linear_drop_path
from .inverted_residual import MNASNET_SE, DepthwiseSeparable, InvertedResidual, NormLayer
from .squeeze_excite import SqueezeExciteStyle


def round_channels(chs: int, width_mult: float = 1.0, divisor: int = 8) -> int:
    """``chs * width_mult`` rounded to the nearest multiple of ``divisor``, never down by more than 10%."""
    return make_divisible(chs * width_mult, divisor)


def round_repeats(repeats: int, depth_mult: float = 1.0) -> int:
    """``repeats * depth_mult`` rounded up (EfficientNet's depth rule)."""
    return int(math.ceil(repeats * depth_mult))


def scale_stages(stages: Stages, width_mult: float = 1.0, depth_mult: float = 1.0, divisor: int = 8) -> Stages:
    """Compound scaling: every block's output channels times ``width_mult`` (:func:`round_channels`)
    and its repeats times ``depth_mult`` (:func:`round_repeats`).

    Channels are rounded even at ``width_mult=1`` (the reference implementations do the same), so
    a scaled stage list always has widths divisible by ``divisor``.
    """
    return tuple(
        tuple(replace(spec, out_chs=round_channels(spec.out_chs, width_mult, divisor),
                      repeats=round_repeats(spec.repeats, depth_mult)) for spec in stage)
        for stage in stages
    )


def make_block(
    spec: BlockSpec,
    in_chs: int,
    stride: int,
    act_layer: ActLayer,
    norm_layer: NormLayer = nn.BatchNorm2d,
    drop_path: float = 0.0,
    dilation: int = 1,
    se_style: SqueezeExciteStyle = MNASNET_SE,
) -> nn.Module:
    """One block of ``spec`` (one repeat) reading ``in_chs`` channels at ``stride``."""
    act = ACTIVATIONS[spec.act] if spec.act else act_layer
    common = dict(kernel_size=spec.kernel, stride=stride, se_ratio=spec.se_ratio, act_layer=act,
                  norm_layer=norm_layer, skip=spec.skip, drop_path=drop_path, dilation=dilation, se_style=se_style)
    if spec.block == "ds":
        return DepthwiseSeparable(in_chs, spec.out_chs, **common)
    if spec.block == "ir":
        return InvertedResidual(in_chs, spec.out_chs, spec.expansion, **common)
    raise ValueError(f"no module for block type {spec.block!r}")


def build_stages(
    stages: Stages,
    in_chs: int,
    act_layer: ActLayer,
    norm_layer: NormLayer = nn.BatchNorm2d,
    drop_path_rate: float = 0.0,
    in_stride: int = 1,
    output_stride: int | None = None,
    se_style: SqueezeExciteStyle = MNASNET_SE,
    dilate_strided: bool = False,
) -> tuple[nn.Sequential, list[dict]]:
    """``nn.Sequential`` of stages (each an ``nn.Sequential`` of blocks) and, per stage, its
    output ``channels``, ``stride`` (the true reduction, ``in_stride`` times the strides so far)
    and ``nominal_stride`` (the reduction without ``output_stride``).

    Block ``i`` of ``n`` gets stochastic depth ``drop_path_rate * i / n`` (the EfficientNet rule of
    torchvision and timm, :func:`~archzoo.layers.linear_drop_path` with ``endpoint=False``; only
    blocks with a shortcut use it). ``output_stride`` dilates the blocks past that reduction
    instead of striding (:class:`~archzoo.layers.dilation.OutputStride`); the block that gives up
    its stride keeps the previous dilation, unless ``dilate_strided`` (torchvision's MobileNetV3
    ``dilated=True``: that block dilates already). ``se_style`` sizes and gates every block's SE.
    """
    total = sum(spec.repeats for stage in stages for spec in stage)
    index, strides = 0, OutputStride(output_stride, in_stride)
    modules, info = [], []
    for stage in stages:
        blocks = []
        for spec in stage:
            for r in range(spec.repeats):
                wanted = spec.stride if r == 0 else 1
                s, d = strides(wanted)
                if dilate_strided and s < wanted:
                    d = strides.dilation
                drop_path = linear_drop_path(drop_path_rate, index, total, endpoint=False)
                blocks.append(make_block(spec, in_chs, s, act_layer, norm_layer, drop_path, dilation=d,
                                         se_style=se_style))
                in_chs = spec.out_chs
                index += 1
        modules.append(nn.Sequential(*blocks))
        info.append({"channels": in_chs, "stride": strides.stride, "nominal_stride": strides.nominal})
    strides.check("these stages")
    return nn.Sequential(*modules), info


def stage_features(info: Sequence[dict], prefix: str = "stages") -> list[dict]:
    """The feature maps a detector wants: each stage after which the (nominal) stride grows, and the
    last stage (timm's convention for these networks: strides 2, 4, 8, 16, 32). A dilated network
    lists the same stages, each with its true stride."""
    picked = []
    for i, entry in enumerate(info):
        if i == len(info) - 1 or info[i + 1]["nominal_stride"] > entry["nominal_stride"]:
            picked.append(feature(entry["channels"], entry["stride"], f"{prefix}.{i}"))
    return picked


def block_types(stages: Iterable[Iterable[BlockSpec]]) -> list[list[str]]:
    """The block type of every block (repeats expanded), stage by stage; converters use it."""
    return [[spec.block for spec in stage for _ in range(spec.repeats)] for stage in stages]
