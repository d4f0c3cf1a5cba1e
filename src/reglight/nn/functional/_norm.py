r"""Functional normalisation: ghost batch norm, batch renormalisation and channel layer norm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reglight._validation import check_in_range, check_positive, check_positive_int
from reglight.nn.functional._ghost import _chunk_sizes, _ghost_chunks_reference, _GhostBatchNormFn
from reglight.nn.functional._shapes import _reduce_dims, _values_per_channel

__all__ = ["batch_renorm", "ghost_batch_norm", "layer_norm2d"]


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

    The batch is split into consecutive chunks $B_g$ of `virtual_batch_size` samples (the last
    may be smaller), and each is normalised with its own statistics:

    $$
    y = \gamma \frac{x - \mu_{B_g}}{\sqrt{\sigma^2_{B_g} + \epsilon}} + \beta
    \quad (x \in B_g).
    $$

    The running statistics are updated once per call with the sample-weighted average of the chunk
    means and unbiased chunk variances (so `momentum` means what it means for batch norm); at
    evaluation this is `torch.nn.functional.batch_norm` with the running statistics (Hoffer et al.,
    2017, "Train longer, generalize better", NeurIPS). With a single chunk it is exactly batch norm.

    Args:
        input: Tensor `(N, C, *)`.
        running_mean: Running mean `(C,)`, updated in place while training, or `None`.
        running_var: Running variance `(C,)`, updated in place while training, or `None`.
        weight: Scale $\gamma$ `(C,)` or `None`.
        bias: Shift $\beta$ `(C,)` or `None`.
        virtual_batch_size: Samples per virtual batch, `>= 1`.
        training: Use the virtual-batch statistics (and update the running ones).
        momentum: Weight of the new statistics in the running averages, in `[0, 1]`.
        eps: Added to the variance, `> 0`.
        fused: Compute the input gradient (float32/float64) with one `torch.compile`'d pass per
            virtual batch instead of torch's eager kernels (compiled at the first backward, a few
            seconds; the eager kernels take over with a warning if compilation fails).

    Returns:
        A tensor shaped like `input`.

    Raises:
        ValueError: If `virtual_batch_size` is not a positive integer, or a virtual batch holds a
            single value per channel while training.

    Examples:
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
    running statistics. `r_max=1, d_max=0` is batch norm. Computed by torch's fused batch-norm
    kernels (statistics, then one normalising pass with the affine map $(\gamma r, \gamma d + \beta)$),
    at the cost of one batch norm; first-order gradients only.

    Args:
        input: Tensor `(N, C, *)`.
        running_mean: Running mean `(C,)`, updated in place while training.
        running_var: Running variance `(C,)`, updated in place while training.
        weight: Scale $\gamma$ `(C,)` or `None`.
        bias: Shift $\beta$ `(C,)` or `None`.
        training: Use the batch statistics corrected by $r, d$ (and update the running ones).
        momentum: Weight of the new statistics in the running averages, in `[0, 1]`.
        eps: Added to the variances, `> 0`.
        r_max: Clip of $r$, `>= 1`.
        d_max: Clip of $d$, `>= 0`.

    Returns:
        A tensor shaped like `input`.

    Raises:
        ValueError: If `r_max < 1`, `d_max < 0`, or the batch holds a single value per channel
            while training.

    Examples:
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

    The batch statistics come first (`batch_norm_update_stats`, batch norm's own statistics kernel),
    then batch norm's evaluation-mode transform normalises with them and applies the effective affine
    map `(gamma r, gamma d + beta)` in the same pass. Back-propagation is training-mode batch norm's
    with the effective weight `gamma r` (`r` and `d` are constants).
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
    r"""Layer norm over the channels of each pixel of `(N, C, H, W)` feature maps.

    $$
    y_{n,:,h,w} = \gamma \odot \frac{x_{n,:,h,w} - \mathrm{mean}_c(x_{n,:,h,w})}
    {\sqrt{\mathrm{var}_c(x_{n,:,h,w}) + \epsilon}} + \beta,
    $$

    the ConvNeXt normalisation (Liu et al., 2022, "A ConvNet for the 2020s", CVPR; Ba et al., 2016,
    "Layer normalization"). Batch-independent: the same at training and evaluation.

    Args:
        input: Feature maps `(N, C, H, W)`.
        weight: Scale $\gamma$ `(C,)` or `None`.
        bias: Shift $\beta$ `(C,)` or `None`.
        eps: Added to the variance, `> 0`.

    Returns:
        A tensor shaped like `input`.

    Raises:
        ValueError: If `input` is not 4-dimensional.

    Examples:
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
