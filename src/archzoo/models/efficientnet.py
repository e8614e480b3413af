"""EfficientNet — Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", arXiv:1905.11946.

Added compound scaling: from one searched baseline (B0: MBConv blocks — inverted residuals with
squeeze-excitation, MnasNet 2018 — and swish activations, trained with stochastic depth), the
bigger networks scale width by ``beta^phi``, depth by ``alpha^phi`` and resolution by
``gamma^phi`` together. B0 is written below as block strings (the paper's Table 1); B1-B7 are
*generated* from it: every width is multiplied and rounded to a multiple of 8 (never down by
more than 10%), every stage's repeats multiplied and rounded up. The network itself is
MobileNetV2's block-string network (:class:`~archzoo.models.mobilenet_v2.MobileNet`) with swish,
a head that scales with the width, and stochastic depth.
"""

from __future__ import annotations

from ..registry import family_card, register_variants
from .mobilenet_v2 import MobileNet

# Table 1 of the paper: MBConv1 (no expansion) is the ds row; SE of 1/4 of each block's input width
EFFICIENTNET_B0 = (
    ("ds_r1_k3_s1_c16_se0.25",),
    ("ir_r2_k3_s2_e6_c24_se0.25",),
    ("ir_r2_k5_s2_e6_c40_se0.25",),
    ("ir_r3_k3_s2_e6_c80_se0.25",),
    ("ir_r3_k5_s1_e6_c112_se0.25",),
    ("ir_r4_k5_s2_e6_c192_se0.25",),
    ("ir_r1_k3_s1_e6_c320_se0.25",),
)


# --- variants ---------------------------------------------------------------------------------

# (width, depth, resolution, dropout) per variant: the official efficientnet_params
EFFICIENTNET_VARIANTS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
# torchvision's evaluation transforms (resize, crop; bicubic unless marked) for each variant
_TV_EVAL = {"b0": "256 -> 224", "b1": "256 -> 240 (IMAGENET1K_V1), 255 -> 240 bilinear (V2)", "b2": "288 -> 288",
            "b3": "320 -> 300", "b4": "384 -> 380", "b5": "456 -> 456", "b6": "528 -> 528", "b7": "600 -> 600"}
# torchvision's B5-B7 weights were ported from TensorFlow and keep its batch norm (eps 1e-3,
# momentum 0.01 in PyTorch's convention); its B0-B4 weights were trained in PyTorch with the defaults.
_TF_BN = dict(bn_eps=1e-3, bn_momentum=0.01)

card = family_card(
    input_convs=("stem.conv",),
    family="efficientnet",
    year=2019,
    paper="arXiv:1905.11946 EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks (Tan & Le)",
    tricks=("compound_scaling", "mbconv_se", "inverted_residual", "linear_bottleneck", "depthwise_separable_conv",
            "squeeze_excitation", "swish", "stochastic_depth", "residual_shortcut", "pointwise_conv", "batch_norm",
            "global_average_pooling", "dropout"),
    min_input_size=(3, 32, 32),
)


def _variant(key: str):
    width, depth, resolution, dropout = EFFICIENTNET_VARIANTS[key]
    bn = _TF_BN if key in ("b5", "b6", "b7") else {}
    notes = (f"Width x{width:g}, depth x{depth:g}, paper resolution {resolution}. torchvision evaluates at "
             f"{_TV_EVAL[key]}. Batch norm eps {bn.get('bn_eps', 1e-5):g}, momentum {bn.get('bn_momentum', 0.1):g} "
             f"as torchvision's weights need.")
    return card(f"efficientnet_{key}", reference=f"torchvision:efficientnet_{key}", input_size=(3, resolution, resolution),
                notes=notes, kwargs=dict(arch=EFFICIENTNET_B0, width_mult=width, depth_mult=depth, keep_head_width=False,
                                         act="silu", drop_rate=dropout, drop_path_rate=0.2, **bn))


register_variants(MobileNet, [_variant(key) for key in EFFICIENTNET_VARIANTS])
