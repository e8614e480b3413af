"""Key maps for CSPNet (CSPResNet-50, CSPDarknet-53) from timm.

Our stages mirror timm's module names (``conv_down``, ``conv_exp``, ``blocks``,
``conv_transition_b``, ``conv_transition``; blocks ``conv1``..``conv3``), so every key keeps its
name; the table still lists each kind so that an unexpected key fails loudly.
"""

from . import KeyMap, register_converter

_BN = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"
_CONV = rf"(?:conv\.weight|bn\.{_BN})"

_TIMM = KeyMap((
    (rf"(stem\.conv1\.{_CONV})", r"\1"),
    (rf"(stages\.\d+\.(?:conv_down|conv_exp|conv_transition_b|conv_transition)\.{_CONV})", r"\1"),
    (rf"(stages\.\d+\.blocks\.\d+\.conv[123]\.{_CONV})", r"\1"),
    (r"(head\.fc\.(?:weight|bias))", r"\1"),
))

register_converter("cspnet", "timm", _TIMM)
