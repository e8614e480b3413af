"""Key maps for the ResNet family (ResNet, ResNeXt, Wide ResNet, SE-ResNet/ResNeXt, SENet-154).

torchvision and timm name a block's layers ``conv1``/``bn1`` ...; ours group each conv with its
norm as ``conv1.conv``/``conv1.bn``. timm's ``legacy_senet154`` names the stem ``layer0`` and the
classifier ``last_linear``.
"""

from . import BN, KeyMap, register_converter


_COMMON = (
    (r"conv1\.weight", r"stem.conv.conv.weight"),
    (rf"bn1\.{BN}", r"stem.conv.bn.\1"),
    (r"layer(\d)\.(\d+)\.conv(\d)\.weight", r"stages.\1.\2.conv\3.conv.weight"),
    (rf"layer(\d)\.(\d+)\.bn(\d)\.{BN}", r"stages.\1.\2.conv\3.bn.\4"),
    (r"layer(\d)\.(\d+)\.downsample\.0\.weight", r"stages.\1.\2.shortcut.conv.weight"),
    (rf"layer(\d)\.(\d+)\.downsample\.1\.{BN}", r"stages.\1.\2.shortcut.bn.\3"),
    (r"fc\.(weight|bias)", r"head.fc.\1"),
)
_SE = ((r"layer(\d)\.(\d+)\.se\.(fc\d)\.(weight|bias)", r"stages.\1.\2.se.\3.\4"),)
_LEGACY_SENET = (
    (r"layer0\.conv(\d)\.weight", r"stem.conv\1.conv.weight"),
    (rf"layer0\.bn(\d)\.{BN}", r"stem.conv\1.bn.\2"),
    (r"layer(\d)\.(\d+)\.se_module\.(fc\d)\.(weight|bias)", r"stages.\1.\2.se.\3.\4"),
    (r"last_linear\.(weight|bias)", r"head.fc.\1"),
)


_TV = KeyMap(_COMMON, shift=(("stages", -1),))  # references count stages from 1 (layer1)
_LEGACY = KeyMap(_LEGACY_SENET + _COMMON + _SE, shift=(("stages", -1),))

_NODES = ["relu", "layer1", "layer2", "layer3", "layer4"]  # torchvision nodes matching our feature_info

# one architecture (archzoo's ResNet class) for ResNet, ResNeXt, Wide ResNet, SE-ResNet/ResNeXt and
# SENet-154; timm's ResNets use torchvision's names, and its SE blocks and legacy SENet only add rules
register_converter("resnet", "torchvision", _TV, feature_nodes=_NODES)
register_converter("resnet", "timm", _LEGACY)
