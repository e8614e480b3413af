"""Key maps for VGG. torchvision numbers the layers of one flat ``features`` sequence (conv,
[batch norm,] ReLU, ..., max pool); ours are named per stage (``stages.S.convJ``), so the map is
generated from the variant's configuration."""

from __future__ import annotations

from . import BN, KeyMap, StateDict, register_converter



def _layout(name: str) -> tuple[list[tuple[int, str, bool]], list[str]]:
    """torchvision's index of every convolution with our name for it, and the graph nodes of our feature maps."""
    from ..registry import model_card

    kwargs = model_card(name).kwargs
    batch_norm = kwargs.get("batch_norm", False)
    convs, nodes, i = [], [], 0
    for s, depth in enumerate(kwargs["depths"]):
        if s > 0:
            i += 1  # the max pool opening the stage
        for j in range(depth):
            convs.append((i, f"stages.{s}.conv{j + 1}", batch_norm))
            i += 3 if batch_norm else 2
        nodes.append(f"features.{i - 1}")  # the stage's last ReLU
    nodes.append(f"features.{i}")  # the final max pool
    return convs, nodes


def _keymap(name: str) -> KeyMap:
    rules = []
    for i, ours, batch_norm in _layout(name)[0]:
        rules.append((rf"features\.{i}\.(weight|bias)", rf"{ours}.conv.\1"))
        if batch_norm:
            rules.append((rf"features\.{i + 1}\.{BN}", rf"{ours}.bn.\1"))
    rules += [
        (r"classifier\.0\.(weight|bias)", r"head.pre_logits.fc1.\1"),
        (r"classifier\.3\.(weight|bias)", r"head.pre_logits.fc2.\1"),
        (r"classifier\.6\.(weight|bias)", r"head.fc.\1"),
    ]
    return KeyMap(tuple(rules))


def _convert(state_dict: StateDict, name: str) -> StateDict:
    return _keymap(name)(state_dict, name)


register_converter("vgg", "torchvision", _convert, feature_nodes=lambda name: _layout(name)[1])
