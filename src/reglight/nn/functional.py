r"""Pure tensor functions behind the modules of `reglight.nn`.

Each function takes the tensors and the hyperparameters explicitly and keeps no state, in the style of
`torch.nn.functional`; the modules in `reglight.nn` store the hyperparameters and call them.
Random masks are built without gradient tracking and without host synchronisation (no ``.item()``, no
data-dependent shapes), so the functions run under DDP and ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reglight._compile import FallbackCompiled
from reglight._validation import (
    check_choice,
    check_in_range,
    check_positive,
    check_positive_int,
    check_probability,
)

__all__ = [
    "batch_renorm",
    "drop_block2d",
    "drop_block2d_gamma",
    "drop_connect",
    "drop_path",
    "dropout",
    "gaussian_dropout",
    "ghost_batch_norm",
    "layer_norm2d",
    "locked_dropout",
]

DROPOUT_MODES = ("inverted", "classic")


# --------------------------------------------------------------------------------------------------
# Dropout family
# --------------------------------------------------------------------------------------------------
def dropout(input: Tensor, p: float = 0.5, training: bool = True, mode: str = "inverted") -> Tensor:
    r"""Bernoulli dropout with the inverted or the classic scaling convention.

    Each unit is kept with probability $1-p$: $\tilde h = h \odot z$, $z_i \sim
    \mathrm{Bernoulli}(1-p)$ (Srivastava et al., 2014, "Dropout: a simple way to prevent neural
    networks from overfitting", JMLR 15).

    * ``mode="inverted"`` (torch's convention): $\tilde h = h \odot z / (1-p)$ while training,
      $h$ at evaluation. It calls `torch.nn.functional.dropout`.
    * ``mode="classic"`` (the paper's convention): $\tilde h = h \odot z$ while training,
      $(1-p)\,h$ at evaluation.

    Both give $\mathbb E[\tilde h] = $ the evaluation output.

    Args:
        input: Tensor of any shape.
        p: Probability of dropping a unit, in ``[0, 1)``.
        training: Apply the random mask (``True``) or the deterministic evaluation rule (``False``).
        mode: ``"inverted"`` or ``"classic"``.

    Returns:
        A tensor shaped like ``input``.

    Raises:
        ValueError: If ``p`` is outside ``[0, 1)`` or ``mode`` is unknown.

    Example:
        >>> import torch
        >>> from reglight.nn.functional import dropout
        >>> x = torch.ones(1000)
        >>> y = dropout(x, 0.5, mode="classic")
        >>> sorted(y.unique().tolist())
        [0.0, 1.0]
        >>> dropout(x, 0.5, training=False, mode="classic")[:3]
        tensor([0.5000, 0.5000, 0.5000])
    """
    p = check_probability("p", p)
    check_choice("mode", mode, DROPOUT_MODES)
    if mode == "inverted":
        return F.dropout(input, p, training)
    if not training:
        return input * (1.0 - p) if p > 0.0 else input
    if p == 0.0:
        return input
    with torch.no_grad():
        mask = torch.empty_like(input).bernoulli_(1.0 - p)
    return input * mask


def gaussian_dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    r"""Multiplicative Gaussian noise with the variance of Bernoulli dropout.

    $$
    \tilde h = h \odot \varepsilon, \qquad \varepsilon_i \sim \mathcal N\!\left(1,
    \tfrac{p}{1-p}\right),
    $$

    the continuous counterpart of inverted dropout with the same mean and variance (Srivastava et al.,
    2014, section 10). Identity when ``training`` is ``False`` or ``p == 0``.

    Args:
        input: Tensor of any shape.
        p: Drop rate of the matching Bernoulli dropout, in ``[0, 1)``.
        training: Apply the noise.

    Returns:
        A tensor shaped like ``input``.

    Raises:
        ValueError: If ``p`` is outside ``[0, 1)``.

    Example:
        >>> import torch
        >>> from reglight.nn.functional import gaussian_dropout
        >>> _ = torch.manual_seed(0)
        >>> y = gaussian_dropout(torch.ones(100_000), p=0.5)
        >>> round(y.mean().item(), 1), round(y.var().item(), 1)
        (1.0, 1.0)
    """
    p = check_probability("p", p)
    if not training or p == 0.0:
        return input
    with torch.no_grad():
        noise = torch.empty_like(input).normal_(1.0, math.sqrt(p / (1.0 - p)))
    return input * noise


def drop_connect(weight: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    r"""DropConnect on a weight tensor: drop weights instead of activations.

    $$
    \tilde W = W \odot M / (1-p), \qquad M_{ij} \sim \mathrm{Bernoulli}(1-p),
    $$

    one mask per call (shared by the mini-batch); use the result in `torch.nn.functional.linear`
    or a convolution. The $1/(1-p)$ scaling makes the plain weights the evaluation rule (the
    mean-field approximation; Wan et al., 2013, "Regularization of neural networks using
    DropConnect", ICML, sample at inference instead).

    Args:
        weight: Weight tensor of any shape.
        p: Probability of dropping a weight, in ``[0, 1)``.
        training: Apply the mask.

    Returns:
        The masked and rescaled weight (``weight`` itself when not training or ``p == 0``).

    Raises:
        ValueError: If ``p`` is outside ``[0, 1)``.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from reglight.nn.functional import drop_connect
        >>> w, x = torch.randn(4, 3), torch.randn(2, 3)
        >>> F.linear(x, drop_connect(w, 0.5)).shape
        torch.Size([2, 4])
    """
    p = check_probability("p", p)
    return F.dropout(weight, p, training)


def locked_dropout(
    input: Tensor, p: float = 0.5, training: bool = True, batch_first: bool = True
) -> Tensor:
    r"""Variational ("locked") dropout: one mask per sequence, shared by all time steps.

    For an input $h_{n,t,d}$ (batch first) the output is $h_{n,t,d}\, z_{n,d} / (1-p)$ with
    $z_{n,d} \sim \mathrm{Bernoulli}(1-p)$ drawn once per sequence and feature, the same for every
    $t$ (Gal & Ghahramani, 2016, "A theoretically grounded application of dropout in recurrent
    neural networks", NeurIPS).

    Args:
        input: Tensor shaped ``(N, T, D)`` (``batch_first=True``) or ``(T, N, D)``.
        p: Probability of dropping a feature of a sequence, in ``[0, 1)``.
        training: Apply the mask.
        batch_first: Whether the batch is dimension 0 (else dimension 1, time first).

    Returns:
        A tensor shaped like ``input``.

    Raises:
        ValueError: If ``p`` is outside ``[0, 1)`` or ``input`` is not 3-dimensional.

    Example:
        >>> import torch
        >>> from reglight.nn.functional import locked_dropout
        >>> y = locked_dropout(torch.ones(2, 5, 4), 0.5)
        >>> bool((y == y[:, :1]).all())  # the same mask at every time step
        True
    """
    p = check_probability("p", p)
    if input.dim() != 3:
        raise ValueError(
            "`input` must be 3-dimensional, (N, T, D) with batch_first=True or (T, N, D), "
            f"got shape {tuple(input.shape)}"
        )
    if not training or p == 0.0:
        return input
    n, t, d = input.shape
    shape = (n, 1, d) if batch_first else (1, t, d)
    with torch.no_grad():
        mask = input.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return input * mask


def drop_path(
    input: Tensor, p: float = 0.1, training: bool = True, scale_by_keep: bool = True
) -> Tensor:
    r"""Stochastic depth: drop the whole residual branch of a sample.

    $$
    \tilde f(x)_n = f(x)_n\, b_n / (1-p), \qquad b_n \sim \mathrm{Bernoulli}(1-p),
    $$

    one draw per sample $n$ (Huang et al., 2016, "Deep networks with stochastic depth", ECCV).
    Apply it to the branch output before the residual sum: ``x + drop_path(f(x), p)``.

    Args:
        input: Branch output, batch in dimension 0, any number of further dimensions.
        p: Probability of dropping the branch of a sample, in ``[0, 1)``.
        training: Apply the mask.
        scale_by_keep: Divide the kept samples by $1-p$ (so evaluation needs no rescaling).

    Returns:
        A tensor shaped like ``input``.

    Raises:
        ValueError: If ``p`` is outside ``[0, 1)`` or ``input`` is 0-dimensional.

    Example:
        >>> import torch
        >>> from reglight.nn.functional import drop_path
        >>> y = drop_path(torch.ones(8, 3, 2, 2), 0.5)
        >>> y.flatten(1).std(dim=1).tolist() == [0.0] * 8  # whole samples, dropped or kept
        True
    """
    p = check_probability("p", p)
    if input.dim() < 1:
        raise ValueError("`input` must have a batch dimension, got a 0-dimensional tensor")
    if not training or p == 0.0:
        return input
    shape = (input.shape[0],) + (1,) * (input.dim() - 1)
    with torch.no_grad():
        mask = input.new_empty(shape).bernoulli_(1.0 - p)
        if scale_by_keep:
            mask.div_(1.0 - p)
    return input * mask


# --------------------------------------------------------------------------------------------------
# DropBlock
# --------------------------------------------------------------------------------------------------
def drop_block2d_gamma(p: float, block_size: int, height: int, width: int) -> float:
    r"""Seed rate $\gamma$ of DropBlock for a feature map of ``height × width``.

    $$
    \gamma = \frac{p}{b_h b_w}\,\frac{H W}{(H - b_h + 1)(W - b_w + 1)},
    \qquad b_h = \min(b, H),\; b_w = \min(b, W),
    $$

    so that the expected number of units covered by seeds, overlaps counted, is $p\,HW$
    (Ghiasi et al., 2018, eq. 1). Blocks larger than the map are clipped to it.

    Args:
        p: Target fraction of dropped units, in ``[0, 1)``.
        block_size: Side of the square block, ``>= 1``.
        height: Height $H$ of the feature map, ``>= 1``.
        width: Width $W$ of the feature map, ``>= 1``.

    Returns:
        The Bernoulli rate of the block seeds, in ``[0, p]``.

    Raises:
        ValueError: If an argument is out of range.

    Example:
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
    """Flat indices of iid Bernoulli(``gamma``) successes among ``n_sites`` sites, padded with ``n_sites``.

    The gaps between successes are geometric, so the cumulative sums of geometric draws are exactly
    the success positions. A fixed number of draws (`_seed_cap`) keeps the shape independent of
    the data; positions past the end become the padding value ``n_sites``.
    """
    cap = _seed_cap(n_sites * gamma)
    gaps = torch.empty(cap, dtype=torch.long, device=device).geometric_(gamma)
    return gaps.cumsum_(0).sub_(1).clamp_max_(n_sites)


def _blocks_from_seed_positions(
    positions: Tensor, planes: int, height: int, width: int, bh: int, bw: int, dtype: torch.dtype
) -> Tensor:
    """Keep-mask ``(planes, height, width)``: 0 inside the ``bh × bw`` block of each seed, 1 elsewhere.

    ``positions`` index the seed grid ``(planes, height - bh + 1, width - bw + 1)`` (the top-left
    corners of blocks that fit); values ``>= planes * hv * wv`` are padding and drop nothing.
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
    """Boolean dilation: ``out[..., i, j]`` is true if a seed lies in ``[i-bh+1, i] × [j-bw+1, j]``.

    ``seeds`` is ``(P, hv, wv)``; the output is ``(P, hv + bh - 1, wv + bw - 1)``. A window of width
    ``k`` is built by doubling (OR of the array and a shifted copy), ``ceil(log2 k)`` steps per axis.
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
    """Random DropBlock keep-mask ``(planes, height, width)`` in ``like``'s dtype (1 = keep, 0 = drop)."""
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

    Block seeds are drawn only where a whole ``b_h × b_w`` block fits (top-left corners in
    $[0, H-b_h] × [0, W-b_w]$), each with probability $\gamma$ of
    `drop_block2d_gamma`; every unit covered by a block is dropped. The kept units are rescaled so
    that the mean is preserved over the batch:

    $$
    \tilde x = x \odot M \cdot \frac{\#M}{\sum M},
    $$

    with $M$ the keep-mask and $\#M$ its number of entries (Ghiasi et al., 2018,
    "DropBlock: a regularization method for convolutional networks", NeurIPS, Algorithm 1). Blocks are
    clipped to the map (``b_h = min(block_size, H)``), so rectangular maps, even block sizes and blocks
    larger than the map are all handled.

    The mask is exact: the seeds are iid Bernoulli($\gamma$), drawn either as a dense grid or, when
    few, through their geometric gaps (much faster for the usual small $\gamma$).

    Args:
        input: Feature maps ``(N, C, H, W)``.
        p: Nominal fraction of dropped units, in ``[0, 1)``. Overlapping blocks make the realised fraction
            slightly smaller ($1-(1-\gamma)^{b^2}$ in the interior of the map).
        block_size: Side of the square block, ``>= 1`` (``1`` is ordinary dropout with a batch-wide
            rescaling).
        training: Apply the mask.
        shared_channels: One mask per sample shared by all channels (timm's ``couple_channels``)
            instead of one mask per feature map (the paper's and torchvision's choice).

    Returns:
        A tensor shaped like ``input``.

    Raises:
        ValueError: If ``p`` or ``block_size`` is out of range or ``input`` is not 4-dimensional.

    Example:
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


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------
def _values_per_channel(input: Tensor) -> int:
    return input.numel() // input.shape[1] if input.shape[1] else 0


def _reduce_dims(input: Tensor) -> list[int]:
    return [0, *range(2, input.dim())]


def _chunk_sizes(n: int, chunk: int, like: Tensor) -> Tensor:
    """Samples in each virtual batch of ``n`` samples, a ``(groups, 1)`` tensor like ``like``."""
    groups = -(-n // chunk)
    sizes = like.new_full((groups, 1), float(chunk))
    if groups:
        sizes[-1] = n - (groups - 1) * chunk
    return sizes


# Largest number of elements per operand in one block of the CPU input-gradient pass
# (`_ghost_input_grad`, eager): the second op of a block reads what the first wrote while it is still
# in cache, and there are few enough blocks for the per-call cost not to matter.
_GHOST_BLOCK = 1 << 20
# Devices on which `_ghost_input_grad` writes the input gradient; elsewhere (CUDA, ...) torch's
# batch-norm backward writes each virtual batch's slice through its ``out=`` form.
_GHOST_DIRECT_GRAD_DEVICES = ("cpu",)


def _ghost_grad_kernel(out: Tensor, dy: Tensor, x: Tensor, a: Tensor, b: Tensor, c: Tensor) -> None:
    out.copy_(dy * a + x * b + c)


_GHOST_FUSED: FallbackCompiled | None = None


def _ghost_fused_kernel() -> FallbackCompiled:
    """The compiled one-pass input gradient (created at first use, shared by all layers)."""
    global _GHOST_FUSED
    if _GHOST_FUSED is None:
        _GHOST_FUSED = FallbackCompiled(_ghost_grad_kernel, "the fused ghost batch-norm gradient")
    return _GHOST_FUSED


def _ghost_input_grad(
    grad_out: Tensor, x: Tensor, scale: Tensor, means: Tensor, invstds: Tensor,
    sum_dy: Tensor, sum_dy_xhat: Tensor, counts: Tensor, chunk: int, fused: bool = False,
) -> Tensor:  # fmt: skip
    r"""Batch-norm input gradient of every virtual batch, written straight into one tensor.

    Per virtual batch $g$ and channel $c$ (with $s = \gamma\,\sigma^{-1}$, $m$ values per channel):
    $\partial x = s\,(\partial y - \overline{\partial y} - \hat x\,\overline{\partial y\,\hat x})
    = A\,\partial y + B\,x + C$ with $A = s$, $B = -s\,\sigma^{-1}\,\overline{\partial y\,\hat x}$,
    $C = -s\,\overline{\partial y} - B\mu$. torch's batch-norm backward has no kernel that writes
    into a slice (its ``out=`` form allocates every chunk's gradient and copies it, and on CPU the
    fresh pages of those temporaries cost as much again). Here each block of samples of a virtual batch
    takes two vectorised ops: ``A dy + C`` by torch's per-channel affine kernel (batch norm in
    evaluation mode with mean 0 and variance 1, which writes into the output slice), then ``+= B x``.
    With ``fused`` one ``torch.compile``'d pass per virtual batch computes all three terms (the eager
    ops take over if compilation fails).
    """
    n, channels = x.shape[0], x.shape[1]
    mean_dy, mean_dy_xhat = sum_dy / counts, sum_dy_xhat / counts
    coef_b = -scale * invstds * mean_dy_xhat
    coef_c = -scale * mean_dy - coef_b * means
    grad_x = torch.empty_like(x)
    broadcast = (1, channels) + (1,) * (x.dim() - 2)
    if fused:
        kernel = _ghost_fused_kernel()
        for g, s in enumerate(range(0, n, chunk)):
            part = slice(s, s + chunk)
            coefs = (scale[g].view(broadcast), coef_b[g].view(broadcast), coef_c[g].view(broadcast))
            if not kernel(grad_x[part], grad_out[part], x[part], *coefs):
                break  # could not compile (warned once): the first chunk fails, the eager ops follow
        else:
            return grad_x
    zero, one = means.new_zeros(channels), means.new_ones(channels)
    unused = means.new_empty(0)
    per_sample = max(x.numel() // max(n, 1), 1)
    samples = max(1, _GHOST_BLOCK // per_sample)
    for g, s in enumerate(range(0, n, chunk)):
        b = coef_b[g].view(broadcast)
        stop = min(s + chunk, n)
        for t in range(s, stop, samples):
            u = min(t + samples, stop)
            out = grad_x[t:u]
            torch.ops.aten.native_batch_norm.out(
                grad_out[t:u], scale[g], coef_c[g], zero, one, False, 0.0, 0.0,
                out=out, save_mean=unused, save_invstd=unused,
            )  # fmt: skip
            out.addcmul_(x[t:u], b)
    return grad_x


class _GhostBatchNormFn(torch.autograd.Function):
    """Batch norm of consecutive sub-batches with torch's fused kernels, assembled without ``cat``.

    Each chunk ``input[s:s+k]`` is a contiguous slice, so ``native_batch_norm.out`` writes straight
    into a slice of one pre-allocated output. Backward: torch's batch-norm backward kernel reduces
    each chunk (the sums of ``dy`` and ``dy * x_hat``, which are also the bias and weight gradients),
    then `_ghost_input_grad` writes the input gradient on CPU (or on any device with ``fused``);
    otherwise ``native_batch_norm_backward.out`` writes each chunk's slice.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        input: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        chunk: int,
        eps: float,
        fused: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        x = input.contiguous()
        out = torch.empty_like(x)
        starts = range(0, x.shape[0], chunk)
        means = x.new_empty(len(starts), x.shape[1])
        invstds = x.new_empty(len(starts), x.shape[1])
        for g, s in enumerate(starts):
            torch.ops.aten.native_batch_norm.out(
                x[s : s + chunk], weight, bias, None, None, True, 0.0, eps,
                out=out[s : s + chunk], save_mean=means[g], save_invstd=invstds[g],
            )  # fmt: skip
        ctx.save_for_backward(x, weight, means, invstds)  # type: ignore[arg-type]
        ctx.chunk, ctx.eps, ctx.fused = chunk, eps, fused  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(means, invstds)
        return out, means, invstds

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor, *_: Tensor
    ) -> tuple[Tensor | None, ...]:
        x, weight, means, invstds = ctx.saved_tensors  # type: ignore[attr-defined]
        chunk, eps, fused = ctx.chunk, ctx.eps, ctx.fused  # type: ignore[attr-defined]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]  # type: ignore[attr-defined]
        grad_out = grad_out.contiguous()
        groups, channels = means.shape
        starts = range(0, x.shape[0], chunk)
        sum_dy_xhat = means.new_empty(groups, channels)  # = weight gradient of each chunk
        sum_dy = means.new_empty(groups, channels)  # = bias gradient of each chunk
        grad_x: Tensor | None = None
        if fused or x.device.type in _GHOST_DIRECT_GRAD_DEVICES or not need_x:
            for g, s in enumerate(starts):
                _, sum_dy_xhat[g], sum_dy[g] = torch.ops.aten.native_batch_norm_backward(
                    grad_out[s : s + chunk], x[s : s + chunk], weight, None, None, means[g],
                    invstds[g], True, eps, [False, True, True],
                )  # fmt: skip
            if need_x:
                per_sample = _values_per_channel(x) // max(x.shape[0], 1)
                counts = _chunk_sizes(x.shape[0], chunk, means) * per_sample
                scale = invstds if weight is None else invstds * weight
                grad_x = _ghost_input_grad(
                    grad_out, x, scale, means, invstds, sum_dy, sum_dy_xhat, counts, chunk, fused
                )
        else:
            # The out= kernel wants a tensor for every output (no "undefined" from Python), so all
            # three are computed; the weight and bias sums come from reductions grad_x needs anyway.
            grad_x = torch.empty_like(x)
            for g, s in enumerate(starts):
                torch.ops.aten.native_batch_norm_backward.out(
                    grad_out[s : s + chunk], x[s : s + chunk], weight, None, None, means[g],
                    invstds[g], True, eps, [True, True, True],
                    out0=grad_x[s : s + chunk], out1=sum_dy_xhat[g], out2=sum_dy[g],
                )  # fmt: skip
        return (
            grad_x,
            sum_dy_xhat.sum(0) if need_w else None,
            sum_dy.sum(0) if need_b else None,
            None,
            None,
            None,
        )


def _ghost_chunks_reference(
    input: Tensor, weight: Tensor | None, bias: Tensor | None, chunk: int, eps: float, *_: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as `_GhostBatchNormFn` with differentiable torch ops (any dtype/device)."""
    outs, means, invstds = [], [], []
    dims = _reduce_dims(input)
    for part in input.split(chunk):
        outs.append(F.batch_norm(part, None, None, weight, bias, True, 0.0, eps))
        with torch.no_grad():
            var, mean = torch.var_mean(part, dim=dims, correction=0)
        means.append(mean)
        invstds.append((var + eps).rsqrt())
    return torch.cat(outs), torch.stack(means), torch.stack(invstds)


def ghost_batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    virtual_batch_size: int = 32,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    fused: bool = False,
) -> Tensor:
    r"""Ghost batch normalisation: batch norm over virtual sub-batches while training.

    The batch is split into consecutive chunks $B_g$ of ``virtual_batch_size`` samples (the last
    may be smaller), and each is normalised with its own statistics:

    $$
    y = \gamma \frac{x - \mu_{B_g}}{\sqrt{\sigma^2_{B_g} + \epsilon}} + \beta
    \quad (x \in B_g).
    $$

    The running statistics are updated once per call with the sample-weighted average of the chunk
    means and unbiased chunk variances (so ``momentum`` means what it means for batch norm); at
    evaluation this is `torch.nn.functional.batch_norm` with the running statistics (Hoffer et al.,
    2017, "Train longer, generalize better", NeurIPS). With a single chunk it is exactly batch norm.

    Args:
        input: Tensor ``(N, C, *)``.
        running_mean: Running mean ``(C,)``, updated in place while training, or ``None``.
        running_var: Running variance ``(C,)``, updated in place while training, or ``None``.
        weight: Scale $\gamma$ ``(C,)`` or ``None``.
        bias: Shift $\beta$ ``(C,)`` or ``None``.
        virtual_batch_size: Samples per virtual batch, ``>= 1``.
        training: Use the virtual-batch statistics (and update the running ones).
        momentum: Weight of the new statistics in the running averages, in ``[0, 1]``.
        eps: Added to the variance, ``> 0``.
        fused: Compute the input gradient (float32/float64) with one ``torch.compile``'d pass per
            virtual batch instead of torch's eager kernels (compiled at the first backward, a few
            seconds; the eager kernels take over with a warning if compilation fails).

    Returns:
        A tensor shaped like ``input``.

    Raises:
        ValueError: If ``virtual_batch_size`` is not a positive integer, or a virtual batch holds a
            single value per channel while training.

    Example:
        >>> import torch
        >>> from reglight.nn.functional import ghost_batch_norm
        >>> x = torch.randn(8, 3, 4, 4)
        >>> y = ghost_batch_norm(x, None, None, virtual_batch_size=4)
        >>> torch.allclose(y[:4].mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-6)
        True
    """
    virtual_batch_size = check_positive_int("virtual_batch_size", virtual_batch_size)
    use_batch_stats = training or running_mean is None or running_var is None
    if not use_batch_stats or input.shape[0] <= virtual_batch_size:
        return F.batch_norm(
            input, running_mean, running_var, weight, bias, use_batch_stats, momentum, eps
        )
    last = input.shape[0] % virtual_batch_size or virtual_batch_size
    per_sample = _values_per_channel(input) // input.shape[0]
    if per_sample * last <= 1:
        raise ValueError(
            "Expected more than 1 value per channel in every virtual batch when training, got input "
            f"shape {tuple(input.shape)} with virtual_batch_size={virtual_batch_size}"
        )
    fast = input.dtype in (torch.float32, torch.float64) and all(
        t is None or t.dtype == input.dtype for t in (weight, bias)
    )
    fn = _GhostBatchNormFn.apply if fast else _ghost_chunks_reference
    out, means, invstds = fn(input, weight, bias, virtual_batch_size, eps, bool(fused))
    if training and running_mean is not None and running_var is not None:
        with torch.no_grad():
            var = invstds.pow(-2).sub_(eps)  # biased variance of each virtual batch
            if last == virtual_batch_size:  # equal virtual batches: plain averages
                count = virtual_batch_size * per_sample
                batch_mean, batch_var = means.mean(0), var.mean(0).mul_(count / (count - 1))
            else:  # weight by size; unbiased variances
                sizes = _chunk_sizes(input.shape[0], virtual_batch_size, means)
                counts = sizes * per_sample
                share = sizes / input.shape[0]
                batch_mean = (share * means).sum(0)
                batch_var = (share * var * counts / (counts - 1)).sum(0)
            running_mean.lerp_(batch_mean.to(running_mean.dtype), momentum)
            running_var.lerp_(batch_var.to(running_var.dtype), momentum)
    return out


def batch_renorm(
    input: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    r_max: float = 3.0,
    d_max: float = 5.0,
) -> Tensor:
    r"""Batch renormalisation (Ioffe, 2017, "Batch renormalization", NeurIPS).

    While training, with batch statistics $\mu_B, \sigma_B = \sqrt{\sigma^2_B + \epsilon}$ and
    running ones $\mu, \sigma = \sqrt{\sigma^2 + \epsilon}$:

    $$
    r = \operatorname{clip}_{[1/r_{max},\, r_{max}]}\!\left(\frac{\sigma_B}{\sigma}\right),\quad
    d = \operatorname{clip}_{[-d_{max},\, d_{max}]}\!\left(\frac{\mu_B - \mu}{\sigma}\right),\quad
    y = \gamma\left(\frac{x - \mu_B}{\sigma_B}\, r + d\right) + \beta,
    $$

    with $r, d$ treated as constants by back-propagation; then the running statistics move towards
    the batch ones (unbiased variance, as in batch norm). At evaluation it is batch norm with the
    running statistics. ``r_max=1, d_max=0`` is batch norm. Computed by torch's fused batch-norm
    kernels (statistics, then one normalising pass with the affine map $(\gamma r, \gamma d + \beta)$),
    at the cost of one batch norm; first-order gradients only.

    Args:
        input: Tensor ``(N, C, *)``.
        running_mean: Running mean ``(C,)``, updated in place while training.
        running_var: Running variance ``(C,)``, updated in place while training.
        weight: Scale $\gamma$ ``(C,)`` or ``None``.
        bias: Shift $\beta$ ``(C,)`` or ``None``.
        training: Use the batch statistics corrected by $r, d$ (and update the running ones).
        momentum: Weight of the new statistics in the running averages, in ``[0, 1]``.
        eps: Added to the variances, ``> 0``.
        r_max: Clip of $r$, ``>= 1``.
        d_max: Clip of $d$, ``>= 0``.

    Returns:
        A tensor shaped like ``input``.

    Raises:
        ValueError: If ``r_max < 1``, ``d_max < 0``, or the batch holds a single value per channel
            while training.

    Example:
        >>> import torch
        >>> from reglight.nn.functional import batch_renorm
        >>> x = torch.randn(8, 3, 4, 4)
        >>> y = batch_renorm(x, torch.zeros(3), torch.ones(3), r_max=1.0, d_max=0.0)
        >>> torch.allclose(y, torch.nn.functional.batch_norm(x, None, None, training=True), atol=1e-6)
        True
    """
    r_max = check_in_range("r_max", r_max, 1.0, math.inf)
    d_max = check_in_range("d_max", d_max, 0.0, math.inf)
    if not training:
        return F.batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    n = _values_per_channel(input)
    if n <= 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, got input shape "
            f"{tuple(input.shape)}"
        )
    out: Tensor = _BatchRenormFn.apply(
        input, weight, bias, running_mean, running_var, eps, r_max, d_max, momentum
    )
    return out


class _BatchRenormFn(torch.autograd.Function):
    """Batch renorm in two fused kernels, the cost of one batch norm.

    The batch statistics come first (``batch_norm_update_stats``, batch norm's own statistics kernel),
    then batch norm's evaluation-mode transform normalises with them and applies the effective affine
    map ``(gamma r, gamma d + beta)`` in the same pass. Back-propagation is training-mode batch norm's
    with the effective weight ``gamma r`` (``r`` and ``d`` are constants).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        input: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        running_mean: Tensor,
        running_var: Tensor,
        eps: float,
        r_max: float,
        d_max: float,
        momentum: float,
    ) -> Tensor:
        if input.device.type in ("cpu", "cuda"):
            mean, var = torch.batch_norm_update_stats(input, None, None, 0.0)
        else:
            var, mean = torch.var_mean(input, dim=_reduce_dims(input), correction=0)
        param_dtype = running_mean.dtype if weight is None else weight.dtype
        mean, var = mean.to(param_dtype), var.to(param_dtype)
        sigma = (running_var + eps).sqrt()
        r = ((var + eps).sqrt() / sigma).clamp_(1.0 / r_max, r_max)
        d = ((mean - running_mean) / sigma).clamp_(-d_max, d_max)
        scale = r if weight is None else weight * r
        shift = d if weight is None else weight * d
        if bias is not None:
            shift = shift + bias
        out = torch.native_batch_norm(input, scale, shift, mean, var, False, 0.0, eps)[0]
        n = _values_per_channel(input)
        running_mean.lerp_(mean.to(running_mean.dtype), momentum)
        running_var.lerp_((var * (n / (n - 1))).to(running_var.dtype), momentum)
        ctx.save_for_backward(input, scale, mean, (var + eps).rsqrt(), r, d)
        ctx.eps = eps  # type: ignore[attr-defined]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor
    ) -> tuple[Tensor | None, ...]:
        input, scale, mean, invstd, r, d = ctx.saved_tensors  # type: ignore[attr-defined]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]  # type: ignore[attr-defined]
        eps: float = ctx.eps  # type: ignore[attr-defined]
        grad_x, grad_scale, grad_shift = torch.ops.aten.native_batch_norm_backward(
            grad_out, input, scale, None, None, mean, invstd, True, eps, [True, True, True]
        )
        return (
            grad_x if need_x else None,
            grad_scale * r + grad_shift * d if need_w else None,
            grad_shift if need_b else None,
            *([None] * 6),
        )


def layer_norm2d(
    input: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-6
) -> Tensor:
    r"""Layer norm over the channels of each pixel of ``(N, C, H, W)`` feature maps.

    $$
    y_{n,:,h,w} = \gamma \odot \frac{x_{n,:,h,w} - \mathrm{mean}_c(x_{n,:,h,w})}
    {\sqrt{\mathrm{var}_c(x_{n,:,h,w}) + \epsilon}} + \beta,
    $$

    the ConvNeXt normalisation (Liu et al., 2022, "A ConvNet for the 2020s", CVPR; Ba et al., 2016,
    "Layer normalization"). Batch-independent: the same at training and evaluation.

    Args:
        input: Feature maps ``(N, C, H, W)``.
        weight: Scale $\gamma$ ``(C,)`` or ``None``.
        bias: Shift $\beta$ ``(C,)`` or ``None``.
        eps: Added to the variance, ``> 0``.

    Returns:
        A tensor shaped like ``input``.

    Raises:
        ValueError: If ``input`` is not 4-dimensional.

    Example:
        >>> import torch
        >>> from reglight.nn.functional import layer_norm2d
        >>> y = layer_norm2d(torch.randn(2, 8, 5, 5))
        >>> torch.allclose(y.mean(dim=1), torch.zeros(2, 5, 5), atol=1e-6)
        True
    """
    check_positive("eps", eps)
    if input.dim() != 4:
        raise ValueError(
            f"`input` must be 4-dimensional (N, C, H, W), got shape {tuple(input.shape)}"
        )
    x = input.permute(0, 2, 3, 1)
    return F.layer_norm(x, (input.shape[1],), weight, bias, eps).permute(0, 3, 1, 2)
