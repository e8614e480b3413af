"""Searched cells: the building blocks of NASNet-A and PNASNet-5.

* NASNet — Zoph et al. 2017, "Learning Transferable Architectures for Scalable Image
  Recognition", arXiv:1707.07012. A controller searched a *cell* (a small graph of operations)
  instead of a whole network; the network is a stack of copies of two cells, a normal cell
  that keeps the resolution and a reduction cell that halves it.
* PNASNet — Liu et al. 2017, "Progressive Neural Architecture Search", arXiv:1712.00559. The
  same search space explored progressively, simplest cells first; one cell serves as both
  normal and (with stride 2) reduction cell.

A cell takes two inputs, the outputs of the previous cell and of the one before it. Each of its
five *blocks* picks two hidden states (the two inputs or earlier blocks' outputs), applies one
operation to each and adds the results; the cell's output concatenates chosen states. A
:class:`Genotype` writes that down as a table, :class:`Cell` builds it, :class:`CellStack`
wires the cells together.

The operations are separable convolutions (Sifre 2014; Chollet 2016, arXiv:1610.02357) applied
twice, 3x3 pooling, the identity and (AmoebaNet-A, Real et al. 2019, arXiv:1802.01548) a
bottlenecked 1x7-then-7x1 convolution. Like the TensorFlow originals (and timm's port, whose
outputs these match exactly), convolutions and pools use TensorFlow's "SAME" padding: strided
ones pad asymmetrically (more at the bottom/right). One quirk of timm's port is kept on
purpose: a strided "SAME" average pool counts its zero padding in the average, while unstrided
average pools do not.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import ConvNormAct

NasBatchNorm = partial(nn.BatchNorm2d, eps=1e-3)  # TensorFlow's batch-norm epsilon


# --- TensorFlow "SAME" padding -----------------------------------------------------------------

def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(before, after)`` giving ``ceil(size / stride)`` outputs."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel_size: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad ``x`` for a "SAME" window of ``kernel_size`` and ``stride`` (possibly asymmetric)."""
    top, bottom = same_padding(x.shape[-2], kernel_size, stride)
    left, right = same_padding(x.shape[-1], kernel_size, stride)
    return F.pad(x, (left, right, top, bottom), value=value)


def _is_static(kernel_size: int, stride: int) -> bool:
    """Unstrided odd kernels pad symmetrically whatever the input size."""
    return stride == 1 and kernel_size % 2 == 1


class SameConv2d(nn.Conv2d):
    """A bias-free square convolution with TensorFlow "SAME" padding."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1):
        static = _is_static(kernel_size, stride)
        super().__init__(in_chs, out_chs, kernel_size, stride, kernel_size // 2 if static else 0, groups=groups, bias=False)
        self.dynamic = not static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


class SamePool2d(nn.Module):
    """Max or average pooling with TensorFlow "SAME" padding.

    Max pooling pads with ``-inf`` (padding never wins). Unstrided average pooling averages only
    real pixels; strided average pooling pads with zeros that count in the average (timm's port).
    """

    def __init__(self, kind: str, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        if kind not in ("max", "avg"):
            raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")
        self.kind, self.kernel_size, self.stride = kind, kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        if self.kind == "max":
            return F.max_pool2d(pad_same(x, k, s, value=float("-inf")), k, s)
        if _is_static(k, s):
            return F.avg_pool2d(x, k, s, padding=k // 2, count_include_pad=False)
        return F.avg_pool2d(pad_same(x, k, s), k, s)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel_size={self.kernel_size}, stride={self.stride}"


# --- operations --------------------------------------------------------------------------------

class SeparableConv2d(nn.Sequential):
    """Depthwise ``k x k`` convolution (one filter per channel) then pointwise 1x1 mixing
    (Sifre 2014; Chollet 2016, arXiv:1610.02357), both bias-free."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.depthwise = SameConv2d(in_chs, in_chs, kernel_size, stride, groups=in_chs)
        self.pointwise = nn.Conv2d(in_chs, out_chs, 1, bias=False)


class SepConv(nn.Module):
    """The searched "k x k separable" operation: ReLU -> separable conv -> BN, applied twice;
    only the first strides. Its width changes (stem cells only) in the first separable conv."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.act1 = nn.ReLU()  # not in place: the cell input feeds other operations too
        self.sep1 = SeparableConv2d(in_chs, out_chs, kernel_size, stride)
        self.bn1 = NasBatchNorm(out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.sep2 = SeparableConv2d(out_chs, out_chs, kernel_size)
        self.bn2 = NasBatchNorm(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.sep1(self.act1(x)))
        return self.bn2(self.sep2(self.act2(x)))


class DilConv(nn.Module):
    """The searched "k x k dilated convolution" (NASNet's search space), in DARTS's form (Liu et al.
    2018, arXiv:1806.09055): ReLU -> depthwise k x k with dilation 2 -> pointwise 1x1 -> BN, "SAME"
    padded for the dilated kernel's extent ``2k - 1``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, dilation: int = 2):
        super().__init__()
        self.extent, self.stride = dilation * (kernel_size - 1) + 1, stride
        self.act = nn.ReLU()
        self.depthwise = nn.Conv2d(in_chs, in_chs, kernel_size, stride, dilation=dilation, groups=in_chs, bias=False)
        self.pointwise = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn = NasBatchNorm(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(self.act(x), self.extent, self.stride)
        return self.bn(self.pointwise(self.depthwise(x)))


class ReluConvBn(nn.Sequential):
    """ReLU -> 1x1 convolution -> BN: adapts a cell input's width (children ``act``/``conv``/``bn``)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)
        self.bn = NasBatchNorm(out_chs)


class FactorizedReduction(nn.Module):
    """Halve the resolution of a cell input without losing half its pixels: ReLU, then two
    strided 1x1 convolutions, one on the even and one on the odd pixel grid (shifted by one,
    zero-padded at the end), each giving half the channels, concatenated -> BN (Zoph et al. 2017)."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.act = nn.ReLU()
        self.conv1 = nn.Conv2d(in_chs, out_chs // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(in_chs, out_chs - out_chs // 2, 1, bias=False)
        self.bn = NasBatchNorm(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        shifted = F.pad(x, (-1, 1, -1, 1))
        return self.bn(torch.cat([self.conv1(x[..., ::2, ::2]), self.conv2(shifted[..., ::2, ::2])], 1))


class Conv1x7x7x1(nn.Module):
    """The "1x7 then 7x1 convolution" of the NASNet search space in the bottlenecked form of
    AmoebaNet's TensorFlow release (Real et al. 2019): ReLU -> 1x1 to ``out_chs // 4`` -> BN ->
    ReLU -> 1x7 -> BN -> ReLU -> 7x1 -> BN -> ReLU -> 1x1 to ``out_chs`` -> BN, the 1x7 striding
    along the width and the 7x1 along the height ("SAME" padding), all bias-free."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        mid = max(1, out_chs // 4)
        self.pre = ReluConvBn(in_chs, mid)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_1x7 = nn.Conv2d(mid, mid, (1, 7), (1, stride), padding=(0, 3) if stride == 1 else 0, bias=False)
        self.bn1 = NasBatchNorm(mid)
        self.act2 = nn.ReLU(inplace=True)
        self.conv_7x1 = nn.Conv2d(mid, mid, (7, 1), (stride, 1), padding=(3, 0) if stride == 1 else 0, bias=False)
        self.bn2 = NasBatchNorm(mid)
        self.post = ReluConvBn(mid, out_chs)
        self.post.act.inplace = True  # reads bn2's output, used nowhere else
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.pre(x))
        if self.stride > 1:
            x = F.pad(x, same_padding(x.shape[-1], 7, self.stride))
        x = self.act2(self.bn1(self.conv_1x7(x)))
        if self.stride > 1:
            x = F.pad(x, (0, 0, *same_padding(x.shape[-2], 7, self.stride)))
        return self.post(self.bn2(self.conv_7x1(x)))


_OP = re.compile(r"(sep|dil|max|avg)_(\d)x\2|identity|conv_1x7_7x1")


def make_op(name: str, in_chs: int, out_chs: int, stride: int = 1) -> nn.Module:
    """Build a searched operation: ``sep_KxK``, ``dil_KxK`` (:class:`DilConv`), ``max_3x3``, ``avg_3x3``, ``identity`` or
    ``conv_1x7_7x1`` (:class:`Conv1x7x7x1`).

    A pool or identity that must change the width or stride gets a 1x1 projection: pool -> conv
    -> BN, and ReLU -> strided conv -> BN for the identity (PNASNet's stem and reduction cells).
    """
    m = _OP.fullmatch(name)
    if m is None:
        raise ValueError(f"unknown cell operation {name!r}; expected sep_KxK, dil_KxK, max_3x3, avg_3x3, identity or "
                         "conv_1x7_7x1")
    if name == "conv_1x7_7x1":
        return Conv1x7x7x1(in_chs, out_chs, stride)
    kind = m.group(1)
    if kind == "sep":
        return SepConv(in_chs, out_chs, int(m.group(2)), stride)
    if kind == "dil":  # dilated separable, once
        return DilConv(in_chs, out_chs, int(m.group(2)), stride)
    if kind is None:  # identity
        return nn.Identity() if stride == 1 and in_chs == out_chs else ReluConvBn(in_chs, out_chs, stride)
    pool = SamePool2d(kind, int(m.group(2)), stride)
    if in_chs == out_chs:
        return pool
    return nn.Sequential(OrderedDict(pool=pool, conv=nn.Conv2d(in_chs, out_chs, 1, bias=False), bn=NasBatchNorm(out_chs)))


# --- cells -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Genotype:
    """A searched cell as a table.

    ``blocks``: one ``((op, input), (op, input))`` pair per block; inputs index the hidden states:
    0 is the cell before the previous one, 1 the previous cell, 2 + i the output of block i.
    ``concat``: the states concatenated into the cell's output. In a reduction cell the operations
    on the two cell inputs stride by 2.
    """

    blocks: tuple[tuple[tuple[str, int], tuple[str, int]], ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for i, pair in enumerate(self.blocks):
            for op, src in pair:
                if not 0 <= src < 2 + i:
                    raise ValueError(f"block {i} reads state {src}, which does not exist yet")
                if not _OP.fullmatch(op):
                    raise ValueError(f"block {i}: unknown operation {op!r}")
        if not all(0 <= s < 2 + len(self.blocks) for s in self.concat):
            raise ValueError(f"concat {self.concat} names states that do not exist")


class CellBlock(nn.Module):
    """``left(states[i]) + right(states[j])``: one block of a searched cell."""

    def __init__(self, left: nn.Module, i: int, right: nn.Module, j: int):
        super().__init__()
        self.left, self.right = left, right
        self.i, self.j = i, j

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return self.left(states[self.i]) + self.right(states[self.j])


class Cell(nn.Module):
    """A searched cell: adapt both inputs to ``chs`` channels, run the genotype's blocks, concat.

    ``adapt_prev`` turns the input from two cells back into state 0 (``ReluConvBn``, or a
    :class:`FactorizedReduction` when it has twice the resolution; ``None`` uses it as it is),
    ``adapt_cur`` (``ReluConvBn``) turns the previous cell's output into state 1. ``hold_prev``:
    the next cell reads this cell's earlier input, not this cell's input (see :class:`CellSpec`).
    """

    def __init__(self, genotype: Genotype, prev_chs: int, cur_chs: int, chs: int, reduction: bool = False,
                 adapt_prev: str | None = "conv", hold_prev: bool = False):
        super().__init__()
        self.hold_prev = hold_prev
        if adapt_prev == "conv":
            self.adapt_prev = ReluConvBn(prev_chs, chs)
        elif adapt_prev == "factorized":
            self.adapt_prev = FactorizedReduction(prev_chs, chs)
        elif adapt_prev is None:
            self.adapt_prev = nn.Identity()
        else:
            raise ValueError(f"adapt_prev must be 'conv', 'factorized' or None, got {adapt_prev!r}")
        self.adapt_cur = ReluConvBn(cur_chs, chs)
        state_chs = [chs if adapt_prev else prev_chs, chs]
        blocks = []
        for (op_a, i), (op_b, j) in genotype.blocks:
            stride_a = 2 if reduction and i < 2 else 1
            stride_b = 2 if reduction and j < 2 else 1
            left = make_op(op_a, state_chs[i], chs, stride_a)
            right = make_op(op_b, state_chs[j], chs, stride_b)
            blocks.append(CellBlock(left, i, right, j))
            state_chs.append(chs)
        self.blocks = nn.ModuleList(blocks)
        self.concat = genotype.concat
        self.reduction = reduction
        # a concatenated state of another width (an unadapted input: a CIFAR net's first cell reads
        # the stem's output) is projected by 1x1 conv -> BN (TensorFlow's stride-1 factorized reduction)
        self.concat_proj = nn.ModuleDict({
            str(s): nn.Sequential(OrderedDict(conv=nn.Conv2d(state_chs[s], chs, 1, bias=False), bn=NasBatchNorm(chs)))
            for s in genotype.concat if state_chs[s] != chs})
        self.out_chs = chs * len(genotype.concat)

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        states = [self.adapt_prev(x_prev), self.adapt_cur(x)]
        for block in self.blocks:
            states.append(block(states))
        if self.concat_proj:
            return torch.cat([self.concat_proj[str(s)](states[s]) if str(s) in self.concat_proj else states[s]
                              for s in self.concat], 1)
        return torch.cat([states[s] for s in self.concat], 1)

    def forward_state(self, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, x_prev) -> (cell(x, x_prev), input of the next cell's x_prev)``; a tensor (the stem
        output, before the first cell) stands for both inputs."""
        x, x_prev = state if isinstance(state, tuple) else (state, state)
        return self(x, x_prev), (x_prev if self.hold_prev else x)


@dataclass(frozen=True)
class CellSpec:
    """One cell of a network: its name, genotype, width, whether it reduces, and ``hold_prev``:
    the next cell reads the same earlier input as this one rather than this one's input (NASNet's
    reduction cells, "skip reduction layer input" in the TensorFlow original)."""

    name: str
    genotype: Genotype
    chs: int
    reduction: bool = False
    hold_prev: bool = False


class CellStack(nn.ModuleDict):
    """Cells wired in sequence, each reading the previous cell's output and the one before it;
    the first cell reads the stem output as both. An input at twice the cell's resolution is
    adapted by a :class:`FactorizedReduction`.

    ``taps`` lists, for each resolution but the last, the last cell's output after ReLU as
    ``(channels, stride, module)``: it is captured at the next cell's ``adapt_cur.act``, a module
    that runs exactly once per forward.
    """

    def __init__(self, specs: list[CellSpec], stem_chs: int, stem_stride: int = 2):
        super().__init__()
        prev = cur = (stem_chs, stem_stride)
        self.taps: list[tuple[int, int, str]] = []
        for idx, spec in enumerate(specs):
            adapt = None if idx == 0 else "factorized" if prev[1] != cur[1] else "conv"
            cell = Cell(spec.genotype, prev[0], cur[0], spec.chs, spec.reduction, adapt, spec.hold_prev)
            if spec.reduction and idx > 0:
                self.taps.append((cur[0], cur[1], f"{spec.name}.adapt_cur.act"))
            self[spec.name] = cell
            if not spec.hold_prev:
                prev = cur
            cur = (cell.out_chs, cur[1] * (2 if spec.reduction else 1))
        self.out_chs, self.out_stride = cur

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = x
        for cell in self.values():
            state = cell.forward_state(state)
        return state[0]


def nas_stem(in_chans: int, out_chs: int) -> ConvNormAct:
    """The networks' first layer: an unpadded strided 3x3 convolution and BN, no activation
    (each cell starts with its own ReLU)."""
    return ConvNormAct(in_chans, out_chs, 3, stride=2, padding=0, norm_layer=NasBatchNorm, act_layer=None)
