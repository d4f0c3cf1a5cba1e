"""Normalisation layers that torch lacks, and a converter between normalisation kinds.

`GhostBatchNorm*` and `BatchRenorm*` keep batch norm's parameters and buffers (`weight`, `bias`,
`running_mean`, `running_var`, `num_batches_tracked`), so batch-norm checkpoints load into them
and back. They deliberately do not subclass `torch.nn.modules.batchnorm._BatchNorm`: that is what
`nn.SyncBatchNorm.convert_sync_batchnorm` (and so `Trainer(sync_batchnorm=True)`) looks for, and it
would silently replace them by plain synchronised batch norm. They are left as they are and compute
their statistics per process, which is their design: a ghost batch is a sub-batch of the local batch,
and batch renormalisation exists to make small local batches safe.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any, Literal

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from reglight._validation import (
    check_choice,
    check_in_range,
    check_positive,
    check_positive_int,
)
from reglight.nn import functional as RF

__all__ = [
    "NORM_KINDS",
    "BatchRenorm1d",
    "BatchRenorm2d",
    "BatchRenorm3d",
    "GhostBatchNorm1d",
    "GhostBatchNorm2d",
    "GhostBatchNorm3d",
    "LayerNorm2d",
    "convert_norms",
]

NORM_KINDS = ("batch", "ghost", "renorm", "group", "layer2d", "none")
"""The `kind` values accepted by [`convert_norms`][reglight.nn.convert_norms]."""


def _check_momentum(momentum: float | None) -> float | None:
    return None if momentum is None else check_in_range("momentum", momentum, 0.0, 1.0)


def _check_rank(module: nn.Module, input: Tensor, ranks: tuple[int, ...]) -> None:
    if input.dim() not in ranks:
        allowed = " or ".join(f"{r}D" for r in ranks)
        raise ValueError(
            f"{type(module).__name__} expects {allowed} input, got {input.dim()}D input of shape "
            f"{tuple(input.shape)}"
        )


def _exponential_average_factor(module: _NormBase) -> float:
    """Batch norm's rule: count the step, then `momentum` or `1/num_batches_tracked` if `None`."""
    if module.training and module.track_running_stats and module.num_batches_tracked is not None:
        module.num_batches_tracked.add_(1)
        if module.momentum is None:
            return 1.0 / float(module.num_batches_tracked)
    return 0.0 if module.momentum is None else module.momentum


class _GhostBatchNorm(_NormBase):
    _ranks: tuple[int, ...] = ()
    _dims = 0

    def __init__(
        self,
        num_features: int,
        virtual_batch_size: int = 32,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        fused: bool = False,
    ) -> None:
        super().__init__(
            check_positive_int("num_features", num_features),
            check_positive("eps", eps),
            _check_momentum(momentum),
            affine,
            track_running_stats,
            device,
            dtype,
        )
        self.virtual_batch_size = check_positive_int("virtual_batch_size", virtual_batch_size)
        self.fused = bool(fused)

    def _check_input_dim(self, input: Tensor) -> None:
        _check_rank(self, input, self._ranks)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = _exponential_average_factor(self)
        tracked = not self.training or self.track_running_stats
        return RF.ghost_batch_norm(
            input,
            self.running_mean if tracked else None,
            self.running_var if tracked else None,
            self.weight,
            self.bias,
            self.virtual_batch_size,
            self.training,
            factor,
            self.eps,
            self.fused,
        )

    def extra_repr(self) -> str:
        fused = ", fused=True" if self.fused else ""
        return f"{super().extra_repr()}, virtual_batch_size={self.virtual_batch_size}{fused}"


class GhostBatchNorm1d(_GhostBatchNorm):
    r"""Ghost batch normalisation for `(N, C)` or `(N, C, L)` inputs.

    Hoffer et al., 2017, "Train longer, generalize better: closing the generalization gap in large
    batch training of neural networks", NeurIPS. While training, the batch is split into consecutive
    virtual batches of `virtual_batch_size` samples, each normalised with its own mean and
    variance: $y = \gamma (x - \mu_{B_g}) / \sqrt{\sigma^2_{B_g} + \epsilon} + \beta$. Small virtual
    batches keep the regularising noise of small-batch training at large-batch throughput. The
    running statistics get one update per step with the average of the virtual-batch statistics;
    evaluation is batch norm with the running statistics. Same parameters, buffers and state_dict
    keys as `nn.BatchNorm1d`; with `virtual_batch_size >= N` it is exactly `nn.BatchNorm1d`.
    Each virtual batch runs through torch's fused batch-norm kernels, written in place into one
    output. See [`ghost_batch_norm`][reglight.nn.functional.ghost_batch_norm].

    Args:
        num_features: Number of channels `C`.
        virtual_batch_size: Samples per virtual batch, `>= 1`.
        eps: Added to the variance, `> 0`.
        momentum: Weight of the new statistics in the running averages, in `[0, 1]`, or `None` for
            the cumulative average (as in batch norm).
        affine: Learn a per-channel scale and shift.
        track_running_stats: Keep running statistics for evaluation (else use batch statistics).
        device: Device of the parameters and buffers.
        dtype: Dtype of the parameters and buffers.
        fused: Compute the input gradient with one `torch.compile`'d pass per virtual batch
            (compiled at the first backward; see
            [`ghost_batch_norm`][reglight.nn.functional.ghost_batch_norm]).

    Examples:
        >>> import torch
        >>> from reglight.nn import GhostBatchNorm1d
        >>> layer = GhostBatchNorm1d(3, virtual_batch_size=4)
        >>> layer(torch.randn(16, 3)).shape
        torch.Size([16, 3])
    """

    _ranks = (2, 3)
    _dims = 1


class GhostBatchNorm2d(_GhostBatchNorm):
    r"""Ghost batch normalisation for `(N, C, H, W)` inputs.

    Hoffer et al., 2017, "Train longer, generalize better: closing the generalization gap in large
    batch training of neural networks", NeurIPS. While training, the batch is split into consecutive
    virtual batches of `virtual_batch_size` samples, each normalised with its own mean and
    variance: $y = \gamma (x - \mu_{B_g}) / \sqrt{\sigma^2_{B_g} + \epsilon} + \beta$. Small virtual
    batches keep the regularising noise of small-batch training at large-batch throughput. The
    running statistics get one update per step with the average of the virtual-batch statistics;
    evaluation is batch norm with the running statistics. Same parameters, buffers and state_dict
    keys as `nn.BatchNorm2d`; with `virtual_batch_size >= N` it is exactly `nn.BatchNorm2d`.
    Each virtual batch runs through torch's fused batch-norm kernels, written in place into one
    output. See [`ghost_batch_norm`][reglight.nn.functional.ghost_batch_norm].

    Args:
        num_features: Number of channels `C`.
        virtual_batch_size: Samples per virtual batch, `>= 1`.
        eps: Added to the variance, `> 0`.
        momentum: Weight of the new statistics in the running averages, in `[0, 1]`, or `None` for
            the cumulative average (as in batch norm).
        affine: Learn a per-channel scale and shift.
        track_running_stats: Keep running statistics for evaluation (else use batch statistics).
        device: Device of the parameters and buffers.
        dtype: Dtype of the parameters and buffers.
        fused: Compute the input gradient with one `torch.compile`'d pass per virtual batch
            (compiled at the first backward; see
            [`ghost_batch_norm`][reglight.nn.functional.ghost_batch_norm]).

    Examples:
        >>> import torch
        >>> from reglight.nn import GhostBatchNorm2d
        >>> layer = GhostBatchNorm2d(3, virtual_batch_size=4)
        >>> layer(torch.randn(16, 3, 5, 5)).shape
        torch.Size([16, 3, 5, 5])
    """

    _ranks = (4,)
    _dims = 2


class GhostBatchNorm3d(_GhostBatchNorm):
    r"""Ghost batch normalisation for `(N, C, D, H, W)` inputs.

    Hoffer et al., 2017, "Train longer, generalize better: closing the generalization gap in large
    batch training of neural networks", NeurIPS. While training, the batch is split into consecutive
    virtual batches of `virtual_batch_size` samples, each normalised with its own mean and
    variance: $y = \gamma (x - \mu_{B_g}) / \sqrt{\sigma^2_{B_g} + \epsilon} + \beta$. Small virtual
    batches keep the regularising noise of small-batch training at large-batch throughput. The
    running statistics get one update per step with the average of the virtual-batch statistics;
    evaluation is batch norm with the running statistics. Same parameters, buffers and state_dict
    keys as `nn.BatchNorm3d`; with `virtual_batch_size >= N` it is exactly `nn.BatchNorm3d`.
    Each virtual batch runs through torch's fused batch-norm kernels, written in place into one
    output. See [`ghost_batch_norm`][reglight.nn.functional.ghost_batch_norm].

    Args:
        num_features: Number of channels `C`.
        virtual_batch_size: Samples per virtual batch, `>= 1`.
        eps: Added to the variance, `> 0`.
        momentum: Weight of the new statistics in the running averages, in `[0, 1]`, or `None` for
            the cumulative average (as in batch norm).
        affine: Learn a per-channel scale and shift.
        track_running_stats: Keep running statistics for evaluation (else use batch statistics).
        device: Device of the parameters and buffers.
        dtype: Dtype of the parameters and buffers.
        fused: Compute the input gradient with one `torch.compile`'d pass per virtual batch
            (compiled at the first backward; see
            [`ghost_batch_norm`][reglight.nn.functional.ghost_batch_norm]).

    Examples:
        >>> import torch
        >>> from reglight.nn import GhostBatchNorm3d
        >>> layer = GhostBatchNorm3d(3, virtual_batch_size=4)
        >>> layer(torch.randn(16, 3, 2, 2, 2)).shape
        torch.Size([16, 3, 2, 2, 2])
    """

    _ranks = (5,)
    _dims = 3


class _BatchRenorm(_NormBase):
    _ranks: tuple[int, ...] = ()
    _dims = 0

    def __init__(
        self,
        num_features: int,
        r_max: float = 3.0,
        d_max: float = 5.0,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            check_positive_int("num_features", num_features),
            check_positive("eps", eps),
            _check_momentum(momentum),
            affine,
            True,
            device,
            dtype,
        )
        self.r_max = r_max
        self.d_max = d_max

    @property
    def r_max(self) -> float:
        """Clip of $r$ (`>= 1`); may be reassigned between steps, e.g. by a schedule."""
        return self._r_max

    @r_max.setter
    def r_max(self, value: float) -> None:
        self._r_max = check_in_range("r_max", value, 1.0, math.inf)

    @property
    def d_max(self) -> float:
        """Clip of $d$ (`>= 0`); may be reassigned between steps, e.g. by a schedule."""
        return self._d_max

    @d_max.setter
    def d_max(self, value: float) -> None:
        self._d_max = check_in_range("d_max", value, 0.0, math.inf)

    def _check_input_dim(self, input: Tensor) -> None:
        _check_rank(self, input, self._ranks)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = _exponential_average_factor(self)
        assert self.running_mean is not None and self.running_var is not None
        return RF.batch_renorm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training,
            factor,
            self.eps,
            self.r_max,
            self.d_max,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"r_max={self.r_max}, d_max={self.d_max}"
        )


class BatchRenorm1d(_BatchRenorm):
    r"""Batch renormalisation for `(N, C)` or `(N, C, L)` inputs.

    Ioffe, 2017, "Batch renormalization: towards reducing minibatch dependence in batch-normalized
    models", NeurIPS. While training, $y = \gamma\,((x - \mu_B)/\sigma_B \cdot r + d) + \beta$ with
    $r = \mathrm{clip}_{[1/r_{max}, r_{max}]}(\sigma_B/\sigma)$ and $d = \mathrm{clip}_{[-d_{max},
    d_{max}]}((\mu_B - \mu)/\sigma)$ (constants for back-propagation), where $\mu, \sigma$ are the
    running statistics: training and evaluation then agree even for small or non-iid batches.
    `r_max` and `d_max` are mutable attributes, so a schedule can relax them from `1, 0`
    (batch norm) to their final values, as in the paper. Same parameters, buffers and state_dict
    keys as `nn.BatchNorm1d`. See [`batch_renorm`][reglight.nn.functional.batch_renorm].

    Args:
        num_features: Number of channels `C`.
        r_max: Clip of $r$, `>= 1`.
        d_max: Clip of $d$, `>= 0`.
        eps: Added to the variances, `> 0`.
        momentum: Weight of the new statistics in the running averages, in `[0, 1]`, or `None` for
            the cumulative average.
        affine: Learn a per-channel scale and shift.
        device: Device of the parameters and buffers.
        dtype: Dtype of the parameters and buffers.

    Examples:
        >>> import torch
        >>> from reglight.nn import BatchRenorm1d
        >>> layer = BatchRenorm1d(3, r_max=2.0, d_max=1.0)
        >>> layer(torch.randn(8, 3)).shape
        torch.Size([8, 3])
    """

    _ranks = (2, 3)
    _dims = 1


class BatchRenorm2d(_BatchRenorm):
    r"""Batch renormalisation for `(N, C, H, W)` inputs.

    Ioffe, 2017, "Batch renormalization: towards reducing minibatch dependence in batch-normalized
    models", NeurIPS. While training, $y = \gamma\,((x - \mu_B)/\sigma_B \cdot r + d) + \beta$ with
    $r = \mathrm{clip}_{[1/r_{max}, r_{max}]}(\sigma_B/\sigma)$ and $d = \mathrm{clip}_{[-d_{max},
    d_{max}]}((\mu_B - \mu)/\sigma)$ (constants for back-propagation), where $\mu, \sigma$ are the
    running statistics: training and evaluation then agree even for small or non-iid batches.
    `r_max` and `d_max` are mutable attributes, so a schedule can relax them from `1, 0`
    (batch norm) to their final values, as in the paper. Same parameters, buffers and state_dict
    keys as `nn.BatchNorm2d`. See [`batch_renorm`][reglight.nn.functional.batch_renorm].

    Args:
        num_features: Number of channels `C`.
        r_max: Clip of $r$, `>= 1`.
        d_max: Clip of $d$, `>= 0`.
        eps: Added to the variances, `> 0`.
        momentum: Weight of the new statistics in the running averages, in `[0, 1]`, or `None` for
            the cumulative average.
        affine: Learn a per-channel scale and shift.
        device: Device of the parameters and buffers.
        dtype: Dtype of the parameters and buffers.

    Examples:
        >>> import torch
        >>> from reglight.nn import BatchRenorm2d
        >>> layer = BatchRenorm2d(3, r_max=2.0, d_max=1.0)
        >>> layer(torch.randn(8, 3, 5, 5)).shape
        torch.Size([8, 3, 5, 5])
    """

    _ranks = (4,)
    _dims = 2


class BatchRenorm3d(_BatchRenorm):
    r"""Batch renormalisation for `(N, C, D, H, W)` inputs.

    Ioffe, 2017, "Batch renormalization: towards reducing minibatch dependence in batch-normalized
    models", NeurIPS. While training, $y = \gamma\,((x - \mu_B)/\sigma_B \cdot r + d) + \beta$ with
    $r = \mathrm{clip}_{[1/r_{max}, r_{max}]}(\sigma_B/\sigma)$ and $d = \mathrm{clip}_{[-d_{max},
    d_{max}]}((\mu_B - \mu)/\sigma)$ (constants for back-propagation), where $\mu, \sigma$ are the
    running statistics: training and evaluation then agree even for small or non-iid batches.
    `r_max` and `d_max` are mutable attributes, so a schedule can relax them from `1, 0`
    (batch norm) to their final values, as in the paper. Same parameters, buffers and state_dict
    keys as `nn.BatchNorm3d`. See [`batch_renorm`][reglight.nn.functional.batch_renorm].

    Args:
        num_features: Number of channels `C`.
        r_max: Clip of $r$, `>= 1`.
        d_max: Clip of $d$, `>= 0`.
        eps: Added to the variances, `> 0`.
        momentum: Weight of the new statistics in the running averages, in `[0, 1]`, or `None` for
            the cumulative average.
        affine: Learn a per-channel scale and shift.
        device: Device of the parameters and buffers.
        dtype: Dtype of the parameters and buffers.

    Examples:
        >>> import torch
        >>> from reglight.nn import BatchRenorm3d
        >>> layer = BatchRenorm3d(3, r_max=2.0, d_max=1.0)
        >>> layer(torch.randn(8, 3, 2, 2, 2)).shape
        torch.Size([8, 3, 2, 2, 2])
    """

    _ranks = (5,)
    _dims = 3


class LayerNorm2d(nn.LayerNorm):
    r"""Layer norm over the channels of `(N, C, H, W)` maps (ConvNeXt style).

    Every pixel's channel vector is normalised on its own,
    $y = \gamma \odot (x - \mathrm{mean}_c x)/\sqrt{\mathrm{var}_c x + \epsilon} + \beta$
    (Ba et al., 2016, "Layer normalization"; Liu et al., 2022, "A ConvNet for the 2020s"), so a CNN can
    swap batch norm for a batch-independent norm. It is an `nn.LayerNorm` (same parameters) applied
    to the channels-last view. See [`layer_norm2d`][reglight.nn.functional.layer_norm2d].

    Args:
        num_channels: Number of channels `C`.
        eps: Added to the variance, `> 0`.
        affine: Learn a per-channel scale and shift.
        device: Device of the parameters.
        dtype: Dtype of the parameters.

    Examples:
        >>> import torch
        >>> from reglight.nn import LayerNorm2d
        >>> LayerNorm2d(8)(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(
        self,
        num_channels: int,
        eps: float = 1e-6,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            check_positive_int("num_channels", num_channels),
            eps=check_positive("eps", eps),
            elementwise_affine=affine,
            device=device,
            dtype=dtype,
        )

    def forward(self, input: Tensor) -> Tensor:
        _check_rank(self, input, (4,))
        return RF.layer_norm2d(input, self.weight, self.bias, self.eps)


# --------------------------------------------------------------------------------------------------
# convert_norms
# --------------------------------------------------------------------------------------------------
_KIND_KWARGS: dict[str, tuple[str, ...]] = {
    "batch": ("eps", "momentum"),
    "ghost": ("virtual_batch_size", "eps", "momentum", "fused"),
    "renorm": ("r_max", "d_max", "eps", "momentum"),
    "group": ("num_groups", "eps"),
    "layer2d": ("eps",),
    "none": (),
}
_TORCH_BN_DIMS: tuple[tuple[type[nn.Module], int], ...] = (
    (nn.BatchNorm1d, 1),
    (nn.BatchNorm2d, 2),
    (nn.BatchNorm3d, 3),
)
_BATCH: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_GHOST: dict[int, type[_GhostBatchNorm]] = {
    1: GhostBatchNorm1d,
    2: GhostBatchNorm2d,
    3: GhostBatchNorm3d,
}
_RENORM: dict[int, type[_BatchRenorm]] = {1: BatchRenorm1d, 2: BatchRenorm2d, 3: BatchRenorm3d}


def _source_dims(module: nn.Module) -> int | None:
    """Spatial rank of a convertible norm (1, 2, 3), 0 for `SyncBatchNorm` (unknown), else None."""
    if isinstance(module, (_GhostBatchNorm, _BatchRenorm)):
        return module._dims
    if isinstance(module, LayerNorm2d):
        return 2
    for cls, dims in _TORCH_BN_DIMS:
        if isinstance(module, cls):
            return dims
    if isinstance(module, _BatchNorm):  # SyncBatchNorm, lazy batch norms
        return 0
    return None


def _build(kind: str, src: nn.Module, dims: int, name: str, kwargs: dict[str, Any]) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    where = f"{name or 'the model'} ({type(src).__name__})"
    if isinstance(src, nn.modules.lazy.LazyModuleMixin) and src.has_uninitialized_params():
        raise ValueError(
            f"cannot convert {where}: run a forward pass to initialise the lazy module"
        )
    if dims == 0 and kind != "group":
        raise ValueError(
            f"cannot convert {where} to kind={kind!r}: SyncBatchNorm does not record its input rank. "
            "Call convert_norms before nn.SyncBatchNorm.convert_sync_batchnorm "
            "(Trainer(sync_batchnorm=True) converts after your model is built)."
        )
    if kind == "layer2d" and dims != 2:
        raise ValueError(
            f"cannot convert {where} to kind='layer2d': LayerNorm2d needs (N, C, H, W) inputs, "
            f"the layer normalises {dims}-d inputs"
        )
    is_layer_norm = isinstance(src, nn.LayerNorm)
    size: Any = src.normalized_shape if is_layer_norm else (src.num_features,)
    channels = int(size[0])
    ref = next(
        (t for t in chain(src.parameters(False), src.buffers(False)) if t.is_floating_point()), None
    )
    factory: dict[str, Any] = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
    eps = kwargs.get("eps", src.eps)
    momentum = kwargs.get("momentum", getattr(src, "momentum", 0.1))
    affine = getattr(src, "weight", None) is not None
    tracks = getattr(src, "running_mean", None) is not None
    new: nn.Module
    if kind == "batch":
        new = _BATCH[dims](channels, eps, momentum, affine, tracks or is_layer_norm, **factory)
    elif kind == "ghost":
        if "virtual_batch_size" not in kwargs:
            raise TypeError("convert_norms(kind='ghost') needs the keyword `virtual_batch_size`")
        vbs = kwargs["virtual_batch_size"]
        fused = bool(kwargs.get("fused", False))
        new = _GHOST[dims](
            channels, vbs, eps, momentum, affine, tracks or is_layer_norm, **factory, fused=fused
        )
    elif kind == "renorm":
        r_max, d_max = kwargs.get("r_max", 3.0), kwargs.get("d_max", 5.0)
        new = _RENORM[dims](channels, r_max, d_max, eps, momentum, affine, **factory)
    elif kind == "group":
        groups = kwargs.get("num_groups")
        if groups is None:
            groups = math.gcd(channels, 32)
        groups = check_positive_int("num_groups", groups)
        if channels % groups:
            raise ValueError(
                f"`num_groups` must divide the channels of {where}, got num_groups={groups} for "
                f"{channels} channels"
            )
        new = nn.GroupNorm(groups, channels, eps, affine, **factory)
    else:
        new = LayerNorm2d(channels, eps, affine, **factory)
    # Same meaning, same tensors: the per-channel affine always; running statistics between the
    # batch-statistics norms only.
    if affine and getattr(new, "weight", None) is not None:
        new.weight = src.weight
        new.bias = src.bias
    if tracks and getattr(new, "running_mean", None) is not None:
        new.running_mean = src.running_mean
        new.running_var = src.running_var
        if getattr(src, "num_batches_tracked", None) is not None:
            new.num_batches_tracked = src.num_batches_tracked
    new.train(src.training)
    return new


def convert_norms(
    model: nn.Module,
    kind: Literal["batch", "ghost", "renorm", "group", "layer2d", "none"],
    **kwargs: Any,
) -> nn.Module:
    """Swap every batch-statistics norm of `model` for another kind of normalisation.

    Converted layers: `nn.BatchNorm1d/2d/3d`, `GhostBatchNorm*`, `BatchRenorm*` and
    `LayerNorm2d` (other norms such as `nn.GroupNorm` or `nn.LayerNorm` are part of an
    architecture and left alone). The new layer keeps the channels, `eps` and `momentum`, shares the
    old layer's affine parameters (same `nn.Parameter` objects, so an existing optimizer keeps
    working) and, between batch norm, ghost batch norm and batch renorm, its running statistics. The
    conversion happens in place; the (possibly new) root module is returned.

    | `kind`    | new layer                                        | extra keywords                           |
    |-----------|--------------------------------------------------|------------------------------------------|
    | `batch`   | `nn.BatchNorm1d/2d/3d`                           | `eps`, `momentum`                        |
    | `ghost`   | `GhostBatchNorm1d/2d/3d`                         | `virtual_batch_size` (required), `eps`, `momentum`, `fused` |
    | `renorm`  | `BatchRenorm1d/2d/3d`                            | `r_max`, `d_max`, `eps`, `momentum`      |
    | `group`   | `nn.GroupNorm` (`num_groups` default `gcd(C, 32)`) | `num_groups`, `eps`                    |
    | `layer2d` | `LayerNorm2d` (2-d layers only)                  | `eps`                                    |
    | `none`    | `nn.Identity`                                    |                                          |

    Convert before `nn.SyncBatchNorm.convert_sync_batchnorm`: a `SyncBatchNorm` does not know its
    input rank, so only `group` and `none` can replace it. Ghost and renorm layers are left
    untouched by the sync conversion and compute per-process statistics.

    Args:
        model: The model (or a single norm layer) to convert.
        kind: Target normalisation, one of [`NORM_KINDS`][reglight.nn.norm.NORM_KINDS].
        **kwargs: Keywords of the target layer, listed in the table above.

    Returns:
        `model` with its norms converted, or the new layer when `model` itself is a norm.

    Raises:
        ValueError: If `kind` is unknown, a keyword value is invalid, or a layer cannot be converted
            (`layer2d` for non-2-d layers, `SyncBatchNorm` to a batch-statistics kind).
        TypeError: If a keyword does not belong to `kind` or a required one is missing.

    Examples:
        >>> from torch import nn
        >>> from reglight.nn import convert_norms
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        >>> net = convert_norms(net, "ghost", virtual_batch_size=16)
        >>> type(net[1]).__name__
        'GhostBatchNorm2d'
    """
    kind = check_choice("kind", kind, NORM_KINDS)  # type: ignore[assignment]
    unexpected = sorted(set(kwargs) - set(_KIND_KWARGS[kind]))
    if unexpected:
        allowed = ", ".join(_KIND_KWARGS[kind]) or "none"
        raise TypeError(
            f"convert_norms(kind={kind!r}) got unexpected keyword(s) {', '.join(unexpected)}; "
            f"allowed: {allowed}"
        )
    done: dict[int, nn.Module] = {}

    def convert(module: nn.Module, name: str) -> nn.Module:
        if id(module) in done:
            return done[id(module)]
        dims = _source_dims(module)
        if dims is not None:
            new = _build(kind, module, dims, name, kwargs)
        else:
            new = module
            # _modules, not named_children(): the latter skips repeated (shared) children
            for child_name, child in list(module._modules.items()):
                if child is None:
                    continue
                converted = convert(child, f"{name}.{child_name}" if name else child_name)
                if converted is not child:
                    module.add_module(child_name, converted)
        done[id(module)] = new
        return new

    return convert(model, "")
