"""BiFPN — the weighted bi-directional feature pyramid of EfficientDet (Tan, Pang & Le 2019,
"EfficientDet: Scalable and Efficient Object Detection", arXiv:1911.09070, section 3).

One BiFPN layer runs a top-down path (each level fuses itself with the upsampled level above,
as in FPN) and then a bottom-up path (each level fuses its input, its top-down node and the
downsampled level below, as in PANet); the top and bottom levels have one node only. Every node
is a *fast normalised fusion* of its inputs, ``sum_i relu(w_i) x_i / (eps + sum_j relu(w_j))``
with learned scalars ``w``, followed by swish and a depthwise-separable 3x3 convolution with
batch norm. The layer is repeated; inputs whose width differs from the pyramid's get a 1x1
convolution with batch norm (one per use, as in the reference), and levels above the backbone's
are made by resampling the deepest map (1x1 conv to the pyramid width, then 3x3/2 max pooling).

Resampling follows the reference's TensorFlow conventions: max pooling with "SAME" padding,
nearest-neighbour upsampling to the target map's size. The pyramid adapts to any input size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.nas_cells import pad_same


class SeparableConv(nn.Module):
    """Depthwise 3x3 (no bias) -> pointwise 1x1 (with bias) -> optional batch norm."""

    def __init__(self, in_chs: int, out_chs: int, norm: bool = True, bn_eps: float = 1e-3, bn_momentum: float = 0.01):
        super().__init__()
        self.depthwise = nn.Conv2d(in_chs, in_chs, 3, padding=1, groups=in_chs, bias=False)
        self.pointwise = nn.Conv2d(in_chs, out_chs, 1)
        self.bn = nn.BatchNorm2d(out_chs, eps=bn_eps, momentum=bn_momentum) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class Resample(nn.Module):
    """Bring a map to the pyramid's width (1x1 conv + BN, only when it differs) and to a target size
    (3x3/2 "SAME" max pooling when larger, nearest upsampling when smaller)."""

    def __init__(self, in_chs: int, out_chs: int, bn_eps: float = 1e-3, bn_momentum: float = 0.01):
        super().__init__()
        self.proj = None
        if in_chs != out_chs:
            self.proj = nn.Sequential()
            self.proj.add_module("conv", nn.Conv2d(in_chs, out_chs, 1))
            self.proj.add_module("bn", nn.BatchNorm2d(out_chs, eps=bn_eps, momentum=bn_momentum))

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if self.proj is not None:
            x = self.proj(x)
        h, w = x.shape[-2:]
        if h > size[0] and w > size[1]:
            stride = (h - 1) // size[0] + 1
            return F.max_pool2d(pad_same(x, stride + 1, stride, value=float("-inf")), stride + 1, stride)
        if h < size[0] or w < size[1]:
            return F.interpolate(x, size=tuple(size), mode="nearest")
        return x


def bifpn_nodes(num_levels: int) -> list[tuple[int, list[int]]]:
    """The nodes of one BiFPN layer as ``(level, input ids)``: ids ``0..num_levels-1`` are the layer's
    inputs, then every node in order (top-down from the second-highest level, then bottom-up)."""
    latest = {lvl: [lvl] for lvl in range(num_levels)}
    nodes, next_id = [], num_levels
    for lvl in range(num_levels - 2, -1, -1):  # top-down
        nodes.append((lvl, [latest[lvl][-1], latest[lvl + 1][-1]]))
        latest[lvl].append(next_id)
        next_id += 1
    for lvl in range(1, num_levels):  # bottom-up: the level's input, its top-down node, the level below
        nodes.append((lvl, latest[lvl][:2] + [latest[lvl - 1][-1]]))
        latest[lvl].append(next_id)
        next_id += 1
    return nodes


class FusionNode(nn.Module):
    """Resample each input to this level, fuse (fast normalised weights, or a plain sum), swish, separable conv."""

    def __init__(self, in_channels: Sequence[int], channels: int, weighting: str = "fast", eps: float = 1e-4, **bn):
        super().__init__()
        if weighting not in ("fast", "sum"):
            raise ValueError(f"weighting must be 'fast' or 'sum', got {weighting!r}")
        self.inputs = nn.ModuleList(Resample(c, channels, **bn) for c in in_channels)
        self.weights = nn.Parameter(torch.ones(len(in_channels))) if weighting == "fast" else None
        self.eps = eps
        self.act = nn.SiLU()
        self.conv = SeparableConv(channels, channels, **bn)

    def forward(self, xs: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        xs = [resample(x, size) for resample, x in zip(self.inputs, xs)]
        if self.weights is None:
            fused = torch.stack(xs, dim=-1).sum(dim=-1)
        else:
            w = F.relu(self.weights.to(xs[0].dtype))
            w = w / (w.sum() + self.eps)
            fused = torch.stack([x * w[i] for i, x in enumerate(xs)], dim=-1).sum(dim=-1)
        return self.conv(self.act(fused))


class BiFPNLayer(nn.Module):
    def __init__(self, in_channels: Sequence[int], channels: int, weighting: str = "fast", **bn):
        super().__init__()
        self.num_levels = len(in_channels)
        self.graph = bifpn_nodes(self.num_levels)
        widths = list(in_channels) + [channels] * len(self.graph)
        self.nodes = nn.ModuleList(FusionNode([widths[i] for i in ids], channels, weighting, **bn)
                                   for _, ids in self.graph)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [f.shape[-2:] for f in feats]
        maps = list(feats)
        for (level, ids), node in zip(self.graph, self.nodes):
            maps.append(node([maps[i] for i in ids], sizes[level]))
        return maps[-self.num_levels:]  # the bottom-up nodes, with the top-down bottom node first


class BiFPN(nn.Module):
    """``repeats`` BiFPN layers of width ``channels`` over ``num_levels`` maps: the backbone's
    (``in_channels``, strides doubling) and extra levels made by resampling the deepest one.

    Returns ``num_levels`` maps of ``channels``, finest first.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, repeats: int, num_levels: int = 5,
                 weighting: str = "fast", bn_eps: float = 1e-3, bn_momentum: float = 0.01):
        super().__init__()
        if num_levels < len(in_channels):
            raise ValueError(f"num_levels {num_levels} < the {len(in_channels)} backbone maps")
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        widths, extra = list(in_channels), []
        while len(widths) < num_levels:
            extra.append(Resample(widths[-1], channels, **bn))
            widths.append(channels)
        self.extra = nn.ModuleList(extra)
        layers = []
        for _ in range(repeats):
            layers.append(BiFPNLayer(widths, channels, weighting, **bn))
            widths = [channels] * num_levels
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = list(feats)
        for resample in self.extra:
            h, w = feats[-1].shape[-2:]
            feats.append(resample(feats[-1], ((h - 1) // 2 + 1, (w - 1) // 2 + 1)))
        return self.layers(feats)
