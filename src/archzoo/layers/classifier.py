"""The standard classifier head: global average pooling (Lin et al. 2013, arXiv:1312.4400),
optional dropout, and one linear layer."""

from __future__ import annotations

import torch
import torch.nn as nn


class ClassifierHead(nn.Module):
    """``fc(dropout(flatten(global_pool(x))))``; ``num_classes=0`` leaves the pooled features.

    ``use_conv=True`` keeps the final layer as a 1x1 convolution (as some references store it).
    """

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float = 0.0, pool: str = "avg", use_conv: bool = False):
        super().__init__()
        self.in_chs, self.drop_rate, self.pool_type, self.use_conv = in_chs, drop_rate, pool, use_conv
        if pool == "avg":
            self.global_pool = nn.AdaptiveAvgPool2d(1)
        elif pool == "max":
            self.global_pool = nn.AdaptiveMaxPool2d(1)
        else:
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.num_classes = num_classes
        if num_classes <= 0:
            self.fc = nn.Identity()
        elif self.use_conv:
            self.fc = nn.Conv2d(self.in_chs, num_classes, kernel_size=1, bias=True)
        else:
            self.fc = nn.Linear(self.in_chs, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if not self.use_conv:
            x = x.flatten(1)
        x = self.drop(x)
        if pre_logits:
            return x.flatten(1)
        return self.fc(x).flatten(1)
