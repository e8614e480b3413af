"""The search benchmarks' machinery (benchmarks/search_strategies.py, benchmarks/search_vs_zoo.py,
the ``--device`` of the search objective): one (strategy, seed) per process with its store kept,
one table from every store (also a killed one), a proxy set that never sees the held-out images,
and the winner scaled to a zoo model's size with ``archzoo train`` arguments that rebuild it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archzoo import create_model
from archzoo.cli.train import model_kwarg
from archzoo.search.objectives import Objective
from archzoo.validate import UserError

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import search_strategies  # noqa: E402
import search_vs_zoo  # noqa: E402


def test_objective_device_is_checked_and_not_part_of_the_search_settings():
    assert "device" not in Objective(device="cpu").config()  # a GPU worker may join a CPU search
    assert Objective(device="cpu").config() == Objective().config()
    with pytest.raises(UserError, match="--device"):
        Objective(device="tpu")


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, str(BENCH / "search_strategies.py"), *args], capture_output=True,
                          text=True, cwd=cwd, check=True).stdout


TINY = ["--trials", "2", "--epochs", "1", "--train-limit", "64", "--val-limit", "32", "--blocks", "1", "--filters", "4"]


def test_searches_kept_per_process_are_collected_into_one_table(tmp_path):
    stores = tmp_path / "stores"
    _run("--strategies", "random", "--seeds", "1", "--first-seed", "3", *TINY, "--keep", str(stores),
         "--json", str(tmp_path / "one.json"))
    one = json.loads((tmp_path / "one.json").read_text())["runs"]
    assert [(r["strategy"], r["seed"], len(r["scores"])) for r in one] == [("random", 3, 2)]
    # a second search that stopped after one trial, as one cut by the deadline would
    search_strategies.run_one("pnas", 0, search_strategies.argparse.Namespace(
        trials=1, blocks=1, filters=4, epochs=1, lr=0.1, train_limit=64, val_limit=32, threads=1), stores)
    runs = search_strategies.collect(stores)
    assert {(r["strategy"], r["seed"]): len(r["scores"]) for r in runs} == {("random", 3): 2, ("pnas", 0): 1}
    assert runs[[r["strategy"] for r in runs].index("random")]["scores"] == one[0]["scores"]
    assert (stores / "pnas_0" / "search.db").is_file()
    table = _run("--strategies", "random", "pnas", "--seeds", "0", *TINY, "--budgets", "1", "2",
                 "--collect", str(stores), "--json", str(tmp_path / "all.json"))
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "(n=1)" in rows["random"] and "(n=1)" in rows["pnas"]  # pnas stopped short of 2 trials
    assert rows["pnas"].count("(n=") == 1 and rows["random"].count("(n=") == 2
    assert "best of all 2 runs" in table and "searched_cellnet" in table
    assert len(json.loads((tmp_path / "all.json").read_text())["runs"]) == 2


def test_best_after_counts_only_runs_that_reached_the_budget():
    assert search_strategies.best_after([0.5, None, 0.7], 2) == 0.5
    assert search_strategies.best_after([0.5, None, 0.7], 3) == 0.7
    assert search_strategies.best_after([0.5], 2) is None


def test_proxy_set_holds_training_images_only(tmp_path):
    root = tmp_path / "tree"
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(10):  # every image unique: a grey level per image
            Image.fromarray(torch.full((8, 8, 3), 20 * i + c, dtype=torch.uint8).numpy()).save(root / f"c{c}" / f"{i}.png")
    out = tmp_path / "proxy"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["x", "proxy-data", "--data", str(root), "--out", str(out), "--per-class", "100",
                                 "--val-split", "0.2"])
        search_vs_zoo.main()
    from archzoo.data import load_dataset

    splits = load_dataset(str(root), val_split=0.2, seed=0)
    held_out = {int(x) for x in splits.val.images[:, 0, 0, 0]}
    written = {int(np.asarray(Image.open(f))[0, 0, 0]) for f in out.rglob("*.png")}
    assert len(written) == 16 and not written & held_out
    assert written == {int(x) for x in splits.train.images[:, 0, 0, 0]}


def test_pick_scales_the_winner_to_the_baseline_and_its_kwargs_rebuild_it(tmp_path, monkeypatch):
    cells = {"normal": [["sep_3x3", 0, "identity", 1], ["avg_3x3", 2, "sep_5x5", 1]],
             "reduction": [["max_3x3", 0, "sep_3x3", 1]], "num_normal": 1, "filters": 8}
    best = tmp_path / "best.json"
    best.write_text(json.dumps([{"score": 0.5, "slot": 3, "params": 1000,
                                 "genotype": {"model": "searched_cellnet", "kwargs": cells, "tricks": ["searched_cells"]}}]))
    pick = tmp_path / "pick.json"
    monkeypatch.setattr(sys, "argv", ["x", "pick", "--best", str(best), "--baseline", "resnet20", "--device", "cpu", "--batch", "4",
                "--steps", "1", "--budget", "1e9", "--max-epochs", "7", "--out", str(pick)])
    search_vs_zoo.main()
    got = json.loads(pick.read_text())
    base = sum(p.numel() for p in create_model("resnet20", num_classes=10).parameters())
    assert got["baseline"]["params"] == base
    assert abs(got["searched"]["params"] - base) < 0.1 * base and got["searched"]["kwargs"]["num_normal"] == 2
    assert got["epochs"] == 7 and got["searched"]["step_s"] > 0
    words = search_vs_zoo.model_kwargs_args(got["searched"]["kwargs"]).splitlines()
    kwargs = dict(model_kwarg(w) for w in words)
    assert kwargs == got["searched"]["kwargs"]
    model = create_model("searched_cellnet", num_classes=10, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == got["searched"]["params"]
