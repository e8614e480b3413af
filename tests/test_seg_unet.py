"""U-Net (arXiv:1505.04597): the paper's unpadded net (Figure 1) counted by hand, 572 -> 388, the
overlap-tile strategy (Figure 2) against one pass over the mirrored image, and the padded variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import archzoo
from archzoo.segmentation.unet import (
    UNet,
    crop_and_concatenate,
    mirror_pad,
    overlap_tile,
    tile_input_size,
    valid_output_size,
)

from helpers import max_rel_diff, n_params

# Figure 1, as (in, out, kernel) of every convolution with a bias: per contracting level two 3x3,
# per expanding level a 2x2 up-convolution halving the width and two 3x3 on the concatenation,
# then the 1x1 to 2 classes. One grey input channel.
FIGURE_1 = [
    (1, 64, 3), (64, 64, 3),
    (64, 128, 3), (128, 128, 3),
    (128, 256, 3), (256, 256, 3),
    (256, 512, 3), (512, 512, 3),
    (512, 1024, 3), (1024, 1024, 3),
    (1024, 512, 2), (1024, 512, 3), (512, 512, 3),
    (512, 256, 2), (512, 256, 3), (256, 256, 3),
    (256, 128, 2), (256, 128, 3), (128, 128, 3),
    (128, 64, 2), (128, 64, 3), (64, 64, 3),
    (64, 2, 1),
]


def _meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return archzoo.create_model(name, **kwargs).eval()


def test_parameter_count_is_figure_1_counted_by_hand():
    by_hand = sum(c_in * c_out * k * k + c_out for c_in, c_out, k in FIGURE_1)
    assert by_hand == 31_030_658
    assert n_params(_meta("unet_original")) == by_hand
    # the padded variant: the same convolutions, each 3x3 with batch norm (scale and shift) instead of a bias
    convs3 = [(i, o) for i, o, k in FIGURE_1 if k == 3]
    assert n_params(_meta("unet")) == by_hand - sum(o for _, o in convs3) + sum(2 * o for _, o in convs3)


def test_572_tile_gives_388_map_and_forward_keeps_the_input_size():
    model = _meta("unet_original")
    assert model.margin == 92
    x = torch.empty(1, 1, 572, 572, device="meta")
    assert model.forward_valid(x).shape == (1, 2, 388, 388)
    assert model(x).shape == (1, 2, 572, 572)
    assert model(torch.empty(2, 1, 64, 50, device="meta")).shape == (2, 2, 64, 50)


def test_valid_tile_sizes():
    assert valid_output_size(572) == 388
    assert valid_output_size(572 + 16) == 388 + 16
    assert valid_output_size(571) is None and valid_output_size(574) is None  # a pooled map would be odd
    assert tile_input_size(1) == 188 and valid_output_size(188) == 4  # the smallest tile
    assert tile_input_size(388) == 572 and tile_input_size(389) == 588
    assert valid_output_size(28, depth=1) == 12  # 28 -> 24 -> pool 12 -> 8 -> up 16 -> 12
    with pytest.raises(ValueError, match="not a valid tile.*572"):
        _meta("unet_original").forward_valid(torch.empty(1, 1, 570, 570, device="meta"))


def test_mirror_pad_is_reflection_even_past_the_image():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    for pads in [(1, 2, 0, 3), (5, 7, 9, 2)]:  # the second reflects more than the image holds
        want = np.pad(x[0, 0].numpy(), ((pads[0], pads[1]), (pads[2], pads[3])), mode="reflect")
        assert np.array_equal(mirror_pad(x, *pads)[0, 0].numpy(), want)


def test_crop_and_concatenate_centre_crops_the_skip():
    skip = torch.arange(36.0).reshape(1, 1, 6, 6)
    up = torch.zeros(1, 2, 2, 2)
    out = crop_and_concatenate(skip, up)
    assert out.shape == (1, 3, 2, 2)
    assert out[0, 0].tolist() == [[14.0, 15.0], [20.0, 21.0]]  # rows and columns 2..3 of 0..5
    with pytest.raises(ValueError, match="smaller"):
        crop_and_concatenate(torch.zeros(1, 1, 3, 3), up.new_zeros(1, 1, 4, 4))


@pytest.fixture(scope="module")
def tiny_unpadded():
    torch.manual_seed(0)
    return UNet(num_classes=3, in_chans=1, base_width=2, padding=False, norm_layer=None).eval()


def test_overlap_tile_equals_one_pass_over_the_mirrored_image(tiny_unpadded):
    image = torch.randn(1, 1, 60, 50)
    with torch.no_grad():
        one_pass = tiny_unpadded(image)  # one tile covering the image
        tiled = overlap_tile(tiny_unpadded, image, tile=204)  # 20-pixel outputs, 4 x 3 tiles at steps of 16
        uneven = overlap_tile(tiny_unpadded, image, tile=(236, 220))
    assert one_pass.shape == tiled.shape == uneven.shape == (1, 3, 60, 50)
    assert max_rel_diff(one_pass, tiled) <= 1e-5 and max_rel_diff(one_pass, uneven) <= 1e-5
    # and a pixel's logits depend on the image around it, not on which tile computed it: the
    # one-pass result at the top-left corner is the valid net on the mirrored corner tile
    corner = mirror_pad(image, 92, 92, 92, 92)[..., :204, :204]
    with torch.no_grad():
        assert max_rel_diff(one_pass[..., :20, :20], tiny_unpadded.forward_valid(corner)[..., :20, :20]) <= 1e-5


def test_overlap_tile_rejects_bad_tiles_and_padded_nets(tiny_unpadded):
    image = torch.randn(1, 1, 40, 40)
    with pytest.raises(ValueError, match="not a valid tile"):
        overlap_tile(tiny_unpadded, image, tile=200)
    with pytest.raises(ValueError, match="at least 204"):  # a 4-pixel output cannot step on the 16-pixel grid
        overlap_tile(tiny_unpadded, image, tile=188)
    with pytest.raises(ValueError, match="padding=False"):
        overlap_tile(UNet(base_width=2), image)


def test_padded_unet_keeps_any_input_size_and_takes_grey_input_by_default():
    card = archzoo.model_card("unet")
    assert card.input_size[0] == 1 and len(card.mean) == len(card.std) == 1 and card.num_classes == 2
    model = archzoo.create_model("unet", base_width=4).eval()
    with torch.no_grad():  # odd levels (45 -> 22 -> 11 -> 5 -> 2): the net's own output has the input's size
        assert model.forward_valid(torch.randn(2, 1, 45, 62)).shape == (2, 2, 45, 62)
    rgb = archzoo.create_model("unet_small", in_chans=3, num_classes=5)
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 5, 32, 32)


def test_widths_scale_with_base_width():
    small = _meta("unet_small")
    assert small.encoder[-1].conv2.out_chs == 16 * 2**4 and small.head.in_channels == 16
    # without norm: Figure 1 with every width but the input's and the classes' divided by 4
    quarter = [(i if i == 1 else i // 4, o if o == 2 else o // 4, k) for i, o, k in FIGURE_1]
    assert n_params(_meta("unet", base_width=16, norm_layer=None)) == sum(i * o * k * k + o for i, o, k in quarter)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="base_width"):
        UNet(base_width=0)
    with pytest.raises(ValueError, match="drop_rate"):
        UNet(drop_rate=1.5)
