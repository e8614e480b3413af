"""Sliding-window inference (exact for a pointwise model, bounded batches, reflection padding)
and the dense CRF (exact against a dense-matrix mean field, and it cleans a noisy prediction)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archzoo.segmentation.crf import dense_crf
from archzoo.segmentation.tiling import WINDOWS, blend_window, reflect_pad, sliding_window, tile_starts


class Recorder(nn.Module):
    """A model that remembers the shape of every batch it is given."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.shapes = model, []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.model(x)


@pytest.fixture(scope="module")
def pointwise():
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, 1).eval()


# ---------------------------------------------------------------- tiling


def test_tiles_cover_the_image_and_the_last_one_is_flush():
    assert tile_starts(100, 32, 24) == [0, 24, 48, 68]
    assert tile_starts(32, 32, 24) == [0]
    assert tile_starts(57, 32, 32) == [0, 25]
    w = blend_window(8, 12)
    assert w.shape == (8, 12) and float(w.max()) == 1.0 and float(w.min()) > 0
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.flip(1))


@pytest.mark.parametrize("window", WINDOWS)
def test_a_pointwise_model_gives_the_plain_forward_with_bounded_batches(pointwise, window):
    g = torch.Generator().manual_seed(1)
    image = torch.randn(3, 70, 91, generator=g)
    model = Recorder(pointwise)
    with torch.no_grad():
        expected = pointwise(image[None])[0]
    out = sliding_window(model, image, 32, overlap=0.25, num_classes=4, batch_size=3, window=window)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    ys, xs = tile_starts(70, 32, 24), tile_starts(91, 32, 24)
    assert sum(s[0] for s in model.shapes) == len(ys) * len(xs) == 12
    assert all(s[0] <= 3 and s[1:] == (3, 32, 32) for s in model.shapes), model.shapes


def test_a_batch_a_small_image_and_a_coarse_model(pointwise):
    g = torch.Generator().manual_seed(2)
    batch = torch.randn(2, 3, 40, 50, generator=g)
    with torch.no_grad():
        expected = pointwise(batch)
    out = sliding_window(pointwise, batch, (24, 32), overlap=0.5, batch_size=5)  # channels from the first forward
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # smaller than a tile: padded by reflection (repeatedly: 5 px to 32), cropped back
    small = torch.randn(3, 5, 20, generator=g)
    model = Recorder(pointwise)
    out = sliding_window(model, small, 32, batch_size=2)
    torch.testing.assert_close(out, pointwise(small[None])[0].detach(), atol=1e-5, rtol=1e-5)
    assert model.shapes == [(1, 3, 32, 32)]
    padded = reflect_pad(torch.arange(5.0).view(1, 1, 1, 5), 1, 12)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert reflect_pad(torch.ones(1, 1, 1, 3), 4, 3).shape == (1, 1, 4, 3)  # one row: replicated

    class Coarse(nn.Module):  # logits at stride 4, as a segmenter's head before upsampling
        def forward(self, x):
            return F.avg_pool2d(pointwise(x), 4)

    out = sliding_window(Coarse(), batch[0], 16, overlap=0.25, num_classes=4)
    assert out.shape == (4, 40, 50) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(pointwise, small, 32, overlap=1.0)
    with pytest.raises(ValueError, match="num_classes is 7"):
        sliding_window(pointwise, small, 32, num_classes=7)


# ---------------------------------------------------------------- dense CRF


def naive_mean_field(probs, image, iterations, pos_weight, pos_xy_std, bi_weight, bi_xy_std, bi_rgb_std):
    """Krähenbühl & Koltun's algorithm 1 with the dense N x N kernel and the Potts matrix, float64."""
    K, H, W = probs.shape
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    p = torch.stack([ys.flatten(), xs.flatten()], 1).double()
    c = image.double().reshape(image.shape[0], -1).T
    dp, dc = ((p[:, None] - p[None]) ** 2).sum(-1), ((c[:, None] - c[None]) ** 2).sum(-1)
    k = (bi_weight * torch.exp(-dp / (2 * bi_xy_std ** 2) - dc / (2 * bi_rgb_std ** 2))
         + pos_weight * torch.exp(-dp / (2 * pos_xy_std ** 2)))
    k.fill_diagonal_(0)
    potts = 1 - torch.eye(K, dtype=torch.float64)
    unary = -probs.double().log().reshape(K, -1)
    q = (-unary).softmax(0)
    for _ in range(iterations):
        q = (-unary - potts @ (q @ k.T)).softmax(0)
    return q.reshape(K, H, W)


def test_mean_field_equals_the_dense_matrix_algorithm():
    g = torch.Generator().manual_seed(0)
    probs = (2 * torch.rand(3, 12, 12, generator=g, dtype=torch.float64)).softmax(0)
    image = torch.randint(0, 256, (3, 12, 12), generator=g).double()
    params = dict(pos_weight=0.1, pos_xy_std=3.0, bi_weight=0.2, bi_xy_std=5.0, bi_rgb_std=60.0)  # Q not saturated
    expected = naive_mean_field(probs, image, 5, **params)
    assert (expected - probs).abs().max() > 0.3 and expected.max() < 0.99
    torch.testing.assert_close(dense_crf(probs, image, iterations=5, **params), expected, atol=1e-12, rtol=0)
    out32 = dense_crf(probs.float(), image.float(), iterations=5, **params)
    torch.testing.assert_close(out32.double(), expected, atol=1e-5, rtol=0)
    # a batch is each image on its own; no iteration leaves the softmax as it is
    both = dense_crf(torch.stack([probs, probs.flip(-1)]), torch.stack([image, image.flip(-1)]), iterations=5, **params)
    torch.testing.assert_close(both[1], expected.flip(-1), atol=1e-12, rtol=0)
    torch.testing.assert_close(dense_crf(probs, image, iterations=0), probs)


def scene(size: int, seed: int = 0):
    """A piecewise-constant colour image (background, a rectangle, a disc), its labels and a noisy
    softmax that gets about 70% of the pixels right."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(size, size, dtype=torch.long)
    truth[size // 4:3 * size // 4, size // 5:size // 2] = 1
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    truth[(yy - 0.6 * size) ** 2 + (xx - 0.7 * size) ** 2 < (0.2 * size) ** 2] = 2
    colours = torch.tensor([[30.0, 120, 200], [200, 60, 40], [90, 200, 90]])
    image = (colours[truth].permute(2, 0, 1) + 8 * torch.randn(3, size, size, generator=g)).clamp(0, 255)
    logits = 1.5 * F.one_hot(truth, 3).permute(2, 0, 1).float() + 1.2 * torch.randn(3, size, size, generator=g)
    return truth, image, logits.softmax(0)


def test_the_crf_cleans_a_noisy_prediction_exactly_and_downsampled():
    truth, image, probs = scene(64)

    def accuracy(q):
        return float((q.argmax(0) == truth).float().mean())

    before = accuracy(probs)
    exact = dense_crf(probs, image)  # DeepLab's settings; 4096 pixels: solved exactly
    coarse = dense_crf(probs, image, max_pixels=1024)  # solved at 32x32, messages upsampled
    assert 0.6 < before < 0.8
    assert accuracy(exact) > 0.97 and accuracy(coarse) > 0.95, (before, accuracy(exact), accuracy(coarse))
    assert float((exact.argmax(0) == coarse.argmax(0)).float().mean()) > 0.95
    torch.testing.assert_close(coarse.sum(0), torch.ones(64, 64))
    with pytest.raises(ValueError, match="backend"):
        dense_crf(probs, image, backend="opencv")
    with pytest.raises(ValueError, match="same size"):
        dense_crf(probs, image[:, :10])


def test_the_pydensecrf_backend_agrees_where_installed():
    pytest.importorskip("pydensecrf.densecrf")
    truth, image, probs = scene(64, seed=1)
    ours, theirs = dense_crf(probs, image), dense_crf(probs, image, backend="pydensecrf")
    assert theirs.shape == ours.shape
    assert float((ours.argmax(0) == theirs.argmax(0)).float().mean()) > 0.95
    assert float((theirs.argmax(0) == truth).float().mean()) > 0.95
