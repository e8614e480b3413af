"""The block-string notation: mobile networks written as compact strings of typed blocks.

A mobile network's architecture table (MobileNetV2, Sandler et al. 2018, arXiv:1801.04381,
Table 2; EfficientNet-B0, Tan & Le 2019, arXiv:1905.11946, Table 1) is a list of stages, each a
list of block strings such as ``ir_r2_k3_s2_e6_c24_se0.25``::

    <type>_<token>_<token>...

    type    ds   depthwise-separable block: depthwise kxk -> pointwise 1x1 (linear)
            ir   inverted residual: 1x1 expand -> depthwise kxk -> 1x1 linear projection
    rN      repeats: the block is stacked N times; only the first strides   (default 1)
    kN      depthwise kernel size, odd                                        (default 3)
    sN      stride of the first repeat                                        (default 1)
    eX      expansion ratio of the hidden width (``ir`` only, required there)
    cN      output channels                                                   (required)
    seX     squeeze-excitation with ``X * input channels`` hidden units       (default none)
    <act>   activation override, one of ``ACTIVATIONS`` (e.g. ``relu6``, ``silu``)
    noskip  no residual shortcut even where the shapes allow one

:func:`parse_block` turns a string into a frozen :class:`BlockSpec`, and
:meth:`BlockSpec.to_string` writes the canonical string back (``r``, ``k``, ``s``, ``e``,
``c`` always, the optional tokens only when set), so ``parse_block(spec.to_string()) == spec``
for every spec and ``parse_block(s).to_string() == s`` for every canonical ``s``. Malformed
strings raise :class:`BlockStringError` naming the bad token. The same encoding is the search
space for architecture search. The idea follows the block strings of the TensorFlow
EfficientNet/MnasNet code and timm; this parser and its checks are our own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch.nn as nn

BLOCK_TYPES = {
    "ds": "depthwise-separable: depthwise kxk -> (SE) -> pointwise 1x1, no expansion",
    "ir": "inverted residual: 1x1 expand -> depthwise kxk -> (SE) -> 1x1 linear projection",
}

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,  # = swish (Ramachandran et al. 2017, arXiv:1710.05941)
    "hardswish": nn.Hardswish,
    "gelu": nn.GELU,
}

# value tokens: key -> (field, kind); the longest key that prefixes a token wins ("se" before "s")
_KEYS = {"r": ("repeats", int), "k": ("kernel", int), "s": ("stride", int), "e": ("expansion", float),
         "c": ("out_chs", int), "se": ("se_ratio", float)}
_KEY_ORDER = sorted(_KEYS, key=len, reverse=True)
_INT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


class BlockStringError(ValueError):
    """A malformed block string or an invalid block specification."""


@dataclass(frozen=True)
class BlockSpec:
    """One row of a mobile architecture table: ``repeats`` copies of one block.

    ``se_ratio`` is relative to the block's *input* channels (as in MnasNet/EfficientNet);
    ``act`` overrides the network's activation; ``skip=False`` forbids the residual shortcut
    that a block otherwise has whenever its stride is 1 and its input and output widths match.
    """

    block: str
    out_chs: int
    repeats: int = 1
    kernel: int = 3
    stride: int = 1
    expansion: float = 1.0
    se_ratio: float | None = None
    act: str | None = None
    skip: bool = True

    def __post_init__(self) -> None:
        def bad(msg: str) -> BlockStringError:
            return BlockStringError(f"invalid block spec {self.block!r}: {msg}")

        if self.block not in BLOCK_TYPES:
            raise BlockStringError(f"unknown block type {self.block!r}; known types: {', '.join(BLOCK_TYPES)}")
        for name in ("out_chs", "repeats", "kernel", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"{name} must be a positive integer, got {value!r}")
        if self.kernel % 2 == 0:
            raise bad(f"kernel must be odd (same padding), got {self.kernel}")
        for name in ("expansion", "se_ratio"):
            value = getattr(self, name)
            if value is None and name == "se_ratio":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise bad(f"{name} must be a positive finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.block == "ds" and self.expansion != 1.0:
            raise bad(f"a ds block has no expansion (got {self.expansion:g}); use an ir block")
        if self.act is not None and self.act not in ACTIVATIONS:
            raise bad(f"unknown activation {self.act!r}; known: {', '.join(ACTIVATIONS)}")
        if not isinstance(self.skip, bool):
            raise bad(f"skip must be a bool, got {self.skip!r}")

    def to_string(self) -> str:
        """The canonical block string: ``type_r_k_s[_e]_c[_se][_act][_noskip]``."""
        tokens = [self.block, f"r{self.repeats}", f"k{self.kernel}", f"s{self.stride}"]
        if self.block == "ir":
            tokens.append(f"e{_fmt(self.expansion)}")
        tokens.append(f"c{self.out_chs}")
        if self.se_ratio is not None:
            tokens.append(f"se{_fmt(self.se_ratio)}")
        if self.act is not None:
            tokens.append(self.act)
        if not self.skip:
            tokens.append("noskip")
        return "_".join(tokens)

    def __str__(self) -> str:
        return self.to_string()


def _fmt(x: float) -> str:
    """Shortest text that reads back as the same float (``6`` rather than ``6.0``)."""
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def parse_block(text: str) -> BlockSpec:
    """Parse one block string such as ``ir_r2_k3_s2_e6_c24_se0.25`` into a :class:`BlockSpec`."""
    if not isinstance(text, str):
        raise BlockStringError(f"a block string must be a str, got {type(text).__name__} {text!r}")
    head, *tokens = text.split("_")
    if head not in BLOCK_TYPES:
        raise BlockStringError(f"{text!r}: unknown block type {head!r}; known types: {', '.join(BLOCK_TYPES)}")
    values: dict = {}

    def put(field: str, value, token: str) -> None:
        if field in values:
            raise BlockStringError(f"{text!r}: duplicate {field} in token {token!r}")
        values[field] = value

    for token in tokens:
        if token == "":
            raise BlockStringError(f"{text!r}: empty token (doubled, leading or trailing '_')")
        if token == "noskip":
            put("skip", False, token)
            continue
        if token in ACTIVATIONS:
            put("act", token, token)
            continue
        key = next((k for k in _KEY_ORDER if token.startswith(k)), None)
        if key is None or token.isalpha():
            raise BlockStringError(f"{text!r}: unknown token {token!r}; tokens are r, k, s, e, c, se followed by a "
                                   f"number, noskip, or an activation ({', '.join(ACTIVATIONS)})")
        field, kind = _KEYS[key]
        raw = token[len(key):]
        pattern = _INT if kind is int else _FLOAT
        if not pattern.fullmatch(raw):
            what = "a whole number" if kind is int else "a number"
            raise BlockStringError(f"{text!r}: {field} in token {token!r} must be {what}, got {raw!r}")
        value = kind(raw)
        if value == 0:
            raise BlockStringError(f"{text!r}: {field} in token {token!r} must not be zero")
        if field == "kernel" and value % 2 == 0:
            raise BlockStringError(f"{text!r}: kernel in token {token!r} must be odd (same padding)")
        put(field, value, token)
    if "out_chs" not in values:
        raise BlockStringError(f"{text!r}: missing output channels (a cN token)")
    if head == "ir" and "expansion" not in values:
        raise BlockStringError(f"{text!r}: an ir block needs an expansion ratio (an eX token)")
    if head == "ds" and "expansion" in values:
        raise BlockStringError(f"{text!r}: a ds block takes no expansion token; use an ir block")
    return BlockSpec(head, **values)


Stages = tuple[tuple[BlockSpec, ...], ...]


def parse_stages(stages: Iterable[Sequence[str]]) -> Stages:
    """Parse a stage list (a list of lists of block strings) into a tuple of tuples of specs.

    Already-parsed :class:`BlockSpec` entries are passed through, so parsed and written forms mix.
    """
    if isinstance(stages, str):
        raise BlockStringError("stages must be a list of lists of block strings, got one string")
    out = []
    for i, stage in enumerate(stages):
        if isinstance(stage, (str, BlockSpec)):
            raise BlockStringError(f"stage {i} must be a list of block strings, got {stage!r}")
        specs = []
        for j, block in enumerate(stage):
            if isinstance(block, BlockSpec):
                specs.append(block)
                continue
            try:
                specs.append(parse_block(block))
            except BlockStringError as e:
                raise BlockStringError(f"stage {i}, block {j}: {e}") from None
        if not specs:
            raise BlockStringError(f"stage {i} is empty")
        out.append(tuple(specs))
    if not out:
        raise BlockStringError("no stages given")
    return tuple(out)


def format_stages(stages: Iterable[Iterable[BlockSpec]]) -> list[list[str]]:
    """The stage list written back as lists of canonical block strings (JSON-friendly)."""
    return [[spec.to_string() for spec in stage] for stage in stages]
