r"""Batch normalization over the real tokens of padded sequences.

A Transformer batch is `(N, T, C)`: `N` sequences padded to `T` tokens of `C` features. Batch norm over
the `N·T` token vectors counts the padding tokens in its statistics, so the mean and variance it
normalizes the real tokens with depend on how much padding the batch carries (Shen et al., 2020,
"PowerNorm: Rethinking Batch Normalization in Transformers", ICML). The masked version computes them over
the real tokens only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.modules.batchnorm import _NormBase

from reglight._validation import check_in_range, check_positive, check_positive_int

__all__ = ["MaskedBatchNorm1d", "masked_batch_norm"]


def masked_batch_norm(
    input: Tensor,
    mask: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    r"""Batch norm of channel-last token features, with statistics over the tokens where `mask` is true.

    With $m_i \in \{0, 1\}$ the mask of token $i$ and $n = \sum_i m_i$,

    $$
    \mu = \frac1n \sum_i m_i x_i,\qquad \sigma^2 = \frac1n \sum_i m_i (x_i - \mu)^2,\qquad
    y_i = \gamma\,\frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,
    $$

    per channel, in training mode; the running statistics move towards $\mu$ and the unbiased
    $\sigma^2\, n / (n - 1)$ by `momentum`, as in `torch.nn.functional.batch_norm`. In evaluation mode the
    running statistics are used. Every token is normalized (padding tokens too, with the same
    statistics), so the output has the input's shape; no host synchronization happens.

    Args:
        input: Features `(..., C)`, channel last (e.g. `(N, T, C)`).
        mask: Boolean `input.shape[:-1]`, true on the tokens that count; `None` counts every token
            (then the result equals batch norm over the `N·T` token vectors).
        running_mean: Running mean `(C,)`, updated in place in training mode; `None` to keep none.
        running_var: Running variance `(C,)`, updated in place in training mode; `None` to keep none.
        weight: Scale $\gamma$ `(C,)`, or `None`.
        bias: Shift $\beta$ `(C,)`, or `None`.
        training: Use (and track) the statistics of this batch rather than the running ones.
        momentum: Weight of the batch statistics in the running-average update.
        eps: Added to the variance.

    Returns:
        The normalized features, shaped like `input`.

    Examples:
        >>> import torch
        >>> x = torch.randn(2, 3, 4)
        >>> mask = torch.tensor([[True, True, False], [True, False, False]])
        >>> y = masked_batch_norm(x, mask, None, None, training=True)
        >>> reference = torch.nn.functional.batch_norm(x[mask], None, None, training=True)
        >>> torch.allclose(y[mask], reference, atol=1e-6)
        True
    """
    use_batch = training or running_mean is None or running_var is None
    if use_batch:
        flat = input.reshape(-1, input.shape[-1])
        stats_dtype = torch.promote_types(input.dtype, torch.float32)
        flat = flat.to(stats_dtype)
        if mask is None:
            n = torch.tensor(float(flat.shape[0]), dtype=stats_dtype, device=input.device)
            mean = flat.mean(0)
            var = (flat - mean).square().mean(0)
        else:
            m = mask.reshape(-1, 1).to(stats_dtype)
            n = m.sum()
            count = n.clamp_min(1.0)
            mean = (flat * m).sum(0) / count
            var = ((flat - mean).square() * m).sum(0) / count
        if training and running_mean is not None and running_var is not None:
            with torch.no_grad():
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                running_mean.lerp_(mean.to(running_mean.dtype), momentum)
                running_var.lerp_(unbiased.to(running_var.dtype), momentum)
        mean, var = mean.to(input.dtype), var.to(input.dtype)
    else:
        assert running_mean is not None and running_var is not None
        mean, var = running_mean, running_var
    out = (input - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


class MaskedBatchNorm1d(_NormBase):
    r"""Batch norm over the real tokens of padded sequences `(N, T, C)` (channel last).

    See [`masked_batch_norm`][reglight.nn.masked_norm.masked_batch_norm] for the formula. Called as
    `norm(x, mask)` with `mask` true on real tokens; `norm(x)` (or `mask=None`) counts every token, which is
    plain `BatchNorm1d` over the `N·T` token vectors: the unmasked baseline. Parameters and buffers are
    batch norm's (`weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`), so
    `BatchNorm1d` checkpoints load into it. It does not subclass `_BatchNorm`, so
    `nn.SyncBatchNorm.convert_sync_batchnorm` leaves it alone (its statistics are per process).

    Args:
        num_features: Number of channels $C$.
        eps: Added to the variance.
        momentum: Weight of the batch statistics in the running averages; `None` for a cumulative average.
        affine: Learn a scale and a shift per channel.
        track_running_stats: Keep running statistics for evaluation (else batch statistics are used
            in evaluation too).
        device: Device of the parameters and buffers.
        dtype: Dtype of the parameters and buffers.

    Examples:
        >>> import torch
        >>> norm = MaskedBatchNorm1d(8)
        >>> x, mask = torch.randn(4, 5, 8), torch.rand(4, 5) > 0.3
        >>> norm(x, mask).shape
        torch.Size([4, 5, 8])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            check_positive_int("num_features", num_features),
            check_positive("eps", eps),
            None if momentum is None else check_in_range("momentum", momentum, 0.0, 1.0),
            affine,
            track_running_stats,
            device,
            dtype,
        )

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2 or input.shape[-1] != self.num_features:
            raise ValueError(
                f"MaskedBatchNorm1d expects channel-last input (..., {self.num_features}), got shape "
                f"{tuple(input.shape)}"
            )

    def forward(self, input: Tensor, mask: Tensor | None = None) -> Tensor:
        """Normalize `input` `(..., C)` with the statistics of the tokens where `mask` is true."""
        self._check_input_dim(input)
        if mask is not None and mask.shape != input.shape[:-1]:
            raise ValueError(
                f"`mask` must have shape {tuple(input.shape[:-1])} (the input without its channel "
                f"dimension), got {tuple(mask.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        tracked = not self.training or self.track_running_stats
        return masked_batch_norm(
            input,
            mask,
            self.running_mean if tracked else None,
            self.running_var if tracked else None,
            self.weight,
            self.bias,
            self.training or not self.track_running_stats,
            factor,
            self.eps,
        )
