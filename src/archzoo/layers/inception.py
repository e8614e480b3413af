"""Multi-branch ("Inception") modules and auxiliary classifiers.

Szegedy et al. 2014, "Going Deeper with Convolutions" (GoogLeNet), arXiv:1409.4842: run 1x1,
3x3, 5x5 convolutions and a pooling path side by side on the same input and concatenate their
outputs along the channels; 1x1 convolutions first reduce the width the expensive branches see
(section 4). Section 5 adds auxiliary classifiers on intermediate maps, whose losses (weighted
0.3) are added to the main one during training and which are dropped at inference.

:class:`ConcatBranches` is the container every multi-branch block is built from (GoogLeNet,
Inception-v3/v4, Inception-ResNet, the fire module); :class:`InceptionModule` is the
GoogLeNet module; :class:`AuxClassifier` the auxiliary head.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import ConvNormAct, create_act

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


#: conv -> batch norm (TensorFlow's ``eps=1e-3``) -> ReLU: the unit of Google's released Inception
#: models (GoogLeNet, Inception-v3/v4, Inception-ResNet) and of their torchvision/timm ports
inception_conv = partial(ConvNormAct, norm_layer=partial(nn.BatchNorm2d, eps=1e-3))


class ConcatBranches(nn.ModuleDict):
    """``cat([branch(x) for branch in branches], dim=1)``: named branches that see the same input.

    A branch is any module, typically an ``nn.Sequential`` of :class:`ConvNormAct` (a 1x1
    reduction, then the wider convolution) or a pooling layer followed by a 1x1 projection.
    Branches may nest (Inception-v3's expanded filter bank splits a branch in two).
    """

    def __init__(self, **branches: nn.Module):
        super().__init__(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.values()], dim=1)


def split_1x3_3x1(conv_layer: Callable[..., nn.Module], in_chs: int, out_chs: int) -> ConcatBranches:
    """Inception-v3's expanded filter bank (arXiv:1512.00567, Figure 7): a 1x3 and a 3x1
    convolution side by side on the same input, concatenated."""
    return ConcatBranches(a=conv_layer(in_chs, out_chs, (1, 3)), b=conv_layer(in_chs, out_chs, (3, 1)))


class InceptionModule(ConcatBranches):
    """The GoogLeNet module (Figure 2b): 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1.

    Widths follow the paper's Table 1 (``#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj``).
    ``large_kernel`` is the kernel of the "5x5" branch (torchvision's port uses 3).
    """

    def __init__(
        self,
        in_chs: int,
        c1x1: int,
        c3x3_reduce: int,
        c3x3: int,
        c5x5_reduce: int,
        c5x5: int,
        pool_proj: int,
        large_kernel: int = 5,
        conv_layer: Callable[..., nn.Module] = ConvNormAct,
    ):
        super().__init__(
            b1x1=nn.Sequential(conv_layer(in_chs, c1x1, 1)),
            b3x3=nn.Sequential(conv_layer(in_chs, c3x3_reduce, 1), conv_layer(c3x3_reduce, c3x3, 3)),
            b5x5=nn.Sequential(conv_layer(in_chs, c5x5_reduce, 1), conv_layer(c5x5_reduce, c5x5, large_kernel)),
            pool=nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_layer(in_chs, pool_proj, 1)),
        )
        self.out_chs = c1x1 + c3x3 + c5x5 + pool_proj


class AvgPoolAtLeast(nn.Module):
    """Average pooling (``kernel_size``, ``stride``) that never gives fewer than ``min_size`` outputs
    per side: a map too small for that is averaged adaptively to ``min_size`` instead.

    Inception-v3's auxiliary head pools its 17x17 input (299x299 images) to the 5x5 its 5x5
    convolution needs; this keeps the head usable on smaller images and is exact at 299 and up.
    """

    def __init__(self, kernel_size: int, stride: int, min_size: int):
        super().__init__()
        self.kernel_size, self.stride, self.min_size = kernel_size, stride, min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = [(s - self.kernel_size) // self.stride + 1 if s >= self.kernel_size else 0 for s in x.shape[-2:]]
        if min(out) >= self.min_size:
            return F.avg_pool2d(x, self.kernel_size, self.stride)
        return F.adaptive_avg_pool2d(x, [max(o, self.min_size) for o in out])

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, min_size={self.min_size}"


class AuxClassifier(nn.Module):
    """An auxiliary classifier on an intermediate map (GoogLeNet section 5, Inception-v3 section 4):

        logits = fc(drop(act(fc1(flatten(global_pool(convs(pool(x))))))))

    ``pool`` shrinks the map, ``convs`` (a 1x1 reduction, maybe more) process it, ``global_pool``
    (optional) averages it, ``hidden > 0`` adds the hidden fully-connected layer ``fc1``.
    ``in_features`` is the flattened width that reaches ``fc1``/``fc``.
    """

    def __init__(
        self,
        pool: nn.Module,
        convs: nn.Module,
        in_features: int,
        num_classes: int,
        hidden: int = 0,
        drop_rate: float = 0.0,
        global_pool: bool = False,
        act_layer=nn.ReLU,
    ):
        super().__init__()
        self.pool = pool
        self.convs = convs
        self.global_pool = nn.AdaptiveAvgPool2d(1) if global_pool else nn.Identity()
        if hidden:
            self.fc1 = nn.Linear(in_features, hidden)
            self.act = create_act(act_layer)
            in_features = hidden
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.in_features = in_features
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(self.convs(self.pool(x))).flatten(1)
        if hasattr(self, "fc1"):
            x = self.act(self.fc1(x))
        return self.fc(self.drop(x))


def imagenet_to_inception_range(x: torch.Tensor) -> torch.Tensor:
    """Turn ImageNet-normalised images ``(p - mean) / std`` into ``(p - 0.5) / 0.5``, the [-1, 1]
    range of Google's Inception weights (what torchvision's ``transform_input=True`` does)."""
    if x.shape[1] != 3:
        raise ValueError(f"transform_input needs 3-channel input, got {x.shape[1]} channels")
    scale = x.new_tensor([s / 0.5 for s in _IMAGENET_STD]).view(1, 3, 1, 1)
    shift = x.new_tensor([(m - 0.5) / 0.5 for m in _IMAGENET_MEAN]).view(1, 3, 1, 1)
    return x * scale + shift


class InceptionRange(nn.Module):
    """:func:`imagenet_to_inception_range` as a module (the first layer of a net built with
    ``transform_input=True``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imagenet_to_inception_range(x)
