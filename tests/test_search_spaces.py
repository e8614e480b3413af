"""Search spaces (archzoo.search.spaces) and the searched-cell network they build."""

import json
import random

import pytest
import torch

import archzoo
from archzoo.blockstring import parse_block
from archzoo.layers.nas_cells import DilConv, make_op
from archzoo.search.spaces import CELL_OPS, BlockSpace, CellSpace, make_space
from archzoo.validate import UserError


def _forward(model, chans=1, side=8):
    model.eval()
    with torch.no_grad():
        return model(torch.randn(2, chans, side, side))


def test_cell_space_samples_build_through_create_model_with_json_arguments():
    space = CellSpace(blocks=2, num_normal=1, filters=4)
    assert space.choices == (2, 8, 2, 8) * 2 + (3, 8, 3, 8) * 2 and space.levels == 2
    d = space.sample(random.Random(0))
    g = space.genotype(d)
    assert json.loads(json.dumps(g)) == g  # plain JSON
    model = archzoo.create_model(g["model"], num_classes=10, in_chans=1, **json.loads(json.dumps(g["kwargs"])))
    assert _forward(model).shape == (2, 10)
    normal, reduction = g["kwargs"]["normal"], g["kwargs"]["reduction"]
    assert len(normal) == len(reduction) == 2 and all(r[0] in CELL_OPS and r[2] in CELL_OPS for r in normal)
    # block i may read the two cell inputs and the outputs of blocks before it
    assert all(0 <= r[1] < 2 + i and 0 <= r[3] < 2 + i for cell in (normal, reduction) for i, r in enumerate(cell))


def test_cell_space_tricks_follow_the_operations():
    space = CellSpace(blocks=1)
    ops = {o: i for i, o in enumerate(CELL_OPS)}
    pools = [0, ops["avg_3x3"], 1, ops["identity"]] * 2
    assert space.tricks(pools) == ["searched_cells", "batch_norm", "relu", "global_average_pooling"]
    dil = [0, ops["dil_3x3"], 1, ops["max_3x3"]] + [0, ops["sep_5x5"], 0, ops["identity"]]
    tricks = space.tricks(dil)
    assert {"atrous_convolution", "depthwise_separable_conv"} <= set(tricks)
    assert all(t in archzoo.tricks.TRICKS for t in tricks)


def test_block_space_writes_parseable_block_strings_and_builds_as_efficientnet():
    space = BlockSpace(stages=3, width_mult=0.25)
    assert space.choices == (2, 3, 2, 4, 3) * 3
    for seed in range(20):
        d = space.sample(random.Random(seed))
        strings = space.model_kwargs(d)["arch"]
        specs = [parse_block(s) for stage in strings for s in stage]
        assert len(specs) == 3
        for spec, (k, e, se, r, w) in zip(specs, [d[i:i + 5] for i in range(0, 15, 5)]):
            assert spec.kernel == (3, 5)[k] and spec.repeats == (1, 2, 3, 4)[r]
            assert spec.block == ("ds" if e == 0 else "ir") and (spec.se_ratio is not None) == bool(se)
            assert spec.out_chs % 8 == 0
    g = space.genotype(d)
    model = archzoo.create_model(g["model"], num_classes=4, in_chans=3, **g["kwargs"])
    assert _forward(model, chans=3).shape == (2, 4)
    assert ("squeeze_excitation" in g["tricks"]) == any("_se" in s[0] for s in g["kwargs"]["arch"])


def test_block_space_at_b0_defaults_is_efficientnet_b0():
    from archzoo.models.efficientnet import EFFICIENTNET_B0

    space = BlockSpace()
    b0 = [d for s in range(7) for d in space.default(s)]
    assert space.model_kwargs(b0)["arch"] == [list(stage) for stage in EFFICIENTNET_B0]


@pytest.mark.parametrize("space", [CellSpace(blocks=3), BlockSpace(stages=4)], ids=["cells", "blocks"])
def test_mutation_changes_exactly_one_decision_and_stays_valid(space):
    rng = random.Random(1)
    for _ in range(200):
        d = space.sample(rng)
        m = space.mutate(d, rng)
        assert sum(a != b for a, b in zip(d, m)) == 1 and len(m) == len(d)
        assert space.check(m) == m
    prefix = space.sample(rng, space.unit)  # progressive search mutates partial architectures too
    assert len(space.mutate(prefix, rng)) == space.unit


def test_partial_architectures_build_for_progressive_search():
    cells = CellSpace(blocks=3, filters=4)
    one_block = cells.sample(random.Random(0), cells.unit)
    kw = cells.model_kwargs(one_block)
    assert len(kw["normal"]) == len(kw["reduction"]) == 1
    assert _forward(cells.build(one_block, 10, 1)).shape == (2, 10)
    blocks = BlockSpace(stages=3)
    first = blocks.sample(random.Random(0), blocks.unit)
    arch = blocks.model_kwargs(first)["arch"]
    assert len(arch) == 3 and arch[1:] == blocks.model_kwargs([d for s in range(3) for d in blocks.default(s)])["arch"][1:]


def test_features_are_one_hot_per_decision():
    space = CellSpace(blocks=2)
    d = space.sample(random.Random(3))
    f = space.features(d)
    assert len(f) == sum(space.choices) and sum(f) == len(d)
    assert sum(space.features(d[:8])) == 8


def test_bad_decisions_and_names_are_refused():
    space = CellSpace(blocks=1)
    with pytest.raises(ValueError, match="decision 0"):
        space.check([5, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="multiple of 8"):
        space.check([0, 0, 0])
    with pytest.raises(UserError, match="--space"):
        make_space("transformers")


def test_searched_cellnet_refuses_malformed_cells():
    with pytest.raises(ValueError, match="normal"):
        archzoo.create_model("searched_cellnet", normal=[["sep_3x3", 0]])
    with pytest.raises(ValueError, match="reads state 3"):
        archzoo.create_model("searched_cellnet", reduction=[["sep_3x3", 3, "identity", 0]])


@pytest.mark.parametrize("side", [7, 8])
def test_dilated_op_keeps_same_padding_and_strides(side):
    op = make_op("dil_5x5", 4, 6, stride=2)
    assert isinstance(op, DilConv)
    y = op(torch.randn(1, 4, side, side))
    assert y.shape == (1, 6, (side + 1) // 2, (side + 1) // 2)
    assert make_op("dil_3x3", 4, 4)(torch.randn(1, 4, side, side)).shape == (1, 4, side, side)


def test_objective_constraints_and_the_mnasnet_reward():
    from archzoo.search.objectives import Objective

    cost = {"params": 200, "macs": 10, "latency_ms": 4.0}
    assert Objective(max_params=100).violation(cost) == "params 200 > 100"
    assert Objective(max_params=300, max_latency_ms=5).violation(cost) is None
    assert Objective().score(0.8, cost) == 0.8
    assert Objective(target_latency_ms=2.0).score(0.8, cost) == pytest.approx(0.8 * 2 ** -0.07)
    with pytest.raises(UserError, match="--max-params"):
        Objective(max_params=0)
    # an architecture over budget is measured but never trained
    space = CellSpace(blocks=1, filters=4)
    score, metrics = Objective(data="digits", image_size=8, max_params=1000).evaluate(space, space.sample(random.Random(0)), 0)
    assert score is None and metrics["infeasible"].startswith("params") and "accuracy" not in metrics
    assert metrics["params"] == sum(p.numel() for p in space.build(space.sample(random.Random(0)), 10, 1).parameters())
