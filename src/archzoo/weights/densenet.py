"""Key maps for DenseNet from torchvision.

torchvision keeps everything in one ``features`` sequential with 1-based ``denseblockN``,
``denselayerN`` and ``transitionN``; ours has ``stem``, ``blocks``, ``transitions`` and ``norm``,
counted from 0, with each BN inside a ``NormAct`` (``.bn``). torchvision's downloadable
checkpoints still use the old names ``norm.1``/``conv.1``, accepted here too.
"""

from __future__ import annotations

import re

from . import BN, KeyMap, StateDict, register_converter


_TV = KeyMap((
    (r"features\.conv0\.weight", r"stem.conv.conv.weight"),
    (rf"features\.norm0\.{BN}", r"stem.conv.bn.\1"),
    (rf"features\.denseblock(\d+)\.denselayer(\d+)\.norm\.?(\d)\.{BN}", r"blocks.\1.layers.\2.norm\3.bn.\4"),
    (r"features\.denseblock(\d+)\.denselayer(\d+)\.conv\.?(\d)\.weight", r"blocks.\1.layers.\2.conv\3.weight"),
    (rf"features\.transition(\d+)\.norm\.{BN}", r"transitions.\1.norm.bn.\2"),
    (r"features\.transition(\d+)\.conv\.weight", r"transitions.\1.conv.weight"),
    (rf"features\.norm5\.{BN}", r"norm.bn.\1"),
    (r"classifier\.(weight|bias)", r"head.fc.\1"),
), shift=(("blocks", -1), ("transitions", -1)))

_LAYER = re.compile(r"\.layers\.(\d+)\.")


def _torchvision(state_dict: StateDict, model_name: str) -> StateDict:
    out = _TV(state_dict, model_name)
    # torchvision counts dense layers from 1 as well
    return {_LAYER.sub(lambda m: f".layers.{int(m.group(1)) - 1}.", k): v for k, v in out.items()}


# torchvision graph nodes matching our feature_info: the stem ReLU, dense blocks 1-3, the final ReLU
_NODES = ["features.relu0", "features.denseblock1.cat", "features.denseblock2.cat", "features.denseblock3.cat", "relu"]

register_converter("densenet", "torchvision", _torchvision, feature_nodes=_NODES)
