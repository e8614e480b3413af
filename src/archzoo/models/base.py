"""The API every classifier in the zoo shares; CAM, transfer learning and export rely on it alone.

* ``forward_features(x)`` -> the last unpooled feature map ``[B, num_features, h, w]``
* ``forward_head(x, pre_logits=False)`` -> logits (or the pooled features)
* ``reset_classifier(num_classes)`` -> a fresh final layer (``0`` removes it)
* ``num_features``, ``num_classes``, ``feature_info`` (see :mod:`archzoo.features`)
* ``feature_stages()`` -> how ``forward_features`` decomposes, one stage per ``feature_info``
  entry; chains of modules just name them in ``feature_chain`` (see :mod:`archzoo.features`)
* ``head_hidden_size`` (only where it differs from ``num_features``): the width of
  ``forward_head(x, pre_logits=True)`` for heads with hidden layers (AlexNet/VGG: 4096)

In training mode, models with auxiliary classifiers return :class:`AuxLogits` instead of a tensor.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from ..features import FeatureInfo, FeatureStage, chain_stages
from ..layers import ClassifierHead


class AuxLogits(NamedTuple):
    """What a model with auxiliary classifiers (GoogLeNet, Inception-v3) returns in training mode:
    the main logits and the auxiliary heads' logits. In eval mode such a model returns a tensor.
    The trainer adds ``aux_weight * loss(aux)`` for each auxiliary output."""

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]


class Classifier(nn.Module):
    """Base class: subclasses build their body, call :meth:`init_head`, and define ``forward_features``."""

    num_features: int
    num_classes: int
    feature_info: FeatureInfo
    head: nn.Module
    #: the modules ``forward_features`` runs, in order (dotted paths; a ``Sequential`` holding a
    #: feature map is expanded into its children); ``None``: the family overrides ``feature_stages``
    feature_chain: tuple[str, ...] | None = None

    def init_head(self, num_features: int, num_classes: int, drop_rate: float = 0.0, **head_kwargs) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.head = ClassifierHead(num_features, num_classes, drop_rate=drop_rate, **head_kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def feature_stages(self) -> list[FeatureStage]:
        """One :class:`~archzoo.features.FeatureStage` per ``feature_info`` entry: what a backbone
        built from this model runs to produce each map (``features_only``)."""
        if self.feature_chain is None:
            raise NotImplementedError(f"{type(self).__name__} does not describe its stages: set feature_chain "
                                      "or override feature_stages (see docs/adding_a_family.md)")
        return chain_stages(self, self.feature_chain)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)
        self.num_classes = num_classes

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def init_weights(module: nn.Module) -> None:
    """He (fan-out) initialisation for convolutions (He et al. 2015, arXiv:1502.01852), unit norms,
    small normal linear layers, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
