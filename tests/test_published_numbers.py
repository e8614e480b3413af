"""Our measured parameters and GFLOPs against the numbers torchvision publishes with its weights.

torchvision's weight metadata records ``num_params`` and ``_ops`` (GFLOPs, counted as
multiply-adds) at the crop size of its eval transform; nothing is downloaded to read them.
"""

from __future__ import annotations

import pytest

import archzoo
from archzoo.profile import model_stats

# classifiers; the detectors' tests check theirs (torchvision measures detectors at other input sizes)
TORCHVISION = [n for n in archzoo.list_models(task="classification")
               if (archzoo.model_card(n).reference or "").startswith("torchvision:")]

# torchvision counts GoogLeNet without its auxiliary heads (its weights are loaded with
# aux_logits=False) but Inception-v3 with them (its weights keep the auxiliary head)
COUNTS_AUX = {"inception_v3"}


def _published(reference_name: str):
    from torchvision.models import get_model_weights

    weights = get_model_weights(reference_name).DEFAULT
    crop = weights.transforms().crop_size[0]
    return weights.meta["num_params"], weights.meta["_ops"], crop


@pytest.mark.parametrize("name", TORCHVISION)
def test_params_and_gflops_agree_with_torchvision_tables(name):
    params, gflops, crop = _published(archzoo.model_card(name).reference_name)
    stats = model_stats(name, input_size=(3, crop, crop))
    ours = stats["params_with_aux"] if name in COUNTS_AUX else stats["params"]
    assert ours == params, (ours, params)  # the architecture is the reference's: the count is exact
    # _ops is printed with 3 decimals: allow 1% or the rounding of the last digit
    assert abs(stats["gflops"] - gflops) <= max(0.01 * gflops, 0.0005), (stats["gflops"], gflops)
