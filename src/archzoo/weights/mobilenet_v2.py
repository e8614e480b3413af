"""Key maps for the networks built from block strings: MobileNetV2 here, EfficientNet reuses them.

Our blocks name their parts by role — ``expand``, ``depthwise``, ``se``, ``project``, each a
ConvNormAct (``conv``/``bn``) — under ``stages.<stage>.<block>``. The references number their
blocks (torchvision's MobileNetV2 flat, ``features.1`` ... ``features.17``; timm and
torchvision's EfficientNet per stage), and what a part's number or name means depends on the
block's type (a ``ds`` block has no expansion conv). So each block key is first tagged with its
place and type, read from our model's own stage list (``stages.i.j.<ds|ir>.<rest>``), and then
renamed by a plain table. The reference's last feature layer (the 1x1 head conv) is tagged
``features.last``.
"""

from __future__ import annotations

import re
from functools import lru_cache

import torch

from . import BN, KeyMap, StateDict, register_converter



@lru_cache(maxsize=None)
def block_layout(name: str) -> tuple[tuple[tuple[str, ...], ...], tuple[int, ...]]:
    """Model ``name``'s block types per stage and the stages its ``feature_info`` names."""
    from ..builder import create_model
    from ..layers.mobile_stages import block_types

    with torch.device("meta"):
        model = create_model(name)
    types = tuple(tuple(stage) for stage in block_types(model.stage_specs))
    return types, tuple(int(m.split(".")[1]) for m in model.feature_info.modules())


def tag_blocks(state_dict: StateDict, name: str, prefix: str, nested: bool, first: int = 0) -> StateDict:
    """Rename the reference's block keys ``<prefix>.<stage>.<block>.<rest>`` (``nested``) or
    ``<prefix>.<n>.<rest>`` (flat) to ``stages.<i>.<j>.<type>.<rest>``; numbering starts at
    ``first``. The index right after the last block becomes ``features.last``; other keys pass."""
    types, _ = block_layout(name)
    flat = [(i, j, t) for i, stage in enumerate(types) for j, t in enumerate(stage)]
    end = len(types) if nested else len(flat)
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.(.+)")
    out = {}
    for key, value in state_dict.items():
        m = pattern.fullmatch(key)
        n = int(m[1]) - first if m else -1
        if m and 0 <= n < end:
            if nested:
                j, _, rest = m[2].partition(".")
                if j.isdigit() and int(j) < len(types[n]):
                    key = f"stages.{n}.{j}.{types[n][int(j)]}.{rest}"
            else:
                i, j, t = flat[n]
                key = f"stages.{i}.{j}.{t}.{m[2]}"
        elif m and n == end:
            key = f"features.last.{m[2]}"
        out[key] = value
    return out


def part(block: str, conv: str, bn: str, ours: str) -> tuple[tuple[str, str], ...]:
    """Rules renaming one conv and its norm of a tagged ``block`` (``ds``/``ir``) to our ``ours``."""
    head = rf"(stages\.\d+\.\d+)\.{block}\."
    return ((head + re.escape(conv) + r"\.weight", rf"\1.{ours}.conv.weight"),
            (head + re.escape(bn) + rf"\.{BN}", rf"\1.{ours}.bn.\2"))


def conv_bn(conv: str, bn: str, ours: str) -> tuple[tuple[str, str], ...]:
    """Rules renaming a top-level conv and its norm to our ConvNormAct ``ours``."""
    return ((re.escape(conv) + r"\.weight", f"{ours}.conv.weight"), (re.escape(bn) + rf"\.{BN}", rf"{ours}.bn.\1"))


# torchvision: Conv2dNormActivation is (conv, norm, act) as .0/.1; MobileNetV2's projection is a bare conv + norm
_TV_MNV2 = KeyMap((
    *conv_bn("features.0.0", "features.0.1", "stem"),
    *part("ds", "conv.0.0", "conv.0.1", "depthwise"),
    *part("ds", "conv.1", "conv.2", "project"),
    *part("ir", "conv.0.0", "conv.0.1", "expand"),
    *part("ir", "conv.1.0", "conv.1.1", "depthwise"),
    *part("ir", "conv.2", "conv.3", "project"),
    *conv_bn("features.last.0", "features.last.1", "conv_head"),
    (r"classifier\.1\.(weight|bias)", r"head.fc.\1"),
))

# timm's EfficientNet class (MobileNetV2 and EfficientNet): DepthwiseSeparableConv and InvertedResidual
TIMM = KeyMap((
    *conv_bn("conv_stem", "bn1", "stem"),
    *part("ds", "conv_dw", "bn1", "depthwise"),
    *part("ds", "conv_pw", "bn2", "project"),
    *part("ir", "conv_pw", "bn1", "expand"),
    *part("ir", "conv_dw", "bn2", "depthwise"),
    *part("ir", "conv_pwl", "bn3", "project"),
    (r"(stages\.\d+\.\d+)\.(?:ds|ir)\.se\.conv_reduce\.(weight|bias)", r"\1.se.fc1.\2"),
    (r"(stages\.\d+\.\d+)\.(?:ds|ir)\.se\.conv_expand\.(weight|bias)", r"\1.se.fc2.\2"),
    *conv_bn("conv_head", "bn2", "conv_head"),
    (r"classifier\.(weight|bias)", r"head.fc.\1"),
))


def _torchvision(state_dict: StateDict, name: str) -> StateDict:
    return _TV_MNV2(tag_blocks(state_dict, name, "features", nested=False, first=1), name)


def timm_converter(state_dict: StateDict, name: str) -> StateDict:
    return TIMM(tag_blocks(state_dict, name, "blocks", nested=True), name)


def _torchvision_nodes(name: str) -> list[str]:
    """torchvision's flat ``features.<n>`` after the last block of each feature stage."""
    types, stages = block_layout(name)
    ends = [sum(len(s) for s in types[: i + 1]) for i in range(len(types))]
    return [f"features.{ends[i]}" for i in stages]


register_converter("mobilenet_v2", "torchvision", _torchvision, feature_nodes=_torchvision_nodes)
register_converter("mobilenet_v2", "timm", timm_converter)
