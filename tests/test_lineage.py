"""The lineage is derived from the cards: check its logic on the real registry."""

from __future__ import annotations

import json

import archzoo
from archzoo.cli.main import main
from archzoo.lineage import lineage


def test_every_used_trick_has_a_first_user_and_users_are_consistent():
    data = lineage()
    used = {t for n in archzoo.list_models() for t in archzoo.model_card(n).tricks}
    assert {r["trick"] for r in data["tricks"]} == used
    for r in data["tricks"]:
        assert r["first_in_zoo"]
        for name in r["first_in_zoo"]:
            assert archzoo.model_card(name).year == r["first_year"]
        for name in r["reused_by"]:
            assert archzoo.model_card(name).year > r["first_year"]


def test_what_a_model_added_is_new_in_its_year():
    data = lineage()
    first = {r["trick"]: r["first_year"] for r in data["tricks"]}
    by_model = {m["model"]: m for m in data["models"]}
    assert "residual_shortcut" in by_model["resnet50"]["added"]
    assert by_model["seresnet50"]["inherited"]["residual_shortcut"] == "resnet"
    assert "squeeze_excitation" in by_model["seresnet50"]["added"]
    for m in data["models"]:
        assert all(first[t] == m["year"] for t in m["added"])
        assert all(first[t] < m["year"] for t in m["inherited"])


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
