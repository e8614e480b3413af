"""The lineage is derived from the cards: check its logic on the real registry."""

from __future__ import annotations

import json

import archzoo
from archzoo.cli.main import main
from archzoo.lineage import lineage


# Where each idea entered the zoo, from the papers (not from the cards): the family whose paper
# introduced it, or first used it among the zoo's networks, and that paper's year.
FIRST = {
    "conv_pool_stack": ("lenet", 1998), "relu": ("alexnet", 2012), "dropout": ("alexnet", 2012),
    "local_response_norm": ("alexnet", 2012), "inception_module": ("googlenet", 2014),
    "auxiliary_classifier": ("googlenet", 2014), "stacked_3x3_convs": ("vgg", 2014),
    "residual_shortcut": ("resnet", 2015), "bottleneck": ("resnet", 2015),
    "factorized_convolution": ("inception_v3", 2015), "dense_concatenation": ("densenet", 2016),
    "fire_module": ("squeezenet", 2016), "fractal_expansion": ("fractalnet", 2016),
    "widening": ("wide_resnet", 2016), "squeeze_excitation": ("senet", 2017), "searched_cells": ("nasnet", 2017),
    "inverted_residual": ("mobilenet_v2", 2018), "linear_bottleneck": ("mobilenet_v2", 2018),
    "compound_scaling": ("efficientnet", 2019), "cross_stage_partial": ("cspnet", 2019),
}


def test_every_idea_enters_the_zoo_where_the_papers_say():
    rows = {r["trick"]: r for r in lineage()["tricks"]}
    used = {t for n in archzoo.list_models() for t in archzoo.model_card(n).tricks}
    assert rows.keys() == used
    assert {t: (rows[t]["first_family"], rows[t]["first_year"]) for t in FIRST} == FIRST
    # the first users are exactly the family's models of that year, and every model of that family uses it
    assert set(rows["squeeze_excitation"]["first_in_zoo"]) == set(archzoo.list_models(family="senet"))
    assert set(rows["residual_shortcut"]["reused_by"]) >= {"seresnet50", "resnext50_32x4d", "efficientnet_b0"}
    assert "resnet50" not in rows["squeeze_excitation"]["reused_by"]


def test_what_a_model_added_and_inherited():
    by_model = {m["model"]: m for m in lineage()["models"]}
    assert by_model["seresnet50"]["added"] == ["squeeze_excitation"]  # SENet's one new idea on ResNet-50
    assert by_model["seresnet50"]["inherited"]["residual_shortcut"] == "resnet"
    assert {"residual_shortcut", "bottleneck"} <= set(by_model["resnet50"]["added"])
    assert {"inverted_residual", "linear_bottleneck"} <= set(by_model["mobilenet_v2"]["added"])
    eff = by_model["efficientnet_b0"]
    assert "compound_scaling" in eff["added"]
    assert eff["inherited"]["inverted_residual"] == "mobilenet_v2" and eff["inherited"]["squeeze_excitation"] == "senet"
    # ResNeXt's aggregated transformations are grouped convolutions, which AlexNet already had
    assert by_model["resnext50_32x4d"]["added"] == [] and by_model["resnext50_32x4d"]["inherited"]["grouped_conv"] == "alexnet"
    # every trick on a card is accounted for exactly once: added, inherited or retrofitted
    for m in by_model.values():
        parts = [*m["added"], *m["inherited"], *m["retrofitted"]]
        assert sorted(parts) == sorted(archzoo.model_card(m["model"]).tricks), m["model"]


def test_newer_ideas_in_reference_ports_are_retrofits_not_inventions():
    by_model = {m["model"]: m for m in lineage()["models"]}
    # torchvision's vgg16_bn (2014) has batch norm (2015): it must not be credited with it
    assert "batch_norm" in by_model["vgg16_bn"]["retrofitted"]
    assert "batch_norm" not in by_model["vgg16_bn"]["added"]


def test_lineage_command_text_json_and_plot(tmp_path, capsys):
    png = tmp_path / "tree.png"
    assert main(["lineage", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "residual_shortcut" in text and "first in resnet" in text
    assert png.stat().st_size > 20_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["lineage", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"tricks", "models", "families"} <= data.keys()


def test_the_two_stage_detectors_remove_one_loop_each():
    """The notes' story, read off the cards: R-CNN brings selective search and per-region warping,
    Fast R-CNN RoI pooling and the multi-task loss (keeping selective search), Faster R-CNN the RPN
    and anchors (dropping selective search), Mask R-CNN RoIAlign and the mask branch."""
    fams = {f["family"]: f for f in lineage(task="detection")["families"]}
    assert {"selective_search", "region_warping", "balanced_sampling"} <= set(fams["rcnn"]["added"])
    assert set(fams["fast_rcnn"]["added"]) == {"roi_pooling", "multi_task_loss"}
    assert fams["fast_rcnn"]["inherited"]["selective_search"] == "rcnn"
    assert set(fams["faster_rcnn"]["added"]) == {"region_proposal_network", "anchor_boxes"}
    assert "selective_search" not in fams["faster_rcnn"]["inherited"]
    assert fams["faster_rcnn"]["inherited"]["roi_pooling"] == "fast_rcnn"
    assert set(fams["mask_rcnn"]["added"]) == {"roi_align", "mask_branch"}
    assert fams["mask_rcnn"]["inherited"]["region_proposal_network"] == "faster_rcnn"
