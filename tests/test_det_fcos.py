"""FCOS (torchvision ``fcos_resnet50_fpn`` parity), its center-sampling assignment and training."""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.detection.anchors import AnchorGenerator
from archzoo.detection.fcos import center_sampling_assign
from test_det_retinanet import (_bad_targets, _counts, _empty_images_train, _frozen_same_maps, _on_backbones, _parity)


def test_fcos_equals_torchvision(tmp_path):
    _parity("fcos_resnet50_fpn", tmp_path, "head.classification_head.cls_logits.bias")


def test_fcos_with_frozen_batchnorm_computes_the_same_maps():
    _frozen_same_maps("fcos_resnet50_fpn")


def test_fcos_parameters_and_gflops_as_torchvision_publishes():
    params, gflops, meta = _counts("fcos_resnet50_fpn")
    assert params == meta["num_params"] == 32_269_600
    assert gflops == pytest.approx(meta["_ops"], abs=0.01)  # 128.21 at 800x800


def test_center_sampling_takes_central_locations_of_the_right_level_and_the_smallest_box():
    points = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), (1.0,))((256, 256), [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)])
    centres = (torch.cat(points)[:, :2] + torch.cat(points)[:, 2:]) / 2
    level = torch.cat([torch.full((p.shape[0],), i) for i, p in enumerate(points)])
    boxes = torch.tensor([[20.0, 20.0, 60.0, 60.0], [0.0, 0.0, 200.0, 200.0]])
    match = center_sampling_assign(boxes, points)
    small = match == 0
    assert small.any() and (level[small] == 0).all()  # largest distance <= 64: the stride-8 level only
    assert ((centres[small] - 40).abs().max(dim=1).values < 1.5 * 8).all()  # within 1.5 strides of the centre
    big = match == 1
    assert big.any() and set(level[big].tolist()) == {1, 2} and not (big & small).any()  # largest distance 100-148: 64..128 or 128..256
    assert (center_sampling_assign(torch.zeros(0, 4), points) == -1).all()


def test_fcos_head_for_a_k_class_dataset():
    model = archzoo.create_model("fcos_resnet50_fpn", num_classes=3, backbone="resnet18")
    assert model.head.cls_logits.out_channels == 3 and model.head.centerness.out_channels == 1
    assert isinstance(model.head.cls_tower[0].bn, torch.nn.GroupNorm) and model.head.cls_tower[0].bn.num_groups == 32


def test_fcos_on_other_backbones():
    _on_backbones("fcos_resnet50_fpn")



def test_fcos_image_without_objects_trains():
    _empty_images_train("fcos_resnet50_fpn")


def test_fcos_bad_targets_raise():
    _bad_targets("fcos_resnet50_fpn")
