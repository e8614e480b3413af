"""SegNet — Badrinarayanan, Kendall & Cipolla 2015, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", arXiv:1511.00561 (TPAMI 2017).

The encoder is VGG-16's 13 convolutions (3x3, batch norm, ReLU), its fully-connected layers
discarded (section 3). Each 2x2 max pooling remembers *where* each window's maximum was (the
"pooling indices", Zeiler & Fergus' switches); the decoder mirrors the encoder stage by stage: it
upsamples by unpooling — each value goes back to the position its window's maximum came from,
zeros elsewhere (``max_unpool2d``) — and densifies that sparse map with trainable 3x3
convolutions (batch norm, ReLU). Nothing is learned in the upsampling and no encoder map is kept
for the decoder, only the indices (2 bits per 2x2 window in principle), which keeps boundaries
sharp at a small memory cost (Figure 3 compares it with FCN's learned upsampling and stored maps).
A 3x3 convolution to the classes (the paper's "multi-class soft-max classifier" on the last
decoder map, ``classifier``) ends the net.

The decoder mirrors the encoder's convolutions in reverse, each one's input and output widths
swapped: conv5_3_D ... conv5_1_D (512), conv4_3_D, conv4_2_D (512), conv4_1_D (512 -> 256), and so on
to conv1_2_D (64); conv1_1_D is the classifier. Like the encoder's (and the Caffe model's), the
convolutions keep their bias before batch norm. Parameters: 29.45M at 11 classes (14.72M in the
encoder, 14.73M in the decoder), against the paper's 29.5M (Table 6); counting batch norm's
running means and variances as well (2 x 7,936 values) gives 29.47M, which also rounds to it.

The encoder is the zoo's ``vgg16_bn`` (:func:`~archzoo.segmentation.fcn.vgg_encoder`; its stages'
weights load into ``encoder`` directly, the paper's ImageNet start). Any input of at least 32x32
works: unpooling restores each stage's exact size, odd ones included.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvNormAct
from ..models.base import init_weights
from ..registry import family_card, register_variants
from .base import Segmenter
from .fcn import vgg_encoder


class SegNet(Segmenter):
    """VGG encoder with remembered pooling indices -> mirrored decoder that unpools with them ->
    3x3 ``classifier`` (see the module doc).

    Args:
        num_classes: classes (CamVid: 11).
        backbone: the zoo VGG whose convolutions are the encoder (``vgg16_bn``); the decoder has
            batch norm where the encoder has.
    """

    def __init__(self, num_classes: int = 11, in_chans: int = 3, backbone: str = "vgg16_bn"):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.encoder = vgg_encoder(backbone, in_chans)
        norm = nn.BatchNorm2d if any(isinstance(m, nn.BatchNorm2d) for m in self.encoder.modules()) else None
        # each encoder stage mirrored: its convolutions in reverse, input and output widths swapped;
        # conv1_1's mirror (64 -> 3 in VGG) is the classifier instead
        mirrored = [list(reversed(list(stage.named_children()))) for stage in reversed(self.encoder)]
        _, conv1_1 = mirrored[-1].pop()
        self.decoder = nn.ModuleList(
            nn.Sequential(OrderedDict((name, ConvNormAct(conv.out_chs, conv.in_chs, 3, bias=True, norm_layer=norm))
                                      for name, conv in stage))
            for stage in mirrored)
        self.classifier = nn.Conv2d(conv1_1.out_chs, num_classes, 3, padding=1)
        init_weights(self.decoder)
        init_weights(self.classifier)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Size]]]:
        """The pooled stride-32 map and, per stage, the pooling indices and the size before pooling."""
        switches = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, 2, return_indices=True)
            switches.append((indices, size))
        return x, switches

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        x, switches = self.encode(x)
        for stage, (indices, size) in zip(self.decoder, reversed(switches)):
            x = stage(F.max_unpool2d(x, indices, 2, 2, output_size=size))
        return self.classifier(x)


card = family_card(
    family="segnet", task="segmentation", year=2015,
    paper="arXiv:1511.00561 SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation "
          "(Badrinarayanan, Kendall, Cipolla)",
    tricks=("pooling_indices_unpooling", "fully_convolutional", "conv_pool_stack", "stacked_3x3_convs", "batch_norm",
            "relu"),
    dataset="CamVid", num_classes=11, input_size=(3, 360, 480), min_input_size=(3, 32, 32),
    heads=("classifier",), input_convs=("encoder.0.conv1.conv",), cam_layer="decoder.4",
)

register_variants(SegNet, [
    card("segnet_vgg16", kwargs={"backbone": "vgg16_bn"},
         notes="VGG-16 encoder (13 convs with batch norm, the zoo's vgg16_bn stages), 2x2 max-pooling indices reused "
               "by max_unpool2d in the mirrored decoder, 3x3 classifier. 29.45M parameters at 11 classes (paper: "
               "29.5M). CamVid at 360x480; any input from 32x32."),
])
