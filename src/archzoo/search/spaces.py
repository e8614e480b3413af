"""Search spaces: an architecture is a list of integer *decisions*, each one choice among a few.

* ``cells`` — the NASNet search space (Zoph et al. 2017, arXiv:1707.07012): a normal and a
  reduction cell of ``B`` blocks each; a block picks two hidden states and one operation for
  each (separable 3/5/7, dilated 3/5, average/max pool 3, identity) and adds the results. Built
  as ``searched_cellnet`` (:mod:`archzoo.models.searched`) from the zoo's cell code.
* ``blocks`` — the MnasNet / EfficientNet-B0 space (Tan et al. 2019, arXiv:1807.11626; Tan & Le
  2019, arXiv:1905.11946): per stage of B0's table a kernel (3, 5), an expansion (1, 3, 6), SE on
  or off, a repeat count and a width factor, written as block strings
  (:mod:`archzoo.blockstring`) and built as ``efficientnet_b0`` with ``arch=`` those strings.

The flat decision list is what every strategy works on (sampling, one-change mutation, a policy
per decision, one-hot features for a surrogate). The decisions come in ``levels`` groups of
``unit``: progressive search (PNAS) grows an architecture one group at a time — one more block
per cell, one more searched stage (a shorter list leaves the later stages at B0's values).
"""

from __future__ import annotations

import random

from torch import nn

CELL_OPS = ("sep_3x3", "sep_5x5", "sep_7x7", "dil_3x3", "dil_5x5", "avg_3x3", "max_3x3", "identity")

# EfficientNet-B0's stages (Table 1): (kernel, stride, expansion, channels, repeats)
B0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
             (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
KERNELS, EXPANSIONS, SE, REPEATS, WIDTHS = (3, 5), (1, 3, 6), (False, True), (1, 2, 3, 4), (0.75, 1.0, 1.25)


class Space:
    """The interface of a search space; ``choices[i]`` is the number of options of decision ``i``."""

    name = ""
    model = ""
    choices: tuple[int, ...] = ()
    unit = 1

    @property
    def levels(self) -> int:
        return len(self.choices) // self.unit

    def config(self) -> dict:
        """The space's settings (JSON): a store refuses a search with other settings."""
        raise NotImplementedError

    def sample(self, rng: random.Random, length: int | None = None) -> list[int]:
        """Uniformly random decisions (the first ``length`` only, for progressive search)."""
        return [rng.randrange(c) for c in self.choices[: len(self.choices) if length is None else length]]

    def mutate(self, decisions: list[int], rng: random.Random) -> list[int]:
        """Exactly one decision changed to another of its options (Real et al. 2019's mutation)."""
        movable = [i for i, c in enumerate(self.choices[: len(decisions)]) if c > 1]
        i = rng.choice(movable)
        out = list(decisions)
        out[i] = (out[i] + rng.randrange(1, self.choices[i])) % self.choices[i]
        return out

    def check(self, decisions) -> list[int]:
        if (not isinstance(decisions, (list, tuple)) or not decisions or len(decisions) % self.unit
                or len(decisions) > len(self.choices)):
            raise ValueError(f"{self.name} space: expected a list of a multiple of {self.unit} decisions "
                             f"(at most {len(self.choices)}), got {decisions!r}")
        for i, d in enumerate(decisions):
            if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < self.choices[i]:
                raise ValueError(f"{self.name} space: decision {i} must be an integer in [0, {self.choices[i]}), got {d!r}")
        return list(decisions)

    def model_kwargs(self, decisions: list[int]) -> dict:
        """The ``create_model(self.model, **kwargs)`` arguments (plain JSON) of an architecture."""
        raise NotImplementedError

    def tricks(self, decisions: list[int]) -> list[str]:
        raise NotImplementedError

    def build(self, decisions: list[int], num_classes: int = 10, in_chans: int = 3) -> nn.Module:
        from ..builder import create_model

        return create_model(self.model, num_classes=num_classes, in_chans=in_chans, **self.model_kwargs(decisions))

    def genotype(self, decisions: list[int]) -> dict:
        """The JSON record of an architecture: decisions, the model and arguments that build it, tricks."""
        decisions = self.check(decisions)
        return {"space": self.name, "decisions": decisions, "model": self.model,
                "kwargs": self.model_kwargs(decisions), "tricks": self.tricks(decisions)}

    def features(self, decisions: list[int]) -> list[float]:
        """One-hot encoding of every decision (zeros for decisions not made yet): surrogate inputs."""
        out: list[float] = []
        for i, c in enumerate(self.choices):
            out += [1.0 if i < len(decisions) and decisions[i] == k else 0.0 for k in range(c)]
        return out


class CellSpace(Space):
    """NASNet cells: ``blocks`` blocks per cell; decisions per level: for the normal then the
    reduction cell, ``[input_a, op_a, input_b, op_b]`` of one more block. Built as
    ``searched_cellnet`` with ``num_normal`` cells per stage and ``filters`` per operation."""

    name, model = "cells", "searched_cellnet"

    def __init__(self, blocks: int = 3, num_normal: int = 1, filters: int = 8, ops: tuple[str, ...] = CELL_OPS):
        self.blocks, self.num_normal, self.filters, self.ops = int(blocks), int(num_normal), int(filters), tuple(ops)
        self.unit = 8
        self.choices = tuple(c for b in range(self.blocks) for _ in range(2)
                             for c in (2 + b, len(self.ops), 2 + b, len(self.ops)))

    def config(self) -> dict:
        return {"space": self.name, "blocks": self.blocks, "num_normal": self.num_normal, "filters": self.filters,
                "ops": list(self.ops)}

    def cells(self, decisions: list[int]) -> tuple[list, list]:
        """``(normal, reduction)`` as rows ``[op_a, input_a, op_b, input_b]``."""
        rows: tuple[list, list] = ([], [])
        for k in range(0, len(decisions), 4):
            ia, oa, ib, ob = decisions[k:k + 4]
            rows[(k // 4) % 2].append([self.ops[oa], ia, self.ops[ob], ib])
        return rows

    def model_kwargs(self, decisions: list[int]) -> dict:
        normal, reduction = self.cells(self.check(decisions))
        return {"normal": normal, "reduction": reduction, "num_normal": self.num_normal, "filters": self.filters}

    def tricks(self, decisions: list[int]) -> list[str]:
        ops = {row[k] for cell in self.cells(decisions) for row in cell for k in (0, 2)}
        out = ["searched_cells"]
        if any(o.startswith(("sep", "dil")) for o in ops):
            out += ["depthwise_separable_conv", "pointwise_conv"]
        if any(o.startswith("dil") for o in ops):
            out.append("atrous_convolution")
        return out + ["batch_norm", "relu", "global_average_pooling"]


class BlockSpace(Space):
    """MnasNet / EfficientNet-B0 stages: per stage ``[kernel, expansion, se, repeats, width]``
    (one level per stage) over the first ``stages`` rows of B0's table; strides and base widths
    stay B0's. ``width_mult`` scales the whole network (the model's ``width_mult``)."""

    name, model = "blocks", "efficientnet_b0"

    def __init__(self, stages: int = 7, width_mult: float = 1.0):
        if not 1 <= int(stages) <= len(B0_STAGES):
            raise ValueError(f"blocks space: stages must be 1..{len(B0_STAGES)}, got {stages}")
        self.stages, self.width_mult = int(stages), float(width_mult)
        self.unit = 5
        self.choices = (len(KERNELS), len(EXPANSIONS), len(SE), len(REPEATS), len(WIDTHS)) * self.stages

    def config(self) -> dict:
        return {"space": self.name, "stages": self.stages, "width_mult": self.width_mult}

    def default(self, stage: int) -> list[int]:
        """B0's own row as decisions (SE on, width factor 1): what a stage not searched yet uses."""
        k, _, e, _, r = B0_STAGES[stage]
        return [KERNELS.index(k), EXPANSIONS.index(e), 1, REPEATS.index(min(r, REPEATS[-1])), WIDTHS.index(1.0)]

    def block_strings(self, decisions: list[int]) -> list[list[str]]:
        out = []
        for s in range(self.stages):
            k, e, se, r, w = decisions[5 * s:5 * s + 5] if 5 * s < len(decisions) else self.default(s)
            _, stride, _, chs, _ = B0_STAGES[s]
            chs = max(8, int(round(chs * WIDTHS[w] / 8)) * 8)
            exp = EXPANSIONS[e]
            head = "ds" if exp == 1 else "ir"
            tokens = [head, f"r{REPEATS[r]}", f"k{KERNELS[k]}", f"s{stride}"] + ([f"e{exp}"] if exp > 1 else [])
            tokens += [f"c{chs}"] + (["se0.25"] if SE[se] else [])
            out.append(["_".join(tokens)])
        return out

    def model_kwargs(self, decisions: list[int]) -> dict:
        return {"arch": self.block_strings(self.check(decisions)), "width_mult": self.width_mult}

    def tricks(self, decisions: list[int]) -> list[str]:
        rows = [b for stage in self.block_strings(decisions) for b in stage]
        out = ["searched_block_table", "depthwise_separable_conv"]
        if any(r.startswith("ir") for r in rows):
            out += ["inverted_residual", "linear_bottleneck"]
        if any("_se" in r for r in rows):
            out += ["squeeze_excitation"] + (["mbconv_se"] if any(r.startswith("ir") and "_se" in r for r in rows) else [])
        if any(r.split("_")[1] != "r1" for r in rows):
            out.append("residual_shortcut")
        return out + ["swish", "pointwise_conv", "batch_norm", "global_average_pooling"]


SPACES = {"cells": CellSpace, "blocks": BlockSpace}


def make_space(name: str, **options) -> Space:
    """A space by name (``cells`` or ``blocks``) with its options."""
    from ..validate import UserError

    if name not in SPACES:
        raise UserError(f"--space must be one of {', '.join(SPACES)}, got {name!r}")
    return SPACES[name](**options)


def space_from_config(config: dict) -> Space:
    """The space a store's :meth:`Space.config` describes."""
    config = dict(config)
    return make_space(config.pop("space"), **config)
