"""The building blocks ("tricks" made into modules). Families assemble these; they never copy them."""

from .c2f import C2f, SPPF, YoloBottleneck
from .classifier import ClassifierHead
from .conv import ConvNormAct, NormAct, create_act, get_padding, make_divisible
from .csp import CrossStagePartial, DarkBlock
from .dense import DenseBlock, DenseLayer, Transition
from .dilation import OutputStride
from .drop import DropPath, drop_path, linear_drop_path
from .factorized_inception import InceptionA, InceptionB, InceptionC, InceptionE, ReductionB
from .fire import Fire
from .fractal import FractalBlock, GlobalDropPath, fractal_join, global_drop_column
from .heads import ConvPoolHead, FCHead
from .inception import (
    AuxClassifier,
    AvgPoolAtLeast,
    ConcatBranches,
    InceptionModule,
    InceptionRange,
    imagenet_to_inception_range,
    inception_conv,
    split_1x3_3x1,
)
from .inception_v4 import (
    InceptionResNetA,
    InceptionResNetB,
    InceptionResNetC,
    InceptionV4A,
    InceptionV4B,
    InceptionV4C,
    ReductionA,
    ReductionResNetB,
    ResidualInception,
)
from .inverted_residual import DepthwiseSeparable, InvertedResidual
from .lenet import ConnectionTableConv, EuclideanRBF, ScaledTanh, TrainableSubsampling
from .mobile_stages import build_stages, round_channels, round_repeats, scale_stages, stage_features
from .norm import NORM_LAYERS, create_norm_layer
from .nas_cells import Cell, CellStack, FactorizedReduction, Genotype, SameConv2d, SamePool2d, SepConv
from .residual import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from .shortcut import ZeroPadShortcut, make_shortcut, projection_shortcut
from .shuffle import ShuffleV2Block, channel_shuffle
from .squeeze_excite import SE_STYLES, SqueezeExcite, SqueezeExciteStyle

__all__ = [
    "C2f",
    "SPPF",
    "YoloBottleneck",
    "AuxClassifier",
    "AvgPoolAtLeast",
    "ConcatBranches",
    "ConnectionTableConv",
    "ConvPoolHead",
    "EuclideanRBF",
    "FCHead",
    "Fire",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionE",
    "InceptionModule",
    "InceptionRange",
    "InceptionResNetA",
    "InceptionResNetB",
    "InceptionResNetC",
    "InceptionV4A",
    "InceptionV4B",
    "InceptionV4C",
    "ReductionA",
    "ReductionResNetB",
    "ReductionB",
    "ResidualInception",
    "Cell",
    "CellStack",
    "FactorizedReduction",
    "Genotype",
    "SameConv2d",
    "SamePool2d",
    "SepConv",
    "ScaledTanh",
    "TrainableSubsampling",
    "imagenet_to_inception_range",
    "inception_conv",
    "split_1x3_3x1",
    "BasicBlock",
    "Bottleneck",
    "ClassifierHead",
    "ConvNormAct",
    "CrossStagePartial",
    "DarkBlock",
    "DenseBlock",
    "DenseLayer",
    "DepthwiseSeparable",
    "DropPath",
    "FractalBlock",
    "GlobalDropPath",
    "NORM_LAYERS",
    "OutputStride",
    "InvertedResidual",
    "NormAct",
    "PreActBasicBlock",
    "PreActBottleneck",
    "SE_STYLES",
    "SqueezeExcite",
    "SqueezeExciteStyle",
    "ShuffleV2Block",
    "channel_shuffle",
    "Transition",
    "ZeroPadShortcut",
    "create_act",
    "create_norm_layer",
    "build_stages",
    "drop_path",
    "fractal_join",
    "get_padding",
    "global_drop_column",
    "linear_drop_path",
    "make_divisible",
    "make_shortcut",
    "projection_shortcut",
    "round_channels",
    "round_repeats",
    "scale_stages",
    "stage_features",
]
