"""Key maps for the searched-cell networks (NASNet-A Large, PNASNet-5 Large) from timm.

timm (after Cadene's port of the TensorFlow release) names each block's operations
``comb_iter_<i>_left``/``_right`` and a separable operation's parts ``separable_<n>``
(``depthwise_conv2d``, ``pointwise_conv2d``) and ``bn_sep_<n>``; ours are ``blocks.<i>.left``,
``sep<n>.depthwise``/``pointwise`` and ``bn<n>``. A cell's input adapters ``conv_prev_1x1`` and
``conv_1x1`` are our ``adapt_prev`` and ``adapt_cur``; NASNet's factorized reductions live on the
cell itself (``path_<n>.conv``, ``final_path_bn``), PNASNet's inside ``conv_prev_1x1``.
NASNet numbers its reduction cells apart (``reduction_cell_<i>``) as we do; PNASNet numbers all
cells together, so its reducing cells are recognised by their strided identity projection.
"""

from __future__ import annotations

import re

from . import BN, register_converter


# inside a cell: (pattern, replacement) applied in order to the key's tail
_CELL_RULES = (
    (r"comb_iter_(\d)_(left|right)\.separable_(\d)\.depthwise_conv2d\.weight", r"blocks.\1.\2.sep\3.depthwise.weight"),
    (r"comb_iter_(\d)_(left|right)\.separable_(\d)\.pointwise_conv2d\.weight", r"blocks.\1.\2.sep\3.pointwise.weight"),
    (rf"comb_iter_(\d)_(left|right)\.bn_sep_(\d)\.{BN}", r"blocks.\1.\2.bn\3.\4"),
    (r"comb_iter_(\d)_(left|right)\.conv\.weight", r"blocks.\1.\2.conv.weight"),  # pool or identity projections
    (rf"comb_iter_(\d)_(left|right)\.bn\.{BN}", r"blocks.\1.\2.bn.\3"),
    (r"(?:conv_prev_1x1\.)?path_(\d)\.conv\.weight", r"adapt_prev.conv\1.weight"),  # factorized reduction
    (rf"(?:conv_prev_1x1\.)?final_path_bn\.{BN}", r"adapt_prev.bn.\1"),
    (r"conv_prev_1x1\.conv\.weight", r"adapt_prev.conv.weight"),
    (rf"conv_prev_1x1\.bn\.{BN}", r"adapt_prev.bn.\1"),
    (r"conv_1x1\.conv\.weight", r"adapt_cur.conv.weight"),
    (rf"conv_1x1\.bn\.{BN}", r"adapt_cur.bn.\1"),
)
_COMPILED = [(re.compile(p), r) for p, r in _CELL_RULES]


def _convert(state_dict: dict, model_name: str, stem: str, cell_names: dict[str, str]) -> dict:
    out = {}
    cell_key = re.compile(r"(cell_stem_\d|reduction_cell_\d|cell_\d+)\.(.+)")
    for key, value in state_dict.items():
        if key.startswith(f"{stem}."):
            out["stem." + key[len(stem) + 1:]] = value
        elif key.startswith("last_linear."):
            out["head.fc." + key[len("last_linear."):]] = value
        elif m := cell_key.fullmatch(key):
            cell, tail = m.groups()
            if cell not in cell_names:
                raise KeyError(f"no conversion rule for key {key!r} (model {model_name}): unknown cell {cell!r}")
            for pattern, repl in _COMPILED:
                if t := pattern.fullmatch(tail):
                    out[f"cells.{cell_names[cell]}.{t.expand(repl)}"] = value
                    break
            else:
                raise KeyError(f"no conversion rule for key {key!r} (model {model_name})")
        else:
            raise KeyError(f"no conversion rule for key {key!r} (model {model_name})")
    return out


def _nasnet_cell_names(state_dict: dict) -> dict[str, str]:
    """NASNet numbers cells like ours: ``cell_stem_i`` -> ``stem_i``, ``reduction_cell_i`` -> ``reduce_i``."""
    names = {m.group(1) for k in state_dict if (m := re.match(r"(cell_stem_\d|reduction_cell_\d|cell_\d+)\.", k))}
    return {n: n.replace("cell_stem_", "stem_").replace("reduction_cell_", "reduce_") for n in names}


def _pnasnet_cell_names(state_dict: dict) -> dict[str, str]:
    """PNASNet counts all cells together; ours count reducing cells (those whose identity
    operation is a strided projection, ``comb_iter_4_right.conv``) apart."""
    cells = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"cell_(\d+)\.", k))})
    names = {"cell_stem_0": "stem_0", "cell_stem_1": "stem_1"}
    normal = reduce = 0
    for i in cells:
        if f"cell_{i}.comb_iter_4_right.conv.weight" in state_dict:
            names[f"cell_{i}"], reduce = f"reduce_{reduce}", reduce + 1
        else:
            names[f"cell_{i}"], normal = f"cell_{normal}", normal + 1
    return names


def _nasnet(state_dict: dict, model_name: str) -> dict:
    return _convert(state_dict, model_name, "conv0", _nasnet_cell_names(state_dict))


def _pnasnet(state_dict: dict, model_name: str) -> dict:
    return _convert(state_dict, model_name, "conv_0", _pnasnet_cell_names(state_dict))


register_converter("nasnet", "timm", _nasnet)
register_converter("pnasnet", "timm", _pnasnet)
