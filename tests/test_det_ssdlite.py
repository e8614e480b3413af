"""SSDLite (MobileNetV2 paper, section 6.3): identical to torchvision's
``ssdlite320_mobilenet_v3_large`` with converted weights (and its published parameter count and
GFLOPs), the MobileNetV2 detector's size against the paper's Table 6, the C4 expansion tap,
other backbones, training on ``shapes``, and clear errors."""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.detection.ssdlite import MobileNetTaps
from detection_helpers import shapes_detection, train_briefly
from test_det_ssd import _images, check_parity, measured, published


def test_ssdlite320_mobilenet_v3_large_is_torchvisions_with_converted_weights(tmp_path):
    check_parity("ssdlite320_mobilenet_v3_large", tmp_path)


def test_ssdlite320_mobilenet_v3_large_params_and_gflops_are_torchvisions():
    params, gflops = published("ssdlite320_mobilenet_v3_large")  # 3,440,060 and 0.583
    ours_params, ours_gflops = measured("ssdlite320_mobilenet_v3_large")
    assert ours_params == params
    assert abs(ours_gflops - gflops) <= 0.0005 + 0.001 * gflops, (ours_gflops, gflops)


def test_ssdlite320_mobilenet_v2_size_against_the_papers_table_6():
    """Table 6: 4.3M parameters, 0.8B multiply-adds (COCO, 91 classes, 320x320). Measured: 4.66M and
    0.870B, 8-9% above: torchvision's SSDLite setting puts 6 default boxes on the first (20x20, 576
    channel) map, the paper's TF detector 3 (that head alone is 0.16M parameters and 65M
    multiply-adds of the difference)."""
    params, gflops = measured("ssdlite320_mobilenet_v2")
    assert abs(params / 4.3e6 - 1) < 0.10, params
    assert abs(gflops / 0.8 - 1) < 0.10, gflops


def test_the_first_map_is_the_c4_blocks_expansion():
    """MobileNetV2's block 15 (stages.5.0: 96 -> 576 channels, the stride 16 -> 32 block): its
    expansion output is map 0; the last layer (1280) map 1; nothing of the classifier head is kept."""
    torch.manual_seed(0)
    model = archzoo.create_model("ssdlite320_mobilenet_v2").eval()
    taps = model.backbone
    assert isinstance(taps, MobileNetTaps) and taps.c4 == (5, 0) and taps.channels == [576, 1280]
    assert not any(k.startswith("backbone.head") for k in model.state_dict())
    x = torch.rand(1, 3, 320, 320)
    block = taps.stages[5][0]
    with torch.no_grad():
        c4, last = taps(x)
        up_to = taps.stages[:5](taps.stem(x))
        torch.testing.assert_close(c4, block.expand(up_to))
        torch.testing.assert_close(last, taps.conv_head(taps.stages[6](taps.stages[5](up_to))))
    assert c4.shape[-2:] == (20, 20) and last.shape[-2:] == (10, 10)


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_b0", "mobilenet_v3_small"])
def test_ssdlite_on_other_zoo_backbones_trains_and_detects(backbone):
    torch.manual_seed(0)
    model = archzoo.create_model("ssdlite320_mobilenet_v2", backbone=backbone, num_classes=3, image_size=128)
    images = _images()
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0]]), "labels": torch.tensor([0])},
               {"boxes": torch.tensor([[5.0, 5.0, 60.0, 40.0]]), "labels": torch.tensor([2])}]
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4


def test_ssdlite_errors_are_clear():
    with pytest.raises(ValueError, match="reduced_tail is MobileNetV3's option"):
        archzoo.create_model("ssdlite320_mobilenet_v2", reduced_tail=True)
    model = archzoo.create_model("ssdlite320_mobilenet_v2", backbone="mobilenet_v2_035", num_classes=2, image_size=96)
    with pytest.raises(ValueError, match=r"labels must be int64 in 0\.\.1"):
        model(_images(), [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([2])}] * 2)
    with pytest.raises(ValueError, match="boxes must be"):
        model(_images(), [{"boxes": torch.tensor([[1.0, 1.0, float("nan"), 9.0]]), "labels": torch.tensor([1])}] * 2)
    with pytest.raises(ValueError, match="expected a list of 2"):
        model(_images(), [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}])


def test_ssdlite_trains_on_images_without_objects():
    torch.manual_seed(0)
    model = archzoo.create_model("ssdlite320_mobilenet_v2", backbone="mobilenet_v2_035", num_classes=2, image_size=96)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    images, targets = shapes_detection(4, size=64, objects=1, classes=2)
    losses = train_briefly(model, images + images[:2], targets + [empty, empty], steps=3, batch=6)
    assert all(torch.isfinite(torch.tensor(losses)))



# measured (CPU, seed 0): loss 11.03 -> 3.53 (last 5), held-out AP@0.5 0.0013 untrained -> 0.0098 after
# 60 steps (train AP 0.047). A weak floor: SSD's softmax + hard-negative training needs far more steps
# than this CI budget to localise well (torchvision trains it for 600 epochs).
