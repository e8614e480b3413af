"""Spiking networks (archzoo.models.spiking): LIF dynamics, input coding, spike counts, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import archzoo
from archzoo.data.digits import load_digits_dataset
from archzoo.models.spiking import LIF, SpikeEncoder, spiking_from
from archzoo.validate import UserError


def test_lif_integrates_leaks_fires_and_resets_by_subtraction():
    lif = LIF(num_steps=4, beta=0.5, threshold=1.0, repeat=True)
    # a constant current of 0.6: u = 0.6, 0.9, 1.05 -> spike, then 1.05 - 1 reset... by hand:
    # snntorch subtracts the threshold at the step after the spike: u[t] = beta u[t-1] + I - S[t-1]
    u, spikes = 0.0, []
    for _ in range(4):
        reset = 1.0 if spikes and spikes[-1] else 0.0
        u = 0.5 * u + 0.6 - reset
        spikes.append(float(u > 1.0))
    out = lif(torch.full((1, 1), 0.6))
    assert out.shape == (4, 1)
    assert out[:, 0].tolist() == spikes and sum(spikes) >= 1
    assert float(lif.last_spikes) == sum(spikes)


def test_lif_surrogate_gradient_flows_through_the_step():
    lif = LIF(num_steps=3)
    current = torch.full((6, 5), 0.8, requires_grad=True)
    lif(current).sum().backward()
    assert current.grad is not None and current.grad.abs().sum() > 0  # a Heaviside step would give zero


def test_rate_coding_fires_with_the_pixel_intensity():
    torch.manual_seed(0)
    enc = SpikeEncoder(num_steps=400, coding="rate").train()
    x = torch.tensor([0.0, 0.25, 0.75, 1.0]).view(1, 1, 1, 4)
    spikes = enc(x)
    assert spikes.shape == (400, 1, 1, 4) and set(spikes.unique().tolist()) <= {0.0, 1.0}
    rate = spikes.mean(0).flatten()
    assert rate[0] == 0 and rate[3] == 1
    assert abs(rate[1] - 0.25) < 0.07 and abs(rate[2] - 0.75) < 0.07


def test_latency_coding_fires_once_brighter_first():
    enc = SpikeEncoder(num_steps=10, coding="latency")
    x = torch.tensor([0.3, 0.6, 1.0]).view(1, 1, 1, 3)
    spikes = enc(x)[:, 0, 0]  # [T, 3]
    assert spikes.sum(0).tolist() == [1.0, 1.0, 1.0]
    first = spikes.argmax(0).tolist()
    assert first[2] < first[1] < first[0]


@pytest.mark.parametrize("coding", ["direct", "rate", "latency"])
def test_forward_backward_and_spike_counts(coding):
    torch.manual_seed(0)
    model = archzoo.create_model("spiking_lenet5", num_steps=4, coding=coding).train()
    x = torch.rand(3, 1, 32, 32)
    out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    counts = model.spike_counts()
    assert set(counts) == {"lif1", "lif2", "lif3", "head.lif"}
    # spikes per image, by hand from the first layer's spike map ([T * B, 6, 14, 14], time-major)
    maps = []
    model.lif1.register_forward_hook(lambda m, i, o: maps.append(o))
    model.eval()
    with torch.no_grad():
        model(x)
    assert maps[0].shape == (4 * 3, 6, 14, 14)
    assert model.spike_counts()["lif1"] == pytest.approx(maps[0].sum().item() / 3)
    assert model.spike_count == pytest.approx(sum(model.spike_counts().values()))
    assert model.spike_counts()["lif1"] > 0


def test_eval_is_deterministic_even_with_rate_coding():
    x = torch.rand(2, 1, 32, 32)
    outs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = archzoo.create_model("spiking_lenet5", num_steps=3, coding="rate").eval()
        with torch.no_grad():
            outs.append((model(x), model(x)))
    torch.testing.assert_close(outs[0][0], outs[0][1], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    state = torch.random.get_rng_state()
    with torch.no_grad():
        model(x)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is untouched


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="coding"):
        archzoo.create_model("spiking_lenet5", coding="morse")
    with pytest.raises(UserError, match="num_steps"):
        archzoo.create_model("spiking_lenet5", num_steps=0)
    with pytest.raises(UserError, match="ReLU"):
        spiking_from(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh()))


def test_spiking_from_replaces_relus_and_keeps_weights():
    torch.manual_seed(0)
    ann = archzoo.create_model("alexnet", num_classes=10, hidden=(8, 8)).eval()
    n_relu = sum(isinstance(m, nn.ReLU) for m in ann.modules())
    snn = spiking_from(ann, num_steps=3).eval()
    assert sum(isinstance(m, nn.ReLU) for m in snn.modules()) == 0
    assert sum(isinstance(m, LIF) for m in snn.modules()) == n_relu > 0
    assert all(torch.equal(a, b) for a, b in zip(ann.parameters(), snn.parameters()))
    assert any(isinstance(m, nn.ReLU) for m in ann.modules())  # the original is unchanged
    x = torch.randn(2, 3, 64, 64)
    out = snn(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert len(snn.spike_counts()) == n_relu


def _digits(subset, n=None):
    ds = load_digits_dataset(subset)
    x, y = ds.images.float() / 255, ds.labels
    return (x[:n], y[:n]) if n else (x, y)


def _train(model, x, y, epochs, lr=2e-3, batch=64, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(batch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


def _accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()



def test_tiny_training_run_learns_digits_and_is_reproducible(one_thread):
    x, y = _digits("train", 640)
    xt, yt = _digits("test", 300)
    accs, states = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = _train(archzoo.create_model("spiking_lenet5", num_steps=4), x, y, epochs=3)
        accs.append(_accuracy(model, xt, yt))
        states.append(model.state_dict())
    assert accs[0] > 0.5, accs  # chance is 0.1
    assert accs[0] == accs[1]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert model.spike_count > 0
