"""Key maps for MobileNetV3 Large and Small from torchvision (see :mod:`archzoo.weights.mobilenet_v2`).

torchvision numbers its blocks flat (``features.1`` ... ; the last 1x1 conv is the feature after
the last block) and the parts of a block in order, ``block.0`` ...: expand (only where the block
expands: our ``ir`` blocks), depthwise, SE (only where the block has one), project. So a part's
number depends on the block's type and on its SE; each key is tagged with its block's place and
type (``stages.i.j.<ds|ir>.block...``) and then renamed by a table in which the numbers that
remain ambiguous are told apart by what they hold (an SE holds ``fc1``/``fc2``, a conv ``0``/``1``).
The head is ``classifier.0`` (the hidden layer) and ``classifier.3`` (the final layer).
"""

from __future__ import annotations

import re
from functools import lru_cache

import torch

from . import KeyMap, StateDict, register_converter
from .mobilenet_v2 import conv_bn, part


@lru_cache(maxsize=None)
def _layout(name: str) -> tuple[tuple[tuple[int, int, str], ...], tuple[str, ...]]:
    """Model ``name``'s blocks as ``(stage, block, type)`` in order, and its ``feature_info`` modules."""
    from ..builder import create_model
    from ..layers.mobile_stages import block_types

    with torch.device("meta"):
        model = create_model(name)
    flat = tuple((i, j, t) for i, stage in enumerate(block_types(model.stage_specs)) for j, t in enumerate(stage))
    return flat, tuple(model.feature_info.modules())


def _tag(state_dict: StateDict, name: str) -> StateDict:
    """``features.<n>.<rest>`` -> ``stages.<i>.<j>.<type>.<rest>``; the last 1x1 conv -> ``features.last``."""
    flat, _ = _layout(name)
    out = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"features\.(\d+)\.(.+)", key)
        n = int(m[1]) - 1 if m else -1
        if m and 0 <= n < len(flat):
            i, j, t = flat[n]
            key = f"stages.{i}.{j}.{t}.{m[2]}"
        elif m and n == len(flat):
            key = f"features.last.{m[2]}"
        out[key] = value
    return out


_SE = r"(stages\.\d+\.\d+)\.{}\.block\.{}\.(fc1|fc2)\.(weight|bias)"

_TV = KeyMap((
    *conv_bn("features.0.0", "features.0.1", "stem"),
    # ds: depthwise, (SE), project
    *part("ds", "block.0.0", "block.0.1", "depthwise"),
    (_SE.format("ds", 1), r"\1.se.\2.\3"),
    *part("ds", "block.1.0", "block.1.1", "project"),
    *part("ds", "block.2.0", "block.2.1", "project"),
    # ir: expand, depthwise, (SE), project
    *part("ir", "block.0.0", "block.0.1", "expand"),
    *part("ir", "block.1.0", "block.1.1", "depthwise"),
    (_SE.format("ir", 2), r"\1.se.\2.\3"),
    *part("ir", "block.2.0", "block.2.1", "project"),
    *part("ir", "block.3.0", "block.3.1", "project"),
    *conv_bn("features.last.0", "features.last.1", "conv_head"),
    (r"classifier\.0\.(weight|bias)", r"head.pre_logits.fc1.\1"),
    (r"classifier\.3\.(weight|bias)", r"head.fc.\1"),
))


def _torchvision(state_dict: StateDict, name: str) -> StateDict:
    return _TV(_tag(state_dict, name), name)


def _torchvision_nodes(name: str) -> list[str]:
    """torchvision's ``features.<n>`` of each of our feature maps: the stem is ``features.0``, a stage
    ends at its last block's number, the last 1x1 conv is the last feature."""
    flat, modules = _layout(name)
    ends = {}
    for n, (i, _, _) in enumerate(flat, start=1):
        ends[f"stages.{i}"] = n
    ends.update(stem=0, conv_head=len(flat) + 1)
    return [f"features.{ends[m]}" for m in modules]


register_converter("mobilenet_v3", "torchvision", _torchvision, feature_nodes=_torchvision_nodes)
