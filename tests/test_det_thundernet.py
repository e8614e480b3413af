"""ThunderNet (arXiv:1903.11752): the parts as the paper builds them (CEM, light RPN, SAM,
PSRoIAlign, the one-FC R-CNN subnet), what each computes, its size against the paper's MFLOPs,
clear errors, and the commands (train, eval, predict) end to end. Learning on ``shapes`` is the
registry test's (tests/test_detectors.py)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import ps_roi_align

import archzoo
from archzoo.detection.anchors import AnchorGenerator
from archzoo.detection.thundernet import ContextEnhancement, LightRPN, PSRoIAlign
from archzoo.profile import model_stats

from detection_helpers import shapes_detection

SMALL = dict(image_size=96, representation_size=128, rpn_pre_nms_top_n=(300, 300), rpn_post_nms_top_n=(100, 100),
             box_batch_size_per_image=64, box_detections_per_img=20)


def _small(spatial_attention: bool = True, **kwargs):
    torch.manual_seed(0)
    return archzoo.create_model("thundernet_snet49", num_classes=2, spatial_attention=spatial_attention,
                                **{**SMALL, **kwargs})


def test_parts_are_the_papers():
    with torch.device("meta"):
        model = archzoo.create_model("thundernet_snet146")
    assert model.transform.fixed_size == (320, 320) and model.num_classes == 80
    assert model.backbone.feature_info.channels() == [264, 528] and model.backbone.feature_info.strides() == [16, 32]
    assert model.neck.out_channels == 245 == 5 * 7 * 7
    dw, pw = model.proposer.conv
    assert dw.conv.kernel_size == (5, 5) and dw.conv.groups == 245 and pw.conv.out_channels == 256
    anchors = model.proposer.rpn.anchor_generator
    assert anchors.sizes == ((32, 64, 128, 256, 512),) and anchors.aspect_ratios == ((0.5, 0.75, 1.0, 4 / 3, 2.0),)
    head = model.proposer.rpn.head
    assert len(head.conv) == 0 and head.objectness.out_channels == 25 and head.box_deltas.out_channels == 100
    gate = model.proposer.sam.gate
    assert gate.conv.in_channels == 256 and gate.conv.out_channels == 245 and isinstance(gate.act, nn.Sigmoid)
    assert isinstance(gate.bn, nn.BatchNorm2d)
    pool = model.roi_heads.box_pool
    assert isinstance(pool, PSRoIAlign) and pool.output_size == 7 and pool.spatial_scale == 1 / 16
    assert model.roi_heads.box_head.fc.in_features == 245 and model.roi_heads.box_head.fc.out_features == 1024
    assert model.roi_heads.box_predictor.cls_score.out_features == 81  # 80 classes and the background
    rpn = model.proposer.rpn  # the authors' released configuration
    assert rpn.pre_nms_top_n == (2000, 2000) and rpn.post_nms_top_n == (1000, 200) and rpn.nms_thresh == 0.7
    assert model.roi_heads.sampler.batch_size_per_image == 512 and model.roi_heads.sampler.positive_fraction == 0.25
    with torch.device("meta"):  # SNet49's C5 is its 512-wide conv5
        assert archzoo.create_model("thundernet_snet49").backbone.feature_info.channels() == [120, 512]


def test_cem_sums_c4_the_upsampled_c5_and_the_global_context():
    torch.manual_seed(0)
    cem = ContextEnhancement((8, 12), out_channels=49).eval()
    c4, c5 = torch.randn(2, 8, 6, 4), torch.randn(2, 12, 3, 2)
    (out,) = cem([c4, c5])
    up = cem.lateral5(c5).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest, 2x
    glb = nn.functional.conv2d(c5.mean((2, 3), keepdim=True), cem.glb.weight, cem.glb.bias)  # one vector per image
    torch.testing.assert_close(out, cem.lateral4(c4) + up + glb.expand(-1, -1, 6, 4))


def test_psroialign_gives_each_cell_its_own_channels():
    """Channel ``k`` filled with ``k``: cell ``(i, j)`` of output channel ``c`` reads input channel
    ``c * 49 + 7 i + j`` only."""
    x = torch.arange(245.0).view(1, 245, 1, 1).expand(1, 245, 20, 20).contiguous()
    boxes = [torch.tensor([[16.0, 32.0, 200.0, 180.0], [0.0, 0.0, 320.0, 320.0]])]
    pooled = PSRoIAlign("0", 7, 1 / 16)({"0": x}, boxes)
    c, i, j = torch.meshgrid(torch.arange(5), torch.arange(7), torch.arange(7), indexing="ij")
    assert pooled.shape == (2, 5, 7, 7)
    torch.testing.assert_close(pooled, (c * 49 + i * 7 + j).float().expand(2, -1, -1, -1))
    y = torch.randn(1, 245, 20, 20)
    torch.testing.assert_close(PSRoIAlign("0")({"0": y}, boxes), ps_roi_align(y, boxes, 7, 1 / 16, 2))


def test_sam_reweights_the_pooled_map_and_carries_the_rcnn_gradient_into_the_rpn():
    images, targets = shapes_detection(2, size=64, objects=(1, 2), classes=2)
    model = _small().eval()
    seen = {}
    model.roi_heads.box_pool.register_forward_pre_hook(lambda m, args: seen.update(pooled=args[0]["0"]))
    model.neck.register_forward_hook(lambda m, args, out: seen.update(cem=out[0]))
    model.proposer.conv.register_forward_hook(lambda m, args, out: seen.update(hidden=out))
    with torch.no_grad():
        model(images)
    torch.testing.assert_close(seen["pooled"], seen["cem"] * model.proposer.sam.gate(seen["hidden"]))
    # the R-CNN loss reaches the RPN's layers through the SAM; without it, it does not
    for attention in (True, False):
        model = _small(spatial_attention=attention).train()
        losses = model(images, targets)
        losses["loss_classifier"].backward()
        grad = model.proposer.conv[0].conv.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == attention
        assert (model.proposer.sam is not None) == attention


# MFLOPs at 320x320 (one multiply-accumulate = one FLOP), measured: the backbone, the CEM, the light
# RPN, the SAM, and the R-CNN subnet per region (80 classes, class-specific boxes); parameters.
MEASURED = {  # backbone, CEM, RPN, SAM, R-CNN per RoI, parameters
    "thundernet_snet49": (103.51, 24.43, 40.34, 25.09, 0.6656, 1_475_810),
    "thundernet_snet146": (330.60, 38.94, 40.34, 25.09, 0.6656, 2_201_858),
    "thundernet_snet535": (1099.78, 73.16, 40.34, 25.09, 0.6656, 4_988_466),
}
# The paper's detectors (COCO, 320x320): 262 / 473 / 1300 MFLOPs, and its backbones 49 / 146 / 535 at
# 224. Its totals are its backbones scaled to 320 ((320/224)^2) plus our measured CEM, RPN and SAM and
# 200 regions of a 245 -> 1024 FC with 81 class scores and 4 class-agnostic deltas, within 2% -- so the
# detection part is the paper's, and our totals differ by what tests/test_snet.py explains for the
# backbones (SNet146 measures 162.5, not 146) plus the class-specific deltas of the authors' code
# (+63 MFLOPs at 200 regions).
PAPER = {"thundernet_snet49": (262, 49), "thundernet_snet146": (473, 146), "thundernet_snet535": (1300, 535)}


def _mflops(fn, *args) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() / 2e6


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_size_at_320_against_the_paper(name):
    with torch.device("meta"):
        model = archzoo.create_model(name).eval()
        x = torch.empty(1, 3, 320, 320)
        maps = model.backbone(x)
        (cem,) = model.neck(maps)
        hidden = model.proposer.conv(cem)
        parts = (_mflops(model.backbone, x), _mflops(model.neck, maps),
                 _mflops(model.proposer.conv, cem) + _mflops(model.proposer.rpn.head, [hidden]),
                 _mflops(model.proposer.sam, cem, hidden),
                 _mflops(lambda r: model.roi_heads.box_predictor(model.roi_heads.box_head(r)), torch.empty(1, 5, 7, 7)))
    *flops, params = MEASURED[name]
    assert [round(p, 2) for p in parts[:4]] == flops[:4] and round(parts[4], 4) == flops[4]
    stats = model_stats(name)  # the network proper as archzoo measures every detector: backbone and CEM
    assert stats["params"] == params and round(stats["gflops"] * 1e3, 2) == round(parts[0] + parts[1], 2)
    total, backbone_224 = PAPER[name]
    rcnn_agnostic = 245 * 1024 + 1024 * (81 + 4)
    papers_way = backbone_224 * (320 / 224) ** 2 + sum(parts[1:4]) + 200 * rcnn_agnostic / 1e6
    assert abs(papers_way - total) <= 0.02 * total, (papers_way, total)


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match=r"cem_channels \(240\) must be a multiple of roi_size\^2"):
        archzoo.create_model("thundernet_snet49", cem_channels=240)
    with pytest.raises(ValueError, match="light RPN runs on one map"):
        LightRPN(245, AnchorGenerator(((32,), (64,))))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        archzoo.create_model("thundernet_snet49", num_classes=0)


def test_train_eval_predict_commands(tmp_path, capsys):
    """archzoo train (one epoch on 12 VOC images at 64 px), eval --json and predict --json."""
    from test_detection_data import write_shapes
    from test_robustness_helpers import run_cli

    data = write_shapes(tmp_path / "voc", "voc", n=12)
    run = tmp_path / "run"
    small = {k: v for k, v in SMALL.items() if k != "image_size"}
    archzoo.train("thundernet_snet49", str(data), out=run, epochs=1, batch_size=6, image_size=64, log="quiet",
                  workers=0, val_split=0.25, device="cpu", model_kwargs=small)
    ckpt = run / "best.safetensors"
    rc, out, err = run_cli(["eval", ckpt, "--data", data, "--json", "--device", "cpu"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert r["count"] == 12 and 0.0 <= r["map50"] <= 1.0
    image = min(data.glob("*.png"))
    rc, out, err = run_cli(["predict", ckpt, image, "--score-threshold", "0", "--json", "--device", "cpu"], capsys)
    assert rc == 0, err
    (pred,) = json.loads(out)["predictions"]
    assert pred["file"] == str(image)
    assert all(0 <= v <= 48 for d in pred["detections"] for v in d["box"])  # the 48-px image's own pixels
