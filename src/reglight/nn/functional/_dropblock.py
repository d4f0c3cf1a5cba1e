r"""Functional DropBlock: the block-seed rate γ and an exact, fast block mask (sparse or dense sampler)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reglight._validation import check_positive_int, check_probability

__all__ = ["drop_block2d", "drop_block2d_gamma"]


def drop_block2d_gamma(p: float, block_size: int, height: int, width: int) -> float:
    r"""Seed rate $\gamma$ of DropBlock for a feature map of `height × width`.

    $$
    \gamma = \frac{p}{b_h b_w}\,\frac{H W}{(H - b_h + 1)(W - b_w + 1)},
    \qquad b_h = \min(b, H),\; b_w = \min(b, W),
    $$

    so that the expected number of units covered by seeds, overlaps counted, is $p\,HW$
    (Ghiasi et al., 2018, eq. 1). Blocks larger than the map are clipped to it.

    Args:
        p: Target fraction of dropped units, in `[0, 1)`.
        block_size: Side of the square block, `>= 1`.
        height: Height $H$ of the feature map, `>= 1`.
        width: Width $W$ of the feature map, `>= 1`.

    Returns:
        The Bernoulli rate of the block seeds, in `[0, p]`.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> from reglight.nn.functional import drop_block2d_gamma
        >>> round(drop_block2d_gamma(0.1, 7, 56, 56), 6)
        0.00256
    """
    p = check_probability("p", p)
    block_size = check_positive_int("block_size", block_size)
    height = check_positive_int("height", height)
    width = check_positive_int("width", width)
    bh, bw = min(block_size, height), min(block_size, width)
    valid = (height - bh + 1) * (width - bw + 1)
    return p * height * width / (bh * bw * valid)


# Cap on the number of geometric gaps drawn by the sparse sampler: lam + 10 sqrt(lam) + 30 for an
# expected seed count lam. By the Chernoff bound P(Binomial > cap) < exp(-45) ~ 3e-20 for every lam.
def _seed_cap(lam: float) -> int:
    return math.ceil(lam + 10.0 * math.sqrt(lam) + 30.0)


def _sample_seed_positions(n_sites: int, gamma: float, device: torch.device) -> Tensor:
    """Flat indices of iid Bernoulli(`gamma`) successes among `n_sites` sites, padded with `n_sites`.

    The gaps between successes are geometric, so the cumulative sums of geometric draws are exactly
    the success positions. A fixed number of draws (`_seed_cap`) keeps the shape independent of
    the data; positions past the end become the padding value `n_sites`.
    """
    cap = _seed_cap(n_sites * gamma)
    gaps = torch.empty(cap, dtype=torch.long, device=device).geometric_(gamma)
    return gaps.cumsum_(0).sub_(1).clamp_max_(n_sites)


def _blocks_from_seed_positions(
    positions: Tensor, planes: int, height: int, width: int, bh: int, bw: int, dtype: torch.dtype
) -> Tensor:
    """Keep-mask `(planes, height, width)`: 0 inside the `bh × bw` block of each seed, 1 elsewhere.

    `positions` index the seed grid `(planes, height - bh + 1, width - bw + 1)` (the top-left
    corners of blocks that fit); values `>= planes * hv * wv` are padding and drop nothing.
    """
    hv, wv = height - bh + 1, width - bw + 1
    numel = planes * height * width
    plane, rest = positions.div(hv * wv, rounding_mode="floor"), positions.remainder(hv * wv)
    row, col = rest.div(wv, rounding_mode="floor"), rest.remainder(wv)
    corner = plane.mul_(height * width).add_(row.mul_(width)).add_(col)
    # padding positions map to plane >= planes, i.e. corner >= numel: send them to a scratch slot
    rows = torch.arange(bh, device=positions.device).mul_(width)
    offsets = (rows[:, None] + torch.arange(bw, device=positions.device)).view(-1)
    index = (corner[:, None] + offsets).view(-1).clamp_max_(numel)
    keep = torch.ones(numel + 1, dtype=dtype, device=positions.device)
    keep.index_fill_(0, index, 0.0)
    return keep[:numel].view(planes, height, width)


def _dilate(seeds: Tensor, bh: int, bw: int) -> Tensor:
    """Boolean dilation: `out[..., i, j]` is true if a seed lies in `[i-bh+1, i] × [j-bw+1, j]`.

    `seeds` is `(P, hv, wv)`; the output is `(P, hv + bh - 1, wv + bw - 1)`. A window of width
    `k` is built by doubling (OR of the array and a shifted copy), `ceil(log2 k)` steps per axis.
    """
    out = F.pad(seeds, (bw - 1, bw - 1, bh - 1, bh - 1))
    for k, dim in ((bw, -1), (bh, -2)):
        width = 1
        while width < k:
            step = min(width, k - width)
            length = out.shape[dim]
            out = out.narrow(dim, 0, length - step) | out.narrow(dim, step, length - step)
            width += step
    return out


# The sparse sampler writes cap * bh * bw indices; it is used while that is at most this fraction of
# the mask's entries (beyond, a dense Bernoulli grid and a dilation are cheaper).
_SPARSE_MAX_FILL = 0.5


def _block_keep_mask(
    planes: int, height: int, width: int, bh: int, bw: int, gamma: float, like: Tensor
) -> Tensor:
    """Random DropBlock keep-mask `(planes, height, width)` in `like`'s dtype (1 = keep, 0 = drop)."""
    hv, wv = height - bh + 1, width - bw + 1
    n_sites = planes * hv * wv
    numel = planes * height * width
    # Sparse path: write the blocks of the (few) seeds; dense path: Bernoulli grid + dilation. The
    # choice depends on shapes and rates only (no data), so every rank and every step agree.
    sparse_cost = _seed_cap(n_sites * gamma) * bh * bw
    if like.device.type in ("cpu", "cuda") and sparse_cost <= _SPARSE_MAX_FILL * numel:
        positions = _sample_seed_positions(n_sites, gamma, like.device)
        return _blocks_from_seed_positions(positions, planes, height, width, bh, bw, like.dtype)
    seeds = torch.empty((planes, hv, wv), dtype=torch.bool, device=like.device).bernoulli_(gamma)
    return _dilate(seeds, bh, bw).logical_not_().to(like.dtype)


def drop_block2d(
    input: Tensor,
    p: float = 0.1,
    block_size: int = 7,
    training: bool = True,
    shared_channels: bool = False,
) -> Tensor:
    r"""DropBlock: drop contiguous square regions of feature maps.

    Block seeds are drawn only where a whole `b_h × b_w` block fits (top-left corners in
    $[0, H-b_h] × [0, W-b_w]$), each with probability $\gamma$ of
    [`drop_block2d_gamma`][reglight.nn.functional.drop_block2d_gamma]; every unit covered by a block is dropped. The kept units are rescaled so
    that the mean is preserved over the batch:

    $$
    \tilde x = x \odot M \cdot \frac{\#M}{\sum M},
    $$

    with $M$ the keep-mask and $\#M$ its number of entries (Ghiasi et al., 2018,
    "DropBlock: a regularization method for convolutional networks", NeurIPS, Algorithm 1). Blocks are
    clipped to the map (`b_h = min(block_size, H)`), so rectangular maps, even block sizes and blocks
    larger than the map are all handled.

    The mask is exact: the seeds are iid Bernoulli($\gamma$), drawn either as a dense grid or, when
    few, through their geometric gaps (much faster for the usual small $\gamma$).

    Args:
        input: Feature maps `(N, C, H, W)`.
        p: Nominal fraction of dropped units, in `[0, 1)`. Overlapping blocks make the realised fraction
            slightly smaller ($1-(1-\gamma)^{b^2}$ in the interior of the map).
        block_size: Side of the square block, `>= 1` (`1` is ordinary dropout with a batch-wide
            rescaling).
        training: Apply the mask.
        shared_channels: One mask per sample shared by all channels (timm's `couple_channels`)
            instead of one mask per feature map (the paper's and torchvision's choice).

    Returns:
        A tensor shaped like `input`.

    Raises:
        ValueError: If `p` or `block_size` is out of range or `input` is not 4-dimensional.

    Examples:
        >>> import torch
        >>> from reglight.nn.functional import drop_block2d
        >>> _ = torch.manual_seed(0)
        >>> y = drop_block2d(torch.ones(2, 3, 12, 10), p=0.3, block_size=4)
        >>> y.shape, bool(((y == 0) | (y > 1)).all())
        (torch.Size([2, 3, 12, 10]), True)
    """
    p = check_probability("p", p)
    block_size = check_positive_int("block_size", block_size)
    if input.dim() != 4:
        raise ValueError(
            f"`input` must be 4-dimensional (N, C, H, W), got shape {tuple(input.shape)}"
        )
    if not training or p == 0.0 or input.numel() == 0:
        return input
    n, c, h, w = input.shape
    bh, bw = min(block_size, h), min(block_size, w)
    gamma = drop_block2d_gamma(p, block_size, h, w)
    planes = n if shared_channels else n * c
    with torch.no_grad():
        keep = _block_keep_mask(planes, h, w, bh, bw, gamma, input)
        acc = torch.promote_types(keep.dtype, torch.float32)
        kept = keep.sum(dtype=acc).clamp_min_(1.0)
        keep.mul_((keep.numel() / kept).to(keep.dtype))
        keep = keep.view(n, 1 if shared_channels else c, h, w)
    return input * keep
