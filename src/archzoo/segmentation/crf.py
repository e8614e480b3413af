"""Fully connected CRF post-processing of any segmenter's softmax (Krähenbühl & Koltun 2011,
arXiv:1210.5644), as DeepLab refines its output (Chen et al., arXiv:1606.00915, sec. 3.3).

Every pixel is connected to every other; the energy of a labelling ``x`` is

    E(x) = sum_i -log P_i(x_i) + sum_{i<j} [x_i != x_j] k(f_i, f_j)
    k = w_bi exp(-|p_i - p_j|^2 / 2 theta_a^2 - |I_i - I_j|^2 / 2 theta_b^2)    (bilateral: like pixels)
      + w_pos exp(-|p_i - p_j|^2 / 2 theta_g^2)                                   (smoothness)

with Potts compatibility, ``p`` pixel positions and ``I`` colours (0..255). Mean-field inference
(the paper's algorithm 1) iterates ``Q_i(l) ∝ P_i(l) exp(sum_{j != i} k(f_i, f_j) Q_j(l))``.

Our implementation (``backend="torch"``) is exact: the smoothness kernel is separable in y and x
(two matrix products), the bilateral one a dense ``[N, N]`` matrix computed once, ``4 N^2`` bytes
(64 MiB at the default ``max_pixels=4096``). A larger image is solved at a reduced resolution of
at most ``max_pixels`` pixels (positions stay in full-resolution units, every coarse pixel stands
for the full-resolution pixels it covers, so the kernels keep their reach and weight); the last
iteration's pairwise messages are then upsampled and applied to the full-resolution softmax, so
the result keeps the unaries' detail but the pairwise terms see colour edges only at the coarse
resolution. ``backend="pydensecrf"`` (``pip install pydensecrf2``, compiled) runs Krähenbühl's
permutohedral-lattice filtering at full resolution: fast at any size, approximate kernels (and it
counts a pixel's own term in its message).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BACKENDS = ("torch", "pydensecrf")
# DeepLab's values for VOC (arXiv:1606.00915 sec. 4.1; its released ResNet-101 model's theta_a, theta_b)
DEEPLAB = {"pos_weight": 3.0, "pos_xy_std": 3.0, "bi_weight": 4.0, "bi_xy_std": 67.0, "bi_rgb_std": 3.0}


def _gauss_matrix(n: int, spacing: float, std: float, like: torch.Tensor) -> torch.Tensor:
    """``[n, n]`` ``exp(-((i - j) spacing)^2 / 2 std^2)`` (dtype and device of ``like``)."""
    i = torch.arange(n, dtype=like.dtype, device=like.device)
    d = (i[:, None] - i[None, :]) * spacing
    return torch.exp(-0.5 * (d / std) ** 2)


def _positions(h: int, w: int, sy: float, sx: float, like: torch.Tensor) -> torch.Tensor:
    """``[h * w, 2]`` pixel centres in full-resolution pixel units of a grid of ``sy x sx`` cells."""
    y = (torch.arange(h, dtype=like.dtype, device=like.device) + 0.5) * sy
    x = (torch.arange(w, dtype=like.dtype, device=like.device) + 0.5) * sx
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), -1).reshape(-1, 2)


def _check(probs: torch.Tensor, image: torch.Tensor) -> None:
    if probs.ndim != 3 or image.ndim != 3 or probs.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"probs [K, H, W] and image [C, H, W] of the same size are needed, got "
                         f"{tuple(probs.shape)} and {tuple(image.shape)}")


@torch.no_grad()
def dense_crf(probs: torch.Tensor, image: torch.Tensor, *, iterations: int = 10, pos_weight: float = 3.0,
              pos_xy_std: float = 3.0, bi_weight: float = 4.0, bi_xy_std: float = 67.0, bi_rgb_std: float = 3.0,
              max_pixels: int = 4096, backend: str = "torch") -> torch.Tensor:
    """The mean-field marginals ``Q`` ``[K, H, W]`` (``[B, K, H, W]`` for a batch) of the dense CRF
    whose unaries are ``-log probs`` (a segmenter's softmax, at the image's size) and whose
    pairwise kernels see ``image`` (``[C, H, W]``, any channel count, values 0..255: the colour
    std is in those units). Defaults: DeepLab's VOC settings, 10 iterations. ``max_pixels``: the
    size of the problem solved exactly (see the module doc); ``backend``: ``torch`` or
    ``pydensecrf``. ``Q.argmax(-3)`` is the refined labelling.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if iterations < 0 or max_pixels < 1:
        raise ValueError(f"iterations must be >= 0 and max_pixels >= 1, got {iterations} and {max_pixels}")
    if probs.ndim == 4:
        if image.ndim != 4 or len(image) != len(probs):
            raise ValueError(f"a batch of probs {tuple(probs.shape)} needs a batch of images, got {tuple(image.shape)}")
        return torch.stack([dense_crf(p, i, iterations=iterations, pos_weight=pos_weight, pos_xy_std=pos_xy_std,
                                      bi_weight=bi_weight, bi_xy_std=bi_xy_std, bi_rgb_std=bi_rgb_std,
                                      max_pixels=max_pixels, backend=backend) for p, i in zip(probs, image)])
    _check(probs, image)
    args = (iterations, pos_weight, pos_xy_std, bi_weight, bi_xy_std, bi_rgb_std)
    if backend == "pydensecrf":
        return _pydensecrf(probs, image, *args)
    return _mean_field(probs, image, *args, max_pixels=max_pixels)


def _mean_field(probs, image, iterations, pos_weight, pos_xy_std, bi_weight, bi_xy_std, bi_rgb_std, *, max_pixels):
    K, H, W = probs.shape
    dtype = torch.float64 if probs.dtype == torch.float64 else torch.float32
    logp = probs.to(dtype).clamp(min=1e-8).log()
    img = image.to(probs.device, dtype)
    h, w = H, W
    if H * W > max_pixels:
        scale = math.sqrt(H * W / max_pixels)
        h, w = max(1, int(H / scale)), max(1, int(W / scale))
        logp_c = F.adaptive_avg_pool2d(probs.to(dtype)[None], (h, w))[0].clamp(min=1e-8).log()
        img = F.adaptive_avg_pool2d(img[None], (h, w))[0]
    else:
        logp_c = logp
    sy, sx = H / h, W / w
    area = sy * sx  # full-resolution pixels a coarse pixel stands for
    ky, kx = _gauss_matrix(h, sy, pos_xy_std, logp), _gauss_matrix(w, sx, pos_xy_std, logp)
    feats = torch.cat([_positions(h, w, sy, sx, logp) / bi_xy_std, img.reshape(img.shape[0], -1).T / bi_rgb_std], 1)
    bilateral = torch.cdist(feats, feats, compute_mode="donot_use_mm_for_euclid_dist").pow_(2).mul_(-0.5).exp_()
    bilateral.fill_diagonal_(0.0)  # j != i

    def message(q: torch.Tensor) -> torch.Tensor:  # sum_{j != i} k(f_i, f_j) Q_j(l), [K, h, w]
        smooth = ky @ q @ kx.T - q
        like = (q.reshape(K, -1) @ bilateral).reshape(K, h, w)  # the kernel is symmetric
        return area * (pos_weight * smooth + bi_weight * like)

    q, m = logp_c.softmax(0), torch.zeros_like(logp_c)
    for _ in range(iterations):
        m = message(q)
        q = (logp_c + m).softmax(0)
    if (h, w) == (H, W):
        return q.to(probs.dtype)
    m = F.interpolate(m[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    return (logp + m).softmax(0).to(probs.dtype)


def _pydensecrf(probs, image, iterations, pos_weight, pos_xy_std, bi_weight, bi_xy_std, bi_rgb_std):
    """The same model through pydensecrf (unnormalised kernels, Potts), at full resolution."""
    try:
        import numpy as np
        import pydensecrf.densecrf as dcrf
    except ImportError as e:  # pragma: no cover - optional
        raise ImportError("backend='pydensecrf' needs the pydensecrf2 package (pip install pydensecrf2)") from e
    K, H, W = probs.shape
    yx = np.stack(np.meshgrid(np.arange(H), np.arange(W), indexing="ij")).reshape(2, -1).astype(np.float32)
    colour = image.detach().cpu().float().numpy().reshape(image.shape[0], -1)
    crf = dcrf.DenseCRF(H * W, K)
    unary = -np.log(probs.detach().cpu().float().clamp(min=1e-8).numpy().reshape(K, -1))
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    bilateral = np.concatenate([yx / bi_xy_std, colour / bi_rgb_std])
    for feats, weight in ((yx / pos_xy_std, pos_weight), (bilateral, bi_weight)):
        crf.addPairwiseEnergy(np.ascontiguousarray(feats, dtype=np.float32), compat=weight, kernel=dcrf.DIAG_KERNEL,
                              normalization=dcrf.NO_NORMALIZATION)
    q = np.array(crf.inference(iterations), dtype=np.float32).reshape(K, H, W)
    return torch.from_numpy(q).to(probs.device, probs.dtype)
