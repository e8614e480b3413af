"""Key map for the pre-activation ResNets from timm's ``resnetv2``.

timm keeps blocks under ``stages.N.blocks.M`` and its norm layers fuse the activation
(``norm1.weight``); ours group them as ``stages.N.M.norm1.bn``. timm's classifier is a 1x1
convolution; ours is a linear layer, so its weight loses the two trailing unit dimensions.
"""

from . import BN, KeyMap, register_converter


_KEYS = KeyMap((
    (r"stem\.conv\.weight", r"stem.conv.weight"),
    (r"stages\.(\d)\.blocks\.(\d+)\.downsample\.conv\.weight", r"stages.\1.\2.shortcut.conv.weight"),
    (rf"stages\.(\d)\.blocks\.(\d+)\.norm(\d)\.{BN}", r"stages.\1.\2.norm\3.bn.\4"),
    (r"stages\.(\d)\.blocks\.(\d+)\.conv(\d)\.weight", r"stages.\1.\2.conv\3.weight"),
    (rf"norm\.{BN}", r"norm.bn.\1"),
    (r"head\.fc\.(weight|bias)", r"head.fc.\1"),
))


def _from_timm(state_dict, model_name=""):
    out = _KEYS(state_dict, model_name)
    if out.get("head.fc.weight") is not None and out["head.fc.weight"].ndim == 4:
        out["head.fc.weight"] = out["head.fc.weight"].flatten(1)
    return out


register_converter("preact_resnet", "timm", _from_timm)
