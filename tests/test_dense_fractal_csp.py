"""What is special about DenseNet, FractalNet and CSPNet: paper parameter counts, dense
concatenation, the fractal expansion and its drop-path, the cross-stage split."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import archzoo
from archzoo.layers import CrossStagePartial, DarkBlock, DenseBlock, FractalBlock, fractal_join, global_drop_column

from helpers import n_params


def _meta_params(name: str, **kwargs) -> int:
    with torch.device("meta"):
        return n_params(archzoo.create_model(name, **kwargs))


# --- DenseNet ---------------------------------------------------------------------------------


def test_densenet_bc_100_k12_matches_the_paper():
    """Table 2: DenseNet-BC (L=100, k=12) has 0.8M parameters and 100 weighted layers."""
    model = archzoo.create_model("densenet_bc_100_k12")
    assert round(n_params(model) / 1e6, 1) == 0.8
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 100


@pytest.mark.parametrize("bc, depth, k, millions", [
    (False, 40, 12, 1.0), (False, 100, 12, 7.0), (False, 100, 24, 27.2),
    (True, 100, 12, 0.8), (True, 250, 24, 15.3), (True, 190, 40, 25.6),
])
def test_cifar_densenets_of_table_2(bc, depth, k, millions):
    """The other CIFAR rows of table 2, built from the same class: plain DenseNets have ``(L-4)/3``
    single 3x3 layers per block after a 16-channel conv; BC nets ``(L-4)/6`` bottleneck layers after
    a ``2k`` conv and compression 0.5."""
    if bc:
        n = (depth - 4) // 6
        kwargs = dict(block_config=(n, n, n), growth_rate=k, stem_width=2 * k)
    else:
        n = (depth - 4) // 3
        kwargs = dict(block_config=(n, n, n), growth_rate=k, stem_width=16, bn_size=0, compression=1.0)
    assert round(_meta_params("densenet_bc_100_k12", **kwargs) / 1e6, 1) == millions


def test_dense_block_concatenates_its_input_and_grows_by_k():
    torch.manual_seed(0)
    block = DenseBlock(16, num_layers=3, growth_rate=8).eval()
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        y = block(x)
    assert y.shape == (2, 16 + 3 * 8, 5, 5) and block.out_chs == 40
    torch.testing.assert_close(y[:, :16], x, rtol=0, atol=0)  # earlier maps are passed on unchanged
    # the last layer sees everything before it
    assert block.layers[2].norm1.bn.num_features == 16 + 2 * 8


def test_densenet_feature_info_follows_timm():
    import timm

    with torch.device("meta"):
        theirs = timm.create_model("densenet121", pretrained=False).feature_info
    ours = archzoo.create_model("densenet121", features_only=True).feature_info
    assert [(e["channels"], e["stride"]) for e in ours] == [(e["num_chs"], e["reduction"]) for e in theirs]


def test_densenet_converter_accepts_torchvisions_legacy_key_names():
    import torchvision

    with torch.device("meta"):
        sd = torchvision.models.densenet121(weights=None).state_dict()
    legacy = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v for k, v in sd.items()}
    assert legacy.keys() != sd.keys()
    assert archzoo.convert_weights("densenet121", legacy).keys() == archzoo.convert_weights("densenet121", sd).keys()


# --- FractalNet -------------------------------------------------------------------------------


def _fractal_params_from_the_paper(columns=3, widths=(64, 128, 256, 512, 512), in_chans=3, classes=10) -> int:
    """Section 4's CIFAR net counted by hand: per block ``C`` columns hold ``2**C - 1`` 3x3 convs,
    the first of each column reads the block input; every conv has a BN (2 per channel); then
    a linear classifier."""
    total, c_in = 0, in_chans
    for c in widths:
        convs = 2**columns - 1
        total += columns * 9 * c_in * c + (convs - columns) * 9 * c * c + convs * 2 * c
        c_in = c
    return total + c_in * classes + classes


def test_fractalnet_is_the_papers_20_layer_cifar_net():
    model = archzoo.create_model("fractalnet")
    assert n_params(model) == _fractal_params_from_the_paper()
    # 20 layers: B * 2**(C-1) convolutions along the deepest column
    assert sum(len(block.columns[-1]) for block in model.blocks) == 20
    assert _meta_params("fractalnet", num_columns=4) == _fractal_params_from_the_paper(columns=4)


@pytest.mark.xfail(strict=True, reason="table 1 prints 38.6M parameters for the 20-layer net; the architecture "
                                       "of section 4 (and the authors' Caffe generator) has 33.7M")
def test_fractalnet_parameter_count_printed_in_the_paper():
    assert round(_meta_params("fractalnet") / 1e6, 1) == 38.6


def _fractal_block(columns, local=0.0, drop=0.0):
    torch.manual_seed(0)
    return FractalBlock(4, 6, columns, drop_rate=drop, local_drop_rate=local)


def test_fractal_join_is_the_mean_and_local_drop_path_keeps_at_least_one():
    xs = [torch.full((1, 2), float(i)) for i in range(3)]
    torch.testing.assert_close(fractal_join(xs, 0.15, training=False), torch.full((1, 2), 1.0))
    torch.manual_seed(0)
    for _ in range(20):  # dropping every input is never allowed: exactly one survives
        out = fractal_join(xs, 1.0, training=True)
        assert any(torch.equal(out, x) for x in xs)
    means = {fractal_join(xs, 0.5, training=True).mean().item() for _ in range(50)}
    assert len(means) > 2 and means <= {0.0, 0.5, 1.0, 1.5, 2.0}


def test_fractal_block_follows_the_expansion_rule():
    """f_3(z) = join(f_2(f_2(z)), conv(z)) with joins flattened: eval output is the mean of columns."""
    block = _fractal_block(3, local=0.15, drop=0.3).eval()
    col = block.columns
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        inner = (col[2][1](col[2][0](x)) + col[1][0](x)) / 2
        want = (col[2][3](col[2][2](inner)) + col[1][1](inner) + col[0][0](x)) / 3
        # the hand computation has no randomness: eval mode neither drops paths nor applies dropout
        torch.testing.assert_close(block(x), want)
        # one column alone (global drop-path) is that column's chain of units
        torch.testing.assert_close(block(x, column=2), col[2][3](col[2][2](col[2][1](col[2][0](x)))))
    two = _fractal_block(2).eval()
    c2 = two.columns
    with torch.no_grad():  # with two columns there is one join: the plain mean of the columns
        torch.testing.assert_close(two(x), (c2[1][1](c2[1][0](x)) + c2[0][0](x)) / 2)
        torch.testing.assert_close(two(x, column=0), c2[0][0](x))
    assert [len(c) for c in col] == [1, 2, 4]


def test_fractalnet_drop_path_varies_in_training_and_not_in_eval():
    model = archzoo.create_model("fractalnet", local_drop_rate=0.15, global_drop_ratio=0.5)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        outs = [model(x) for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_global_drop_path_runs_one_column_through_the_whole_network():
    assert global_drop_column(3, 0.0, training=True) is None
    assert global_drop_column(3, 1.0, training=False) is None
    torch.manual_seed(0)
    assert {global_drop_column(3, 1.0, training=True) for _ in range(30)} == {0, 1, 2}

    model = archzoo.create_model("fractalnet", global_drop_ratio=1.0).train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        singles = []
        for c in range(3):  # batch-statistics norms, so each single column gives one fixed answer
            model.column = c
            singles.append(model(x))
        model.column = None
        for _ in range(3):
            out = model(x)
            assert sum(torch.equal(out, s) for s in singles) == 1


# --- CSPNet -----------------------------------------------------------------------------------


def test_cross_stage_partial_half_skips_the_blocks():
    torch.manual_seed(0)
    stage = CrossStagePartial(8, 16, exp_chs=16, blocks=[DarkBlock(8, 8, 4)], stride=2).eval()
    seen = {}
    stage.conv_exp.register_forward_hook(lambda m, i, o: seen.update(exp=o))
    stage.conv_transition.register_forward_hook(lambda m, i, o: seen.update(fused=i[0]))
    with torch.no_grad():
        y = stage(torch.randn(2, 8, 8, 8))
    assert y.shape == (2, 16, 4, 4)
    torch.testing.assert_close(seen["fused"][:, :8], seen["exp"][:, :8], rtol=0, atol=0)
    assert not torch.allclose(seen["fused"][:, 8:], seen["exp"][:, 8:])


@pytest.mark.parametrize("name", ["cspresnet50", "cspdarknet53"])
def test_cspnet_feature_info_follows_timm(name):
    import timm

    with torch.device("meta"):
        theirs = timm.create_model(name, pretrained=False).feature_info
    ours = archzoo.create_model(name, features_only=True).feature_info
    assert ours == [dict(channels=e["num_chs"], stride=e["reduction"], module=e["module"]) for e in theirs]


def test_cspresnet50_is_lighter_than_resnet50():
    assert _meta_params("cspresnet50") < _meta_params("resnet50")
