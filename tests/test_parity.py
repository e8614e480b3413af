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

from helpers import build_reference, converted, max_rel_diff, n_params, sample_input

WITH_REFERENCE = [n for n in archzoo.list_models(task="classification") if archzoo.model_card(n).reference]
TOL = 1e-5


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_output_parity(name):
    card = archzoo.model_card(name)
    reference, model = converted(name)
    assert n_params(model) == n_params(reference)
    x = sample_input(card, size=64)
    with torch.no_grad():
        want, got = reference(x), model(x)
        # the classifier API that CAM and transfer learning use gives the reference's logits too
        feats = model.forward_features(x)
        via_api = model.forward_head(feats)
        if hasattr(reference, "forward_head"):  # timm has the same API: unpooled map, pooled features
            ref_feats = reference.forward_features(x)
            assert ref_feats.shape == feats.shape and max_rel_diff(ref_feats, feats) <= TOL
            pooled = reference.forward_head(ref_feats, pre_logits=True)
            assert max_rel_diff(pooled, model.forward_head(feats, pre_logits=True)) <= TOL
    assert got.shape == want.shape
    assert max_rel_diff(want, got) <= TOL
    assert max_rel_diff(want, via_api) <= TOL

    # the same through features_only: our stage maps equal the reference's
    ref_feats = _reference_features(card, reference, x)
    assert ref_feats is not None, f"no reference features for {name}: register feature_nodes with its converter"
    extractor = FeatureExtractor(model).eval()  # the converted model, its classifier removed
    with torch.no_grad():
        ours = extractor(x)
    assert len(ours) == len(ref_feats)
    for a, b in zip(ref_feats, ours):
        assert a.shape == b.shape
        assert max_rel_diff(a, b) <= TOL


def _reference_features(card, reference, x):
    """The reference's own multi-scale features: timm's ``forward_intermediates``, or for
    torchvision the graph nodes the family's converter names."""
    if hasattr(reference, "forward_intermediates"):
        with torch.no_grad():  # norm: the last map after a final norm (pre-activation nets), as ours
            return reference.forward_intermediates(x, intermediates_only=True, norm=True)
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
