"""The building blocks ("tricks" made into modules). Families assemble these; they never copy them."""

from .classifier import ClassifierHead
from .conv import ConvNormAct, NormAct, create_act, get_padding, make_divisible
from .drop import DropPath, drop_path
from .residual import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from .shortcut import ZeroPadShortcut, make_shortcut, projection_shortcut
from .squeeze_excite import SqueezeExcite

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ClassifierHead",
    "ConvNormAct",
    "DropPath",
    "NormAct",
    "PreActBasicBlock",
    "PreActBottleneck",
    "SqueezeExcite",
    "ZeroPadShortcut",
    "create_act",
    "drop_path",
    "get_padding",
    "make_divisible",
    "make_shortcut",
    "projection_shortcut",
]
