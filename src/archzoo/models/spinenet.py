"""SpineNet — Du et al. 2019, "SpineNet: Learning Scale-Permuted Backbone for Recognition and
Localization", arXiv:1912.05027 (CVPR 2020).

A classification backbone shrinks its maps monotonically and a detector bolts a decoder (FPN)
onto it to recover the fine levels. SpineNet drops that split: one network whose intermediate
maps go up and down in scale in any order ("scale-permuted") and whose blocks read two earlier
blocks of any level ("cross-scale connections"), found by neural architecture search on COCO
with the blocks of ResNet-50. Its output blocks are the pyramid L3-L7 itself: no FPN.

SpineNet-49: a stem (7x7 stride-2 convolution, 3x3 max pool, two L2 bottleneck blocks), then 15
blocks from :data:`SPINENET49_BLOCKS`, each ``(level, block type, the two parent blocks,
is_output)``; blocks 0 and 1 are the stem's. A block of level ``l`` has ``FILTERS[l]`` filters
(64, 128, 256, 256, 256, 256 for L2-L7; a bottleneck's output is 4x that) and works at stride
``2^l``. Cross-scale connections (Figure 3) resample each parent to the block: a 1x1
convolution to ``alpha`` (0.5) times the parent's filters, then to the target scale (down: a
stride-2 3x3 convolution, then max pooling; up: nearest upsampling), then a 1x1 convolution to
the block's input width; the two are added (the output blocks also add the earlier blocks of
their level that nothing reads), activated and run through the block. Each output block gets a
1x1 convolution to 256 channels: P3-P7.

ImageNet classification (the paper's classification experiments): P3-P7 nearest-upsampled to P3
and averaged, global average pooling, a linear classifier. ``spinenet49`` is that classifier; as
a backbone (``features_only``) it gives P3-P7 (strides 8-128, 256 channels each), which the
RetinaNet of :mod:`archzoo.detection.spinenet` reads without a neck. SpineNet-49S/96/143/190 are
the same block list with other ``filter_scale``, ``endpoint_chs``, ``alpha`` and ``repeats``
(:data:`SPINENET_SCALING`).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..features import FeatureInfo, FeatureStage, feature
from ..layers import BasicBlock, Bottleneck, ConvNormAct, create_norm_layer, linear_drop_path, projection_shortcut
from ..registry import family_card, register_variants
from .base import Classifier, init_weights

#: filters of a block at each level (SpineNet-49's width; a bottleneck outputs 4x)
FILTERS = {2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}


class BlockSpec(NamedTuple):
    """One block of the scale-permuted network: its level (stride ``2^level``), ``"bottleneck"``
    or ``"residual"``, the indices of its two parent blocks (0 and 1 are the stem's), and whether
    it is the output of its level."""

    level: int
    block: str
    parents: tuple[int, int]
    is_output: bool


#: SpineNet-49's scale permutation and cross-scale connections, as the paper's code lists them
SPINENET49_BLOCKS = tuple(BlockSpec(*b) for b in (
    (2, "bottleneck", (0, 1), False),
    (4, "residual", (0, 1), False),
    (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False),
    (6, "residual", (3, 5), False),
    (4, "bottleneck", (3, 5), False),
    (5, "residual", (6, 7), False),
    (7, "residual", (6, 8), False),
    (5, "bottleneck", (8, 9), False),
    (5, "bottleneck", (8, 10), False),
    (4, "bottleneck", (5, 10), True),
    (3, "bottleneck", (4, 10), True),
    (5, "bottleneck", (7, 12), True),
    (7, "bottleneck", (5, 14), True),
    (6, "bottleneck", (12, 14), True),
))

#: the family's scaling: width multiplier, endpoint width, resampling alpha, block repeats
SPINENET_SCALING = {
    "49S": dict(filter_scale=0.65, endpoint_chs=128, alpha=0.5, repeats=1),
    "49": dict(filter_scale=1.0, endpoint_chs=256, alpha=0.5, repeats=1),
    "96": dict(filter_scale=1.0, endpoint_chs=256, alpha=0.5, repeats=2),
    "143": dict(filter_scale=1.0, endpoint_chs=256, alpha=1.0, repeats=3),
    "190": dict(filter_scale=1.3, endpoint_chs=512, alpha=1.0, repeats=4),
}


def _level_size(l2_size, level: int) -> list[int]:
    """The side lengths of level ``level`` (``ceil(H / 2^level)``) from those of level 2."""
    return [-(-int(s) // 2 ** (level - 2)) for s in l2_size]


class Resample(nn.Module):
    """A cross-scale connection (Figure 3): ``1x1 -> alpha * filters``, to the target level, ``1x1
    -> target width`` (norm, no activation). Down ``2^k``: a stride-2 3x3 convolution, then for
    ``k > 1`` one max pool of stride ``2^(k-1)`` (3x3 for 2, else 5x5, as the reference); up:
    nearest-neighbour resizing to the level's size ``ceil(H / 2^level)``."""

    def __init__(self, in_chs: int, in_filters: int, in_level: int, out_chs: int, out_level: int, alpha: float,
                 norm_layer, act_layer):
        super().__init__()
        mid = int(in_filters * alpha)
        conv = partial(ConvNormAct, norm_layer=norm_layer, act_layer=act_layer)
        self.reduce = conv(in_chs, mid, 1)
        self.down = None
        if out_level > in_level:
            factor = 2 ** (out_level - in_level - 1)  # left after the strided convolution
            kernel = 3 if factor == 2 else 5
            pool = nn.MaxPool2d(kernel, factor, padding=kernel // 2) if factor > 1 else nn.Identity()
            self.down = nn.Sequential(conv(mid, mid, 3, stride=2), pool)  # ceil(x / 2^k): exactly the target size
        self.expand = conv(mid, out_chs, 1, act_layer=None)
        self.out_level = out_level
        self.upsample = out_level < in_level

    def forward(self, x: torch.Tensor, l2_size) -> torch.Tensor:
        x = self.reduce(x)
        if self.down is not None:
            x = self.down(x)
        elif self.upsample:
            x = F.interpolate(x, size=_level_size(l2_size, self.out_level), mode="nearest")
        return self.expand(x)


class ScalePermutedBlock(nn.Module):
    """One block of the block list: its parents resampled and added (with ``merged``, the
    unread earlier blocks of its level, for output blocks), activated, then ``repeats`` blocks.

    It passes the state ``(current map, every block's output so far)`` along
    (:meth:`forward_state`), so a backbone runs the blocks one by one."""

    def __init__(self, spec: BlockSpec, inputs: list[nn.Module], merged: tuple[int, ...], body: nn.Sequential,
                 act_layer):
        super().__init__()
        self.spec, self.merged = spec, merged
        self.inputs = nn.ModuleList(inputs)
        self.act = act_layer()
        self.body = body

    def forward_state(self, state: tuple[torch.Tensor, tuple[torch.Tensor, ...]]):
        _, feats = state
        l2_size = feats[0].shape[-2:]
        x = sum(r(feats[i], l2_size) for r, i in zip(self.inputs, self.spec.parents))
        for j in self.merged:
            x = x + feats[j]
        y = self.body(self.act(x))
        return y, feats + (y,)


class Stem(nn.Sequential):
    """7x7/2 convolution, 3x3/2 max pool, two L2 bottleneck blocks; its state is ``(block 1, (block 0, block 1))``."""

    def forward_state(self, x: torch.Tensor):
        x = self.pool(self.conv(x))
        first = self.block0(x)
        second = self.block1(first)
        return second, (first, second)


class Endpoint(ConvNormAct):
    """The 1x1 convolution that turns the output block of one level into its pyramid map."""

    def __init__(self, source: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.source = source

    def forward_state(self, state):
        return self(state[1][self.source]), state[1]


class SpineNet(Classifier):
    """Stem -> scale-permuted blocks -> endpoints P3-P7 -> (classifier) mean of P3-P7 at P3's
    size -> global average pool -> linear.

    Args:
        blocks: the block list (default :data:`SPINENET49_BLOCKS`).
        filter_scale, endpoint_chs, alpha, repeats: the family's scaling (:data:`SPINENET_SCALING`).
        act: ``"relu"`` (the paper's baseline) or ``"swish"`` (its stronger recipe).
        norm_layer: ``"batchnorm"``, ``"frozen_batchnorm"`` or ``"groupnorm"``.
        drop_rate: dropout before the classifier; drop_path_rate: stochastic depth of the last
            scale-permuted block (block ``i`` of ``n``: ``rate * (i + 1) / n``, the reference's rule).
    """

    def __init__(self, blocks=SPINENET49_BLOCKS, filter_scale: float = 1.0, endpoint_chs: int = 256,
                 alpha: float = 0.5, repeats: int = 1, act: str = "relu", norm_layer: str = "batchnorm",
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        acts = {"relu": nn.ReLU, "swish": nn.SiLU}
        if act not in acts:
            raise ValueError(f"act must be 'relu' or 'swish', got {act!r}")
        if repeats < 1 or alpha <= 0 or filter_scale <= 0:
            raise ValueError(f"repeats must be >= 1 and alpha, filter_scale > 0, got repeats={repeats}, "
                             f"alpha={alpha}, filter_scale={filter_scale}")
        act_layer, norm = acts[act], create_norm_layer(norm_layer)
        blocks = [BlockSpec(*b) for b in blocks]
        filters = {level: int(f * filter_scale) for level, f in FILTERS.items()}

        def group(kind: str, in_chs: int, f: int, drop_path: float = 0.0) -> tuple[nn.Sequential, int]:
            out = 4 * f if kind == "bottleneck" else f
            layers = []
            for r in range(repeats):  # only the first block may need a projection (the stem's first)
                c = in_chs if r == 0 else out
                shortcut = projection_shortcut(c, out, 1, norm_layer=norm) if c != out else None
                if kind == "bottleneck":
                    layers.append(Bottleneck(c, out, f, shortcut=shortcut, drop_path=drop_path, act_layer=act_layer,
                                             norm_layer=norm))
                elif kind == "residual":
                    layers.append(BasicBlock(c, out, shortcut=shortcut, drop_path=drop_path, act_layer=act_layer,
                                             norm_layer=norm))
                else:
                    raise ValueError(f"block type must be 'bottleneck' or 'residual', got {kind!r}")
            return nn.Sequential(*layers), out

        self.stem = Stem()
        self.stem.conv = ConvNormAct(in_chans, 64, 7, stride=2, norm_layer=norm, act_layer=act_layer)
        self.stem.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.stem.block0, chs = group("bottleneck", 64, filters[2])
        self.stem.block1, chs = group("bottleneck", chs, filters[2])
        # per block so far: (level, kind, filters, output channels); how many blocks read it
        made = [(2, "bottleneck", filters[2], chs)] * 2
        readers = [0, 0]
        self.blocks = nn.ModuleList()
        outputs: dict[int, int] = {}
        for i, spec in enumerate(blocks):
            if any(not 0 <= p < len(made) for p in spec.parents):
                raise ValueError(f"block {i + 2}: parents {spec.parents} must be earlier blocks (0..{len(made) - 1})")
            f = filters[spec.level]
            width = 4 * f if spec.block == "bottleneck" else f
            inputs = []
            for p in spec.parents:
                level, _, pf, pchs = made[p]  # alpha scales the parent's filters (a bottleneck's output / 4)
                inputs.append(Resample(pchs, pf, level, width, spec.level, alpha, norm, act_layer))
                readers[p] += 1
            merged = ()
            if spec.is_output:  # blocks of this level and width nothing reads join the output block
                merged = tuple(j for j, (lv, _, _, c) in enumerate(made) if readers[j] == 0 and lv == spec.level
                               and c == width)
                for j in merged:
                    readers[j] += 1
            drop = linear_drop_path(drop_path_rate, i + 1, len(blocks), endpoint=False)
            body, out = group(spec.block, width, f, drop)
            self.blocks.append(ScalePermutedBlock(spec, inputs, merged, body, act_layer))
            made.append((spec.level, spec.block, f, out))
            readers.append(0)
            if spec.is_output:
                if spec.level in outputs:
                    raise ValueError(f"two output blocks of level {spec.level}")
                outputs[spec.level] = len(made) - 1
        levels = sorted(outputs)
        if not levels or levels != list(range(levels[0], levels[-1] + 1)):
            raise ValueError(f"output blocks must cover consecutive levels, got {levels}")
        self.endpoints = nn.ModuleDict({
            f"p{lv}": Endpoint(outputs[lv], made[outputs[lv]][3], endpoint_chs, 1, norm_layer=norm, act_layer=act_layer)
            for lv in levels})
        self.feature_info = FeatureInfo(feature(endpoint_chs, 2**lv, f"endpoints.p{lv}") for lv in levels)
        self.init_head(endpoint_chs, num_classes, drop_rate)
        init_weights(self)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pyramid maps, finest (P3) first."""
        state = self.stem.forward_state(x)
        for block in self.blocks:
            state = block.forward_state(state)
        return [endpoint(state[1][endpoint.source]) for endpoint in self.endpoints.values()]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classification map: every level nearest-upsampled to the finest and averaged."""
        maps = self.forward_pyramid(x)
        size = maps[0].shape[-2:]
        return sum(m if i == 0 else F.interpolate(m, size=size, mode="nearest") for i, m in enumerate(maps)) / len(maps)

    def feature_stages(self) -> list[FeatureStage]:
        """Per level: the blocks not yet run up to its output block, then its endpoint; the state
        is ``(map, block outputs)`` (:meth:`ScalePermutedBlock.forward_state`). The output blocks
        run in the searched order (L4 before L3, L7 before L6), so a level's stage may run nothing
        but its endpoint, and stopping at P4 still runs the L3 block."""
        stages, steps, done = [], ["stem"], 0
        for key, endpoint in self.endpoints.items():
            while done < endpoint.source - 1:  # blocks[k] makes block k + 2
                steps.append(f"blocks.{done}")
                done += 1
            stages.append(FeatureStage(tuple(steps + [f"endpoints.{key}"])))
            steps = []
        return stages


card = family_card(
    family="spinenet",
    year=2019,
    paper="arXiv:1912.05027 SpineNet: Learning Scale-Permuted Backbone for Recognition and Localization (Du et al.)",
    tricks=("scale_permuted_backbone", "residual_shortcut", "projection_shortcut", "bottleneck", "batch_norm", "relu",
            "global_average_pooling"),
    input_convs=("stem.conv.conv",),
    min_input_size=(3, 64, 64),
)

register_variants(SpineNet, [
    card("spinenet49", kwargs=SPINENET_SCALING["49"],
         notes="The paper's ImageNet classifier (22.1M parameters, 3.5B FLOPs at 224): P3-P7 averaged at P3's "
               "resolution, pooled, linear. As a backbone (features_only) it gives P3-P7, 256 channels each; "
               "retinanet_spinenet49 reads them without a neck. Stopping early (out_indices) still runs the blocks "
               "the searched order computes first (the L3 output block comes after L4's)."),
])
