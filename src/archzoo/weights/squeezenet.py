"""Key maps for SqueezeNet. torchvision numbers one flat ``features`` sequence (conv, ReLU, pool,
fire, ...); ours groups the fire modules into stages, so the map follows the version's layout."""

from __future__ import annotations

from . import KeyMap, StateDict, register_converter


def _layout(name: str) -> tuple[dict[int, str], list[str]]:
    """torchvision's index of every fire module with our name for it, and our feature maps' graph nodes."""
    from ..models.squeezenet import SQUEEZENET
    from ..registry import model_card

    stages = SQUEEZENET[model_card(name).kwargs["version"]]["stages"]
    fires, nodes, i, fire_idx = {}, ["features.1"], 2, 2  # 0: stem conv, 1: its ReLU
    for s, stage in enumerate(stages):
        i += 1  # the max pool opening the stage
        for _ in stage:
            fires[i] = f"stages.{s}.fire{fire_idx}"
            i, fire_idx = i + 1, fire_idx + 1
        nodes.append(f"features.{i - 1}")
    return fires, nodes


def _convert(state_dict: StateDict, name: str) -> StateDict:
    rules = [(r"features\.0\.(weight|bias)", r"stem.conv.\1")]
    for i, ours in _layout(name)[0].items():
        rules += [
            (rf"features\.{i}\.squeeze\.(weight|bias)", rf"{ours}.squeeze.conv.\1"),
            (rf"features\.{i}\.expand(1x1|3x3)\.(weight|bias)", rf"{ours}.expand.e\1.conv.\2"),
        ]
    rules.append((r"classifier\.1\.(weight|bias)", r"head.fc.\1"))
    return KeyMap(tuple(rules))(state_dict, name)


register_converter("squeezenet", "torchvision", _convert, feature_nodes=lambda name: _layout(name)[1])
