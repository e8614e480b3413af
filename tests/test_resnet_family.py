"""What is special about the ResNet family: the papers' parameter counts and the shortcut options."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import archzoo
from archzoo.layers import ZeroPadShortcut

from helpers import n_params


def _millions(n: int, digits: int) -> float:
    return round(n / 1e6, digits)


# He et al. 2015, Table 6: parameters of the CIFAR-10 ResNets (option A shortcuts)
@pytest.mark.parametrize("name, millions, digits", [
    ("resnet20", 0.27, 2), ("resnet32", 0.46, 2), ("resnet44", 0.66, 2),
    ("resnet56", 0.85, 2), ("resnet110", 1.7, 1), ("resnet1202", 19.4, 1),
])
def test_cifar_resnet_params_match_table_6(name, millions, digits):
    assert _millions(n_params(archzoo.create_model(name)), digits) == millions


def test_preact_cifar_params_match_the_identity_mappings_paper():
    # He et al. 2016 report 1.7M for ResNet-164 and 10.2M for ResNet-1001. Their 10.2M counts the
    # convolution and classifier weights; with the batch-norm scales and shifts the model has 10.33M.
    def without_norms(model):
        norms = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
        return n_params(model) - norms

    r164 = archzoo.create_model("preact_resnet164")
    assert _millions(n_params(r164), 1) == 1.7 and _millions(without_norms(r164), 1) == 1.7
    r1001 = archzoo.create_model("preact_resnet1001")
    assert _millions(without_norms(r1001), 1) == 10.2
    assert n_params(r1001) == 10_327_706
    assert _millions(n_params(archzoo.create_model("preact_resnet110")), 1) == 1.7


# Zagoruyko & Komodakis 2016, Table 4 (and section 3 for WRN-16-4's 2.7M)
@pytest.mark.parametrize("name, millions", [("wrn40_4", 8.9), ("wrn16_8", 11.0), ("wrn28_10", 36.5), ("wrn16_4", 2.7)])
def test_wide_resnet_params_match_the_paper(name, millions):
    assert _millions(n_params(archzoo.create_model(name)), 1) == millions


def test_wide_resnet_block_dropout_sits_between_the_convolutions():
    model = archzoo.create_model("wrn16_4", block_dropout=0.3)
    block = model.stages[1][0]
    assert isinstance(block.dropout, nn.Dropout) and block.dropout.p == 0.3
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():  # dropout is off in eval mode: the same as the model without it
        plain = archzoo.create_model("wrn16_4")
        plain.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(x), plain.eval()(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x))  # in training the dropped units change with the seed
    # where it sits: conv2's input is norm2's output with units zeroed and the rest scaled by 1 / (1 - p)
    seen = {}
    block.norm2.register_forward_hook(lambda m, i, o: seen.__setitem__("norm2", o.detach()))
    block.conv2.register_forward_hook(lambda m, i, o: seen.__setitem__("conv2_in", i[0].detach()))
    model(x)
    kept = seen["conv2_in"] != 0
    torch.testing.assert_close(seen["conv2_in"][kept], seen["norm2"][kept] / 0.7)
    active = seen["norm2"] != 0
    assert 0.2 < (~kept & active).sum() / active.sum() < 0.4  # ~30% of the active units dropped
    with pytest.raises(ValueError, match="basic blocks"):
        archzoo.create_model("preact_resnet164", block_dropout=0.3)


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert y[:, 16:].abs().sum() == 0
    model = archzoo.create_model("resnet20")
    shortcuts = [m for m in model.modules() if isinstance(m, ZeroPadShortcut)]
    assert len(shortcuts) == 2 and all(not list(s.parameters()) for s in shortcuts)


def test_fresh_very_deep_resnet_is_finite_in_eval_mode():
    # zero-initialised last norm of each branch: every block starts as the identity
    model = archzoo.create_model("resnet1202").eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def test_cards_name_their_tricks():
    assert "grouped_conv" in archzoo.model_card("resnext50_32x4d").tricks
    assert "squeeze_excitation" in archzoo.model_card("seresnext50_32x4d").tricks
    assert "preactivation" in archzoo.model_card("preact_resnet50").tricks
    assert "zero_padding_shortcut" in archzoo.model_card("resnet56").tricks
    assert set(archzoo.list_models(trick="squeeze_excitation")) >= {
        "seresnet50", "seresnet101", "seresnet152", "seresnext50_32x4d", "seresnext101_32x4d", "senet154"}
