"""Growing neural cellular automata (archzoo.nca) and ``archzoo nca``."""

from __future__ import annotations

import json

import pytest
import torch

from archzoo.cli.main import main
from archzoo.nca import (GrowingNCA, NCAConfig, NCATrainer, alive_mask, builtin_target, damage, load_target, perceive,
                         seed_state)
from archzoo.validate import UserError


# every test here on one torch thread (the one_thread fixture of conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_perception_is_identity_and_sobel_per_channel():
    x = torch.zeros(1, 2, 5, 5)
    x[0, 0] = torch.arange(5.0).view(1, 5).expand(5, 5)  # channel 0: a ramp along x (slope 1)
    x[0, 1] = torch.arange(5.0).view(5, 1).expand(5, 5) * 2  # channel 1: a ramp along y (slope 2)
    p = perceive(x)
    assert p.shape == (1, 6, 5, 5)
    inner = (slice(None), slice(1, 4), slice(1, 4))
    torch.testing.assert_close(p[0, 0], x[0, 0])  # identity
    torch.testing.assert_close(p[0, 3], x[0, 1])
    # Sobel / 8 of a unit ramp is 1 inside: (1 + 2 + 1) * (f(x+1) - f(x-1)) / 8 = 4 * 2 / 8
    assert torch.allclose(p[0, 1][inner[1:]], torch.ones(3, 3))
    assert torch.allclose(p[0, 2][inner[1:]], torch.zeros(3, 3))  # no change along y
    assert torch.allclose(p[0, 5][inner[1:]], torch.full((3, 3), 2.0))
    assert torch.allclose(p[0, 4][inner[1:]], torch.zeros(3, 3))
    # one cell, by hand: Sobel-x of a single 1 at the centre, seen from its right neighbour
    y = torch.zeros(1, 1, 3, 3)
    y[0, 0, 1, 1] = 1.0
    assert perceive(y)[0, 1, 1, 0].item() == pytest.approx(2 / 8)  # weight +2 at the right of the cell (1, 0)
    assert perceive(y)[0, 1, 1, 2].item() == pytest.approx(-2 / 8)


def test_alive_masking_uses_the_max_pooled_alpha():
    x = torch.zeros(1, 16, 6, 6)
    x[0, 3, 2, 2] = 0.5  # alive
    x[0, 3, 5, 5] = 0.05  # below 0.1: not alive
    m = alive_mask(x)[0, 0]
    assert m[1:4, 1:4].all() and m.sum() == 9  # the 3x3 neighbourhood of the alive cell, nothing else


def test_stochastic_update_fires_about_half_the_cells_and_dead_cells_stay_zero():
    torch.manual_seed(0)
    nca = GrowingNCA(fire_rate=0.5)
    nn_last = nca.update[2]
    assert torch.count_nonzero(nn_last.weight) == 0  # zero-initialised: the first step changes nothing
    x = seed_state(32)
    x[:, 3:, 4:28, 4:28] = 1.0  # a big alive block
    torch.testing.assert_close(nca.step(x.clone()), x)
    torch.nn.init.normal_(nn_last.weight)  # now every cell's increment is non-zero
    g = torch.Generator().manual_seed(0)
    out = nca.step(x.clone(), g)
    inside = (slice(None), slice(6, 26), slice(6, 26))
    changed = (out - x)[0][inside].abs().sum(0) > 0
    assert 0.4 < changed.float().mean().item() < 0.6
    far = alive_mask(x)[0, 0] == 0
    assert out[0][:, far].abs().sum() == 0


def test_damage_erases_a_disc():
    x = torch.ones(2, 16, 20, 20)
    d = damage(x, torch.Generator().manual_seed(0))
    erased = (d[:, 0] == 0).float().sum((1, 2))
    assert (erased > 10).all() and (erased < 400 * 0.3).all()


def test_targets_and_bad_target_files(tmp_path):
    t = builtin_target("smiley", 24)
    assert t.shape == (4, 24, 24) and t[3].max() > 0.9 and t[3, 0, 0] == 0
    assert (t[:3] <= t[3:4] + 1e-6).all()  # premultiplied alpha
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError, match="broken.png"):
        load_target(str(bad), 24)
    with pytest.raises(UserError, match="nowhere.png"):
        load_target(str(tmp_path / "nowhere.png"), 24)


def _cfg(**kw):
    return NCAConfig(**{**dict(size=16, steps=80, pool_size=16, batch_size=4, min_iters=12, max_iters=20,
                               damaged=1, checkpoint_every=10), **kw})


def test_tiny_run_learns_to_grow_the_target():
    trainer = NCATrainer(builtin_target("heart", 16), _cfg())
    while trainer.step < 80:
        trainer.train_step()
    first, last = sum(trainer.losses[:5]) / 5, sum(trainer.losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    target = builtin_target("heart", 16)
    straight = NCATrainer(target, _cfg())
    for _ in range(12):
        straight.train_step()
    first = NCATrainer(target, _cfg())
    for _ in range(6):
        first.train_step()
    first.save(tmp_path / "nca.safetensors")
    resumed = NCATrainer(target, _cfg())
    resumed.load(tmp_path / "nca.safetensors")
    assert resumed.step == 6
    for _ in range(6):
        resumed.train_step()
    assert resumed.losses == straight.losses
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(straight.pool, resumed.pool)


def test_cli_writes_pictures_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["nca", "--target", "heart", "--out", str(out), "--size", "12", "--steps", "4", "--pool-size", "8",
            "--batch-size", "2", "--ca-steps", "4", "6", "--checkpoint-every", "2", "--quiet"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("growth.png", "growth.gif", "regrowth.png", "regrowth.gif", "target.png", "nca.safetensors", "report.json"):
        assert (out / name).is_file(), name
    assert report["steps"] == 4 and report["regrowth_error"] >= 0 and report["final_loss"] > 0
    from PIL import Image

    with Image.open(out / "growth.gif") as gif:
        assert gif.n_frames > 2
    # an existing run is not overwritten; --resume continues it
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*argv[:8], "6", *argv[9:], "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 6
    # a bad target file: exit 2 naming it
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    assert main(["nca", "--target", str(bad), "--out", str(tmp_path / "r2"), "--steps", "2"]) == 2
    assert "bad.png" in capsys.readouterr().err
