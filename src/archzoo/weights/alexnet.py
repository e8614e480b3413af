"""Key map for AlexNet (torchvision's ``features.N`` / ``classifier.N`` sequential indices)."""

from . import KeyMap, register_converter

# torchvision index of each convolution in ``features`` -> our stage and name
_CONVS = {0: "stages.0.conv1", 3: "stages.1.conv2", 6: "stages.2.conv3", 8: "stages.2.conv4", 10: "stages.2.conv5"}

_TV = KeyMap(
    tuple((rf"features\.{i}\.(weight|bias)", rf"{ours}.conv.\1") for i, ours in _CONVS.items())
    + (
        (r"classifier\.1\.(weight|bias)", r"head.pre_logits.fc1.\1"),
        (r"classifier\.4\.(weight|bias)", r"head.pre_logits.fc2.\1"),
        (r"classifier\.6\.(weight|bias)", r"head.fc.\1"),
    )
)

# ReLUs after conv1, conv2, conv5 and the last max pool: our feature_info
register_converter("alexnet", "torchvision", _TV, feature_nodes=["features.1", "features.4", "features.11", "features.12"])
