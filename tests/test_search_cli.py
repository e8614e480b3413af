"""``archzoo search`` end to end on a tiny proxy (digits at 8x8, 64 training images, one epoch,
one-block cells of 4 filters): determinism, resuming after SIGKILL, several workers, the report,
and training a found architecture with ``archzoo train``."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import optuna
import pytest

from archzoo.cli.main import main

TINY = ["--data", "digits", "--image-size", "8", "--train-limit", "64", "--val-limit", "32", "--batch-size", "32",
        "--epochs", "1", "--threads", "1", "--no-progress"]
CELLS = ["search", "--space", "cells", "--blocks", "1", "--filters", "4", "--strategy", "evolution",
         "--population", "2", "--sample", "2", "--trials", "4", "--seed", "0", *TINY]


def _trials(out):
    """``{slot: (decisions, score)}`` of the finished trials, asserting one per slot."""
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["event"] == "trial_end"]
    assert len({e["slot"] for e in ends}) == len(ends), "a slot ran twice"
    starts = {e["slot"]: e["genotype"]["decisions"] for e in events if e["event"] == "trial_start"}
    return {e["slot"]: (starts[e["slot"]], e["score"]) for e in ends}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "ref"
    assert main([*CELLS, "--out", str(out)]) == 0
    return out


def test_search_writes_log_store_and_report(reference, capsys):
    trials = _trials(reference)
    assert sorted(trials) == [0, 1, 2, 3]
    for name in ("report.md", "best_so_far.png", "pareto.png", "best.json", "search.db"):
        assert (reference / name).is_file(), name
    report = (reference / "report.md").read_text()
    assert "## Best architectures" in report and "archzoo train searched_cellnet" in report
    best = json.loads((reference / "best.json").read_text())
    assert best[0]["score"] == max(s for _, s in trials.values())
    assert "searched_cells" in best[0]["genotype"]["tricks"]


def test_same_seed_one_worker_gives_the_same_trials(reference, tmp_path):
    assert main([*CELLS, "--out", str(tmp_path)]) == 0
    assert _trials(tmp_path) == _trials(reference)


def test_a_killed_search_resumes_with_no_trial_lost_or_repeated(reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "archzoo", *CELLS, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "events.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:  # kill it in the middle of a trial, after one has finished
        text = log.read_text() if log.exists() else ""
        if text.count('"trial_end"') >= 1 and text.count('"trial_start"') > text.count('"trial_end"'):
            break
        assert proc.poll() is None, "the search ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert main([*CELLS, "--out", str(out)]) == 0
    assert _trials(out) == _trials(reference)  # every slot once, the same architectures and scores
    study = optuna.load_study(study_name="archzoo-search", storage=f"sqlite:///{out / 'search.db'}")
    stale = [t for t in study.get_trials() if t.user_attrs.get("stale")]
    assert len(stale) == 1 and stale[0].state.name == "FAIL"
    assert '"requeued"' in log.read_text()


def test_workers_and_a_late_joiner_share_a_journal_store(tmp_path):
    out = tmp_path / "multi"
    args = ["search", "--space", "blocks", "--stages", "2", "--width", "0.25", "--strategy", "pnas", "--beam", "2",
            "--children", "4", "--trials", "6", "--target-latency", "1", *TINY, "--image-size", "32", "--out", str(out),
            "--storage", f"journal:{tmp_path / 'journal.log'}"]
    first = subprocess.Popen([sys.executable, "-m", "archzoo", *args, "--workers", "2"], stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (out / "events.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    joiner = subprocess.Popen([sys.executable, "-m", "archzoo", *args], stderr=subprocess.PIPE)
    for p in (first, joiner):
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err.decode()[-3000:]
    trials = _trials(out)
    assert sorted(trials) == list(range(6))
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    levels = {e["slot"]: e["meta"].get("level") for e in events if e["event"] == "trial_start"}
    assert levels[0] == levels[1] == 1
    report = (out / "report.md").read_text()
    assert "Pareto front" in report and "efficientnet_b0" in report


def test_a_found_architecture_trains_with_archzoo_train(reference, tmp_path):
    best = json.loads((reference / "best.json").read_text())[0]
    report = (reference / "report.md").read_text()
    line = next(ln for ln in report.splitlines() if ln.startswith("Train it:"))
    argv = shlex.split(line.split("`")[1])[1:]  # drop the program name
    assert argv[:2] == ["train", "searched_cellnet"]
    run = tmp_path / "run"
    assert main([*argv, "--image-size", "8", "--epochs", "1", "--train-limit", "64", "--val-limit", "32",
                 "--out", str(run)]) == 0
    meta = json.loads((run / "summary.json").read_text())
    assert meta["model"] == "searched_cellnet" and meta["params"] == best["params"]


def test_search_refuses_bad_input_cleanly(reference, tmp_path, capsys):
    assert main([*CELLS, "--out", str(reference), "--seed", "1"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main([*CELLS, "--out", str(tmp_path), "--storage", "nonsense"]) == 2
    assert "--storage" in capsys.readouterr().err
    assert main(["search", "--out", str(tmp_path), "--trials", "0"]) == 2
    assert main(["search", "--space", "blocks", *TINY, "--out", str(tmp_path / "b")]) == 2  # 8x8 < B0's 32x32
    assert "--image-size 32" in capsys.readouterr().err
