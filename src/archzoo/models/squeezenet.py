"""SqueezeNet — Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters
and <0.5MB model size", arXiv:1602.07360.

AlexNet's accuracy from 1.2M parameters, by three strategies (section 3.1): use 1x1 filters
instead of most 3x3s, squeeze the channels the remaining 3x3s see (both in the fire module,
:class:`~archzoo.layers.Fire`), and downsample late so most layers work on large maps. There are
no fully-connected layers: a 1x1 convolution gives per-position class scores, which are averaged
(:class:`~archzoo.layers.ConvPoolHead`, after Network in Network).

* ``squeezenet1_0``: the paper's Table 1 (7x7 stem with 96 kernels, pooling after fire4 and fire8).
* ``squeezenet1_1``: v1.1 from the authors' repository: 3x3 stem with 64 kernels and earlier
  pooling (after fire3 and fire5), 2.4x less computation for the same accuracy.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import ConvNormAct, ConvPoolHead, Fire
from ..registry import family_card, register_variants
from .base import Classifier, init_weights

# fire modules (squeeze, expand 1x1, expand 3x3) per stage; a max pool opens each stage
_F16, _F32, _F48, _F64 = (16, 64, 64), (32, 128, 128), (48, 192, 192), (64, 256, 256)
SQUEEZENET = {
    "1_0": dict(stem=(96, 7), stages=((_F16, _F16, _F32), (_F32, _F48, _F48, _F64), (_F64,))),
    "1_1": dict(stem=(64, 3), stages=((_F16, _F16), (_F32, _F32), (_F48, _F48, _F64, _F64))),
}


class SqueezeNet(Classifier):
    """Stem conv (stride 2) -> [3x3/2 max pool (ceil) -> fire modules] x 3 -> dropout -> 1x1 conv -> ReLU -> average.

    Args:
        version: ``"1_0"`` (the paper) or ``"1_1"``.
        drop_rate: dropout before the final convolution (0.5 in the paper).
    """

    feature_chain = ("stem", "stages")

    def __init__(self, version: str = "1_0", num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5):
        super().__init__()
        if version not in SQUEEZENET:
            raise ValueError(f"version must be one of {sorted(SQUEEZENET)}, got {version!r}")
        cfg = SQUEEZENET[version]
        stem_chs, stem_k = cfg["stem"]
        self.stem = ConvNormAct(in_chans, stem_chs, stem_k, stride=2, padding=0, norm_layer=None)
        info, stride, in_chs, fire_idx = [feature(stem_chs, 2, "stem")], 2, stem_chs, 2
        stages = []
        for i, fires in enumerate(cfg["stages"]):
            layers = [("pool", nn.MaxPool2d(3, stride=2, ceil_mode=True))]
            for squeeze, e1, e3 in fires:
                layers.append((f"fire{fire_idx}", Fire(in_chs, squeeze, e1, e3)))
                in_chs, fire_idx = e1 + e3, fire_idx + 1
            stride *= 2
            stages.append(nn.Sequential(OrderedDict(layers)))
            info.append(feature(in_chs, stride, f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.feature_info = FeatureInfo(info)
        self.num_features, self.num_classes = in_chs, num_classes
        init_weights(self)
        self.head = ConvPoolHead(in_chs, num_classes, drop_rate=drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


card = family_card(
    input_convs=("stem.conv",),
    family="squeezenet",
    year=2016,
    paper="arXiv:1602.07360 SqueezeNet: AlexNet-level accuracy with 50x fewer parameters (Iandola et al.)",
    tricks=("fire_module", "pointwise_conv", "relu", "dropout", "global_average_pooling"),
)

register_variants(SqueezeNet, [
    card("squeezenet1_0", reference="torchvision:squeezenet1_0", min_input_size=(3, 21, 21),
         notes="The classifier is dropout -> 1x1 conv -> ReLU -> global average: forward_head(pre_logits=True) "
               "gives the globally averaged 512 features the final convolution would see.",
         kwargs=dict(version="1_0")),
    card("squeezenet1_1", reference="torchvision:squeezenet1_1", min_input_size=(3, 17, 17),
         notes="SqueezeNet v1.1 (from the authors' repository, not in the paper): 3x3 stem with 64 kernels and "
               "pooling after fire3 and fire5; 2.4x less computation than v1.0 at the same accuracy. The classifier "
               "is dropout -> 1x1 conv -> ReLU -> global average.",
         kwargs=dict(version="1_1")),
])
