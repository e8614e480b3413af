"""Output and parameter parity with the reference implementations (torchvision, timm).

The reference is built with random weights, its norm layers' affine parameters and running
statistics randomised, converted with ``archzoo.convert_weights``, and compared in eval mode in
float32: same parameter count, outputs within 1e-5 of the output's scale, and the same through
``features_only``.
"""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.features import FeatureExtractor
from archzoo.io import build_with_state

from helpers import build_reference, n_params, randomize_norms, sample_input

WITH_REFERENCE = [n for n in archzoo.list_models(task="classification") if archzoo.model_card(n).reference]
TOL = 1e-5


def _converted_pair(name):
    card = archzoo.model_card(name)
    torch.manual_seed(0)
    reference = randomize_norms(build_reference(card.reference)).eval()
    model = build_with_state(name, archzoo.convert_weights(name, reference.state_dict())).eval()
    return card, reference, model


def _max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_output_parity(name):
    card, reference, model = _converted_pair(name)
    assert n_params(model) == n_params(reference)
    x = sample_input(card, size=64)
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert got.shape == want.shape
    assert _max_rel_diff(want, got) <= TOL

    # the same through features_only: our stage maps equal the reference's
    ref_feats = _reference_features(card, reference, x)
    assert ref_feats is not None, f"no reference features for {name}: register feature_nodes with its converter"
    extractor = FeatureExtractor(model).eval()  # the converted model, its classifier removed
    with torch.no_grad():
        ours = extractor(x)
    assert len(ours) == len(ref_feats)
    for a, b in zip(ref_feats, ours):
        assert a.shape == b.shape
        assert _max_rel_diff(a, b) <= TOL


def _reference_features(card, reference, x):
    """The reference's own multi-scale features: timm's ``forward_intermediates``, or for
    torchvision the graph nodes the family's converter names."""
    if hasattr(reference, "forward_intermediates"):
        with torch.no_grad():
            return reference.forward_intermediates(x, intermediates_only=True)
    from torchvision.models.feature_extraction import create_feature_extractor

    from archzoo.weights import reference_feature_nodes

    nodes = reference_feature_nodes(card.name)
    if nodes is None:
        return None
    extractor = create_feature_extractor(reference, return_nodes=nodes)
    with torch.no_grad():
        return list(extractor(x).values())


def test_convert_rejects_a_wrong_state_dict():
    reference = build_reference("torchvision:resnet18")
    sd = reference.state_dict()
    del sd["layer1.0.bn1.running_var"]
    with pytest.raises(ValueError, match="missing.*running_var"):
        archzoo.convert_weights("resnet18", sd)
    sd = build_reference("torchvision:resnet34").state_dict()
    with pytest.raises(ValueError, match="unexpected"):
        archzoo.convert_weights("resnet18", sd)
    with pytest.raises(KeyError, match="no conversion rule"):
        archzoo.convert_weights("resnet18", {"mystery.weight": torch.zeros(1)})
