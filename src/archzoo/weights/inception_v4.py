"""Key maps for Inception-v4 and Inception-ResNet-v2 from timm.

timm (after Cadene's port of the TensorFlow release) numbers a block's branches ``branch0`` ..
``branch3`` (Inception-v4's Inception-C splits them into ``branch1_0``, ``branch1_1a`` ...);
ours name them by what they compute (``b1x1``, ``b3x3``, ``b3x3dbl``, ``b7x7``, ``pool`` ...), so
each block kind has its own table. Inception-v4 keeps all layers in one ``features`` sequence;
ours split it into ``stem`` and three ``stages``. Inception-ResNet-v2's residual blocks hold
their branches under ``branches`` and call timm's ``conv2d`` projection ``expand``.
"""

from __future__ import annotations

import re

from . import register_converter

_STEM_V4 = {0: "stem.conv1", 1: "stem.conv2", 2: "stem.conv3", 3: "stem.mixed1", 4: "stem.mixed2", 5: "stem.mixed3"}

# branch renames per block kind, timm name -> ours (the rest of the key is kept)
_BRANCHES = {
    "mixed1": {"conv": "b3x3"},
    "mixed2": {"branch0": "b3x3", "branch1": "b7x7x3"},
    "mixed3": {"conv": "b3x3"},
    "inception_a": {"branch0": "b1x1", "branch1": "b3x3", "branch2": "b3x3dbl", "branch3": "pool"},
    "reduction_a": {"branch0": "b3x3", "branch1": "b3x3dbl"},
    "inception_b": {"branch0": "b1x1", "branch1": "b7x7", "branch2": "b7x7dbl", "branch3": "pool"},
    "reduction_b": {"branch0": "b3x3", "branch1": "b7x7x3"},
    "inception_c": {"branch0": "b1x1", "branch1_0": "b3x3.0", "branch1_1a": "b3x3.1.a", "branch1_1b": "b3x3.1.b",
                    "branch2_0": "b3x3dbl.0", "branch2_1": "b3x3dbl.1", "branch2_2": "b3x3dbl.2",
                    "branch2_3a": "b3x3dbl.3.a", "branch2_3b": "b3x3dbl.3.b", "branch3": "pool"},
    "mixed_5b": {"branch0": "b1x1", "branch1": "b5x5", "branch2": "b3x3dbl", "branch3": "pool"},
    "mixed_7a": {"branch0": "b3x3a", "branch1": "b3x3b", "branch2": "b3x3dbl"},
    "resnet_a": {"branch0": "branches.b1x1", "branch1": "branches.b3x3", "branch2": "branches.b3x3dbl", "conv2d": "expand"},
    "resnet_b": {"branch0": "branches.b1x1", "branch1": "branches.b7x7", "conv2d": "expand"},
    "resnet_c": {"branch0": "branches.b1x1", "branch1": "branches.b3x3", "conv2d": "expand"},
}


def _rename_branch(key: str, prefix: str, kind: str | None, tail: str, model_name: str) -> str:
    """``prefix`` + the block-relative ``tail`` with its leading branch name renamed for ``kind``."""
    if kind is None:
        return f"{prefix}.{tail}"
    head, _, rest = tail.partition(".")
    try:
        return f"{prefix}.{_BRANCHES[kind][head]}.{rest}"
    except KeyError:
        raise KeyError(f"no conversion rule for key {key!r} (model {model_name})") from None


def _v4_block(index: int) -> tuple[str, str | None]:
    """Our module and block kind for timm's ``features.<index>`` (depths 4, 7, 3)."""
    if index <= 2:
        return _STEM_V4[index], None
    if index <= 5:
        return _STEM_V4[index], _STEM_V4[index].split(".")[1]
    if index <= 9:
        return f"stages.0.{index - 6}", "inception_a"
    if index == 10:
        return "stages.1.0", "reduction_a"
    if index <= 17:
        return f"stages.1.{index - 10}", "inception_b"
    if index == 18:
        return "stages.2.0", "reduction_b"
    if index <= 21:
        return f"stages.2.{index - 18}", "inception_c"
    raise KeyError(index)


def _inception_v4(state_dict: dict, model_name: str) -> dict:
    out = {}
    for key, value in state_dict.items():
        if key.startswith("last_linear."):
            out["head.fc." + key.split(".", 1)[1]] = value
            continue
        m = re.fullmatch(r"features\.(\d+)\.(.+)", key)
        if m is None:
            raise KeyError(f"no conversion rule for key {key!r} (model {model_name})")
        try:
            prefix, kind = _v4_block(int(m.group(1)))
        except KeyError:
            raise KeyError(f"no conversion rule for key {key!r} (model {model_name})") from None
        out[_rename_branch(key, prefix, kind, m.group(2), model_name)] = value
    return out


# timm's top-level Inception-ResNet-v2 modules -> ours (module prefix, block kind)
_IRV2 = {
    "conv2d_1a": ("stem.conv1", None), "conv2d_2a": ("stem.conv2", None), "conv2d_2b": ("stem.conv3", None),
    "conv2d_3b": ("stem.conv4", None), "conv2d_4a": ("stem.conv5", None),
    "mixed_5b": ("stages.0.0", "mixed_5b"), "mixed_6a": ("stages.1.0", "reduction_a"),
    "mixed_7a": ("stages.2.0", "mixed_7a"),
    "block8": ("stages.2.10", "resnet_c"), "conv2d_7b": ("stages.2.11", None),
}
_IRV2_REPEATS = {
    "repeat": ("stages.0", "resnet_a"), "repeat_1": ("stages.1", "resnet_b"), "repeat_2": ("stages.2", "resnet_c"),
}


def _inception_resnet_v2(state_dict: dict, model_name: str) -> dict:
    out = {}
    for key, value in state_dict.items():
        if key.startswith("classif."):
            out["head.fc." + key.split(".", 1)[1]] = value
            continue
        if m := re.fullmatch(r"(repeat(?:_\d)?)\.(\d+)\.(.+)", key):
            stage, kind = _IRV2_REPEATS[m.group(1)]
            prefix, tail = f"{stage}.{int(m.group(2)) + 1}", m.group(3)  # a transition block comes first
        else:
            module, _, tail = key.partition(".")
            if module not in _IRV2:
                raise KeyError(f"no conversion rule for key {key!r} (model {model_name})")
            prefix, kind = _IRV2[module]
        out[_rename_branch(key, prefix, kind, tail, model_name)] = value
    return out


register_converter("inception_v4", "timm", _inception_v4)
register_converter("inception_resnet_v2", "timm", _inception_resnet_v2)
