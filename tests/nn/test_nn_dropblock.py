"""DropBlock2d against closed forms and a brute-force reference.

* the block mask of given seeds equals a loop that drops ``[r, r+bh) × [c, c+bw)`` for every seed;
* every pixel's drop probability over many independent maps equals the closed form
  ``1 - (1 - γ)^(a_i b_j)`` (``a_i b_j`` = seeds whose block covers the pixel), within 5 binomial
  standard errors: this checks γ, the placement (blocks only where they fit) and the sampler at once,
  for square and rectangular maps, odd and even blocks, blocks larger than the map, and both the sparse
  and the dense sampler.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reglight.nn import DropBlock2d
from reglight.nn import functional as RF
from reglight.nn.functional import _dropblock

Z = 5.0

# (H, W, block_size, p): square/odd, rectangular/even, block > H and W, block > W only, block 1
CONFIGS = [(12, 12, 3, 0.2), (16, 10, 4, 0.15), (7, 5, 9, 0.3), (20, 6, 8, 0.2), (9, 11, 1, 0.25)]


def reference_blocks(seeds: np.ndarray, bh: int, bw: int) -> np.ndarray:
    planes, hv, wv = seeds.shape
    out = np.zeros((planes, hv + bh - 1, wv + bw - 1), dtype=bool)
    for k, r, c in zip(*np.nonzero(seeds)):
        out[k, r : r + bh, c : c + bw] = True
    return out


def closed_form_drop_probability(h: int, w: int, block: int, p: float) -> np.ndarray:
    bh, bw = min(block, h), min(block, w)
    hv, wv = h - bh + 1, w - bw + 1
    gamma = p * h * w / (bh * bw * hv * wv)  # Ghiasi et al., eq. 1, written out independently
    a = np.array([min(i, hv - 1) - max(0, i - bh + 1) + 1 for i in range(h)])
    b = np.array([min(j, wv - 1) - max(0, j - bw + 1) + 1 for j in range(w)])
    return 1.0 - (1.0 - gamma) ** np.outer(a, b)


def test_gamma_formula() -> None:
    assert RF.drop_block2d_gamma(0.1, 7, 56, 56) == pytest.approx(0.1 / 49 * 3136 / 2500, rel=1e-15)
    assert RF.drop_block2d_gamma(0.2, 4, 16, 10) == pytest.approx(0.2 / 16 * 160 / (13 * 7))
    assert RF.drop_block2d_gamma(0.3, 9, 7, 5) == pytest.approx(0.3)  # one place: the whole map
    for h, w, b, p in CONFIGS:  # expected covered units, overlaps counted, is p * H * W
        bh, bw = min(b, h), min(b, w)
        gamma = RF.drop_block2d_gamma(p, b, h, w)
        assert gamma * (h - bh + 1) * (w - bw + 1) * bh * bw == pytest.approx(p * h * w)


@pytest.mark.parametrize(("h", "w", "block", "p"), CONFIGS)
def test_blocks_from_seeds_match_brute_force(h: int, w: int, block: int, p: float) -> None:
    bh, bw = min(block, h), min(block, w)
    seeds = torch.rand(6, h - bh + 1, w - bw + 1) < 0.2
    expected = torch.from_numpy(reference_blocks(seeds.numpy(), bh, bw))
    torch.testing.assert_close(_dropblock._dilate(seeds, bh, bw), expected, rtol=0, atol=0)
    n_sites = seeds.numel()
    positions = torch.cat([seeds.flatten().nonzero().flatten(), torch.full((5,), n_sites)])
    keep = _dropblock._blocks_from_seed_positions(positions, 6, h, w, bh, bw, torch.float32)
    torch.testing.assert_close(keep, (~expected).float(), rtol=0, atol=0)


def test_sparse_sampler_is_iid_bernoulli() -> None:
    n_sites, gamma, draws = 40, 0.15, 5000
    positions = torch.stack([_dropblock._sample_seed_positions(n_sites, gamma, torch.device("cpu"))
                             for _ in range(draws)])  # fmt: skip
    valid = positions < n_sites
    hits = torch.zeros(draws, n_sites + 1).scatter_(1, positions, 1.0)[:, :n_sites]
    assert (hits.sum(1) == valid.sum(1)).all()  # distinct sites, no repeats
    freq = hits.mean(0).double()
    assert ((freq - gamma).abs() <= Z * math.sqrt(gamma * (1 - gamma) / draws)).all()
    counts = hits.sum(1).double()
    expected_var = n_sites * gamma * (1 - gamma)
    assert abs(counts.mean().item() - n_sites * gamma) <= Z * math.sqrt(expected_var / draws)
    assert abs(counts.var().item() - expected_var) <= Z * expected_var * math.sqrt(2 / draws) * 1.2
    # sites are independent: the covariance of two sites is 0 within the standard error
    cov = torch.cov(hits[:, :2].T.double())[0, 1].item()
    assert abs(cov) <= Z * gamma * (1 - gamma) / math.sqrt(draws)


@pytest.mark.parametrize("sampler", ["sparse", "dense"])
@pytest.mark.parametrize(("h", "w", "block", "p"), CONFIGS)
def test_per_pixel_drop_probability_matches_closed_form(
    monkeypatch: pytest.MonkeyPatch, sampler: str, h: int, w: int, block: int, p: float
) -> None:
    monkeypatch.setattr(_dropblock, "_SPARSE_MAX_FILL", math.inf if sampler == "sparse" else 0.0)
    planes = 200 * 20
    y = RF.drop_block2d(torch.ones(200, 20, h, w), p, block)
    drop = (y == 0).double().reshape(planes, h, w)
    q = torch.from_numpy(closed_form_drop_probability(h, w, block, p))
    se = (q * (1 - q) / planes).sqrt()
    assert ((drop.mean(0) - q).abs() <= Z * se + 1e-12).all()
    # maps are independent: their dropped fractions average to the mean of q within Z standard errors
    per_map = drop.mean((1, 2))
    assert abs(per_map.mean().item() - q.mean().item()) <= Z * per_map.std().item() / planes**0.5
    # the nominal p is the realised fraction up to block overlaps (a few per cent of p here)
    assert drop.mean().item() == pytest.approx(p, rel=0.25)


@pytest.mark.parametrize(("h", "w", "block", "p"), CONFIGS)
def test_dropped_region_is_a_union_of_whole_blocks(h: int, w: int, block: int, p: float) -> None:
    bh, bw = min(block, h), min(block, w)
    y = RF.drop_block2d(torch.ones(8, 4, h, w), p, block)
    drop = (y == 0).float().flatten(0, 1).unsqueeze(1)
    # windows that fit in the map and are fully dropped, then their union (a morphological opening)
    full = (F.avg_pool2d(drop, (bh, bw), stride=1) > 1 - 1e-6).float()
    union = F.conv_transpose2d(full, torch.ones(1, 1, bh, bw)) > 0
    assert drop.sum() > 0
    torch.testing.assert_close(union, drop.bool(), rtol=0, atol=0)


def test_rescaling_by_count_of_mask_over_count_of_ones() -> None:
    x = torch.ones(4, 3, 10, 10)
    y = RF.drop_block2d(x, 0.3, 3)
    kept = (y != 0).sum().item()
    torch.testing.assert_close(y[y != 0], torch.full((kept,), x.numel() / kept))
    assert y.sum().item() == pytest.approx(x.numel(), rel=1e-5)  # the batch mean is preserved
    z = torch.randn(4, 3, 10, 10, dtype=torch.float64, requires_grad=True)
    out = RF.drop_block2d(z, 0.3, 3)
    (grad,) = torch.autograd.grad(out.sum(), z)
    torch.testing.assert_close(grad * z, out.detach())


def test_shared_channels_and_per_channel_masks() -> None:
    y = DropBlock2d(0.3, 3, shared_channels=True)(torch.ones(16, 5, 9, 9))
    assert (y == y[:, :1]).all()
    z = DropBlock2d(0.3, 3)(torch.ones(16, 5, 9, 9))
    assert not (z == z[:, :1]).all()


def test_block_larger_than_map_drops_whole_maps() -> None:
    p, planes = 0.3, 40_000
    y = RF.drop_block2d(torch.ones(planes, 1, 3, 4), p, 5).view(planes, -1)
    whole = (y == 0).all(1) | (y != 0).all(1)
    assert whole.all()
    dropped = (y[:, 0] == 0).double().mean().item()
    assert abs(dropped - p) <= Z * math.sqrt(p * (1 - p) / planes)


def test_eval_p_zero_and_empty_are_identity() -> None:
    x = torch.randn(2, 3, 8, 8)
    layer = DropBlock2d(0.5, 3)
    assert layer.eval()(x) is x
    assert RF.drop_block2d(x, 0.0, 3) is x
    empty = torch.randn(0, 3, 8, 8)
    assert RF.drop_block2d(empty, 0.5, 3) is empty
    assert "block_size=3" in repr(layer) and "shared_channels=False" in repr(layer)


def test_every_map_dropped_gives_zeros_not_nan() -> None:
    y = RF.drop_block2d(torch.ones(1, 1, 2, 2), 0.999, 2)
    assert torch.isfinite(y).all()
