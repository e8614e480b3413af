"""Key map for Inception-v3, the same for torchvision and timm (both keep Google's names:
``Conv2d_1a_3x3``, ``Mixed_5b.branch5x5_2``, ``AuxLogits``). A branch's layers ``branchNAME_K``
(K from 1; ``a``/``b`` for the halves of a split) become ``bNAME.(K-1)`` (``.a``/``.b``)."""

from . import KeyMap, register_converter

_P = r"((?:conv|bn)\.\w+)"  # the rest of a conv unit's key

_RULES = (
    (rf"Conv2d_(\d[a-z])_\w+?\.{_P}", r"features.conv\1.\2"),
    (rf"Mixed_(\d[a-z])\.branch_pool\.{_P}", r"features.mixed\1.pool.1.\2"),
) + tuple(
    rule
    for k in range(1, 6)
    for rule in (
        (rf"Mixed_(\d[a-z])\.branch(\w+?)_{k}([ab])\.{_P}", rf"features.mixed\1.b\2.{k - 1}.\3.\4"),
        (rf"Mixed_(\d[a-z])\.branch(\w+?)_{k}\.{_P}", rf"features.mixed\1.b\2.{k - 1}.\3"),
    )
) + (
    (rf"Mixed_(\d[a-z])\.branch([0-9x]+)\.{_P}", r"features.mixed\1.b\2.0.\3"),  # single-layer branches
    (rf"AuxLogits\.conv([01])\.{_P}", r"aux_heads.0.convs.\1.\2"),
    (r"AuxLogits\.fc\.(weight|bias)", r"aux_heads.0.fc.\1"),
    (r"fc\.(weight|bias)", r"head.fc.\1"),
)

_MAP = KeyMap(_RULES)
_NODES = ["Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"]

register_converter("inception_v3", "torchvision", _MAP, feature_nodes=_NODES)
register_converter("inception_v3", "timm", _MAP)
