"""The blocks of the anchor-free YOLO of 2023 (Jocher et al., Ultralytics YOLOv8, 2023): Ultralytics'
conv-BN-SiLU, the residual bottleneck, the C2f cross-stage-partial stage (CSPNet, Wang et al. 2019,
arXiv:1911.11929, with every intermediate output concatenated) and SPPF (spatial pyramid pooling,
He et al. 2014, arXiv:1406.4729, as three chained 5x5 max-pools). Used by the CSPDarknet backbone
(``models/cspdarknet.py``) and the PAN neck (``detection/necks/pan.py``), and the width/depth rules
of a YOLO scale."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn

from .conv import ConvNormAct
from .norm import create_norm_layer


def yolo_conv(norm_layer=None):
    """Conv-BN-SiLU with Ultralytics' batch-norm settings (``ConvNormAct`` with SiLU)."""
    return partial(ConvNormAct, norm_layer=norm_layer or create_norm_layer("batchnorm", eps=1e-3, momentum=0.03),
                   act_layer=nn.SiLU)


def scale_width(channels: int, width: float, max_channels: int = 1024) -> int:
    """Ultralytics' channel rule: ``min(c, max_channels) * width`` rounded up to a multiple of 8."""
    return int(math.ceil(min(channels, max_channels) * width / 8) * 8)


def scale_depth(n: int, depth: float) -> int:
    return max(round(n * depth), 1) if n > 1 else n


class YoloBottleneck(nn.Module):
    """``x + cv2(cv1(x))`` with two 3x3 conv-BN-SiLU (the residual only when ``shortcut`` and the
    widths agree)."""

    def __init__(self, in_chs: int, out_chs: int, shortcut: bool = True, expansion: float = 1.0, norm_layer=None):
        super().__init__()
        conv, mid = yolo_conv(norm_layer), int(out_chs * expansion)
        self.cv1 = conv(in_chs, mid, 3)
        self.cv2 = conv(mid, out_chs, 3)
        self.add = shortcut and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """The C2f cross-stage partial block (see the module doc): ``cv1`` (1x1 to ``2c``) split in
    halves, ``n`` bottlenecks chained on the second half, all ``2 + n`` pieces concatenated and
    fused by ``cv2`` (1x1 to ``out_chs``); ``c = out_chs * expansion``."""

    def __init__(self, in_chs: int, out_chs: int, n: int = 1, shortcut: bool = False, expansion: float = 0.5,
                 norm_layer=None):
        super().__init__()
        conv = yolo_conv(norm_layer)
        self.c = int(out_chs * expansion)
        self.cv1 = conv(in_chs, 2 * self.c, 1)
        self.cv2 = conv((2 + n) * self.c, out_chs, 1)
        self.m = nn.ModuleList(YoloBottleneck(self.c, self.c, shortcut, 1.0, norm_layer) for _ in range(n))
        self.out_chs = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: 1x1 to half width, three chained ``k x k`` stride-1 max-pools,
    the four maps concatenated and fused by a 1x1 conv."""

    def __init__(self, in_chs: int, out_chs: int, k: int = 5, norm_layer=None):
        super().__init__()
        conv, mid = yolo_conv(norm_layer), in_chs // 2
        self.cv1 = conv(in_chs, mid, 1)
        self.cv2 = conv(mid * 4, out_chs, 1)
        self.m = nn.MaxPool2d(k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))
