"""Dropout-family modules: thin stateful wrappers of `reglight.nn.functional`.

Every module keeps its rate in a mutable float attribute `p` (validated on assignment), so a schedule
can change it between steps without re-initialisation, and is the identity in evaluation mode (except
`Dropout(scaling="classic")`, whose evaluation rule is the paper's $(1-p)$ scaling).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from reglight._validation import check_choice, check_positive_int, check_probability
from reglight.nn import functional as RF

__all__ = [
    "DROPOUT_TYPES",
    "DropBlock2d",
    "DropConnect",
    "DropPath",
    "Dropout",
    "GaussianDropout",
    "LockedDropout",
    "drop_path_rates",
]


class _DropoutFamily(nn.Module):
    """Base of the dropout-family modules: a validated, mutable rate `p`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    @property
    def p(self) -> float:
        """Drop rate in `[0, 1)`; may be reassigned between steps (it is validated)."""
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = check_probability("p", value)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout(_DropoutFamily):
    r"""Bernoulli dropout with a choice of scaling convention.

    Training output $h \odot z$ with $z_i \sim \mathrm{Bernoulli}(1-p)$, scaled by
    $1/(1-p)$ with `scaling="inverted"` (torch's convention; evaluation is the identity) or not at
    all with `scaling="classic"` (the paper's convention; evaluation multiplies by $1-p$). Both have the
    same expected output. Srivastava et al., 2014, "Dropout: a simple way to prevent neural networks
    from overfitting", JMLR 15. See [`dropout`][reglight.nn.functional.dropout].

    Args:
        p: Probability of dropping a unit, in `[0, 1)`.
        scaling: `"inverted"` or `"classic"`.

    Examples:
        >>> import torch
        >>> from reglight.nn import Dropout
        >>> layer = Dropout(0.25, scaling="classic").eval()
        >>> layer(torch.ones(3))
        tensor([0.7500, 0.7500, 0.7500])
    """

    def __init__(
        self, p: float = 0.5, scaling: Literal["inverted", "classic"] = "inverted"
    ) -> None:
        super().__init__(p)
        self.scaling: str = check_choice("scaling", scaling, RF.DROPOUT_SCALINGS)

    def forward(self, input: Tensor) -> Tensor:
        return RF.dropout(input, self.p, self.training, self.scaling)

    def extra_repr(self) -> str:
        return f"p={self.p}, scaling={self.scaling!r}"


class GaussianDropout(_DropoutFamily):
    r"""Multiplicative Gaussian noise $h \odot \varepsilon$, $\varepsilon \sim
    \mathcal N(1, p/(1-p))$.

    Same mean and variance as inverted Bernoulli dropout of rate `p` (Srivastava et al., 2014,
    section 10). Identity in evaluation mode. See
    [`gaussian_dropout`][reglight.nn.functional.gaussian_dropout].

    Args:
        p: Drop rate of the matching Bernoulli dropout, in `[0, 1)`.

    Examples:
        >>> import torch
        >>> from reglight.nn import GaussianDropout
        >>> layer = GaussianDropout(0.2)
        >>> layer(torch.ones(4)).shape, torch.equal(layer.eval()(torch.ones(4)), torch.ones(4))
        (torch.Size([4]), True)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def forward(self, input: Tensor) -> Tensor:
        return RF.gaussian_dropout(input, self.p, self.training)


class DropConnect(_DropoutFamily):
    r"""Wrap a layer with a `weight` (`nn.Linear`, `nn.Conv1d/2d/3d`, ...) to drop weights.

    While training the wrapped layer runs with $W \odot M / (1-p)$, $M_{ij} \sim
    \mathrm{Bernoulli}(1-p)$, one mask per forward pass (Wan et al., 2013, "Regularization of neural
    networks using DropConnect", ICML); in evaluation mode it is exactly the wrapped layer.

    The wrapped layer's parameters and buffers are registered on the wrapper under their own names, so
    `model.fc = DropConnect(model.fc)` leaves `model.state_dict()` keys (`fc.weight`,
    `fc.bias`) and `named_parameters()` unchanged: old checkpoints load, new ones load into the
    plain model. The layer is run through `torch.func.functional_call`, so any layer (including
    subclasses with their own `forward`) works.

    Args:
        module: The layer to wrap; it must have a `weight` parameter and no submodules.
        p: Probability of dropping a weight, in `[0, 1)`.

    Raises:
        TypeError: If `module` is not an `nn.Module` with a `weight` parameter and no submodules.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from reglight.nn import DropConnect
        >>> fc = DropConnect(nn.Linear(3, 2), p=0.5)
        >>> sorted(fc.state_dict())
        ['bias', 'weight']
        >>> fc(torch.randn(4, 3)).shape
        torch.Size([4, 2])
    """

    _wrapped: nn.Module

    def __init__(self, module: nn.Module, p: float = 0.5) -> None:
        super().__init__(p)
        if not isinstance(module, nn.Module) or not isinstance(
            getattr(module, "weight", None), nn.Parameter
        ):
            raise TypeError(
                "`module` must be an nn.Module with a `weight` parameter (nn.Linear, nn.Conv2d, ...), "
                f"got {type(module).__name__}"
            )
        if next(module.children(), None) is not None:
            raise TypeError(
                f"`module` must be a single layer without submodules, got {type(module).__name__}"
            )
        for name, param in module._parameters.items():
            self.register_parameter(name, param)
        for name, buf in module._buffers.items():
            self.register_buffer(
                name, buf, persistent=name not in module._non_persistent_buffers_set
            )
        # Not a child: its tensors are ours (same objects), so state_dict keys stay the layer's.
        object.__setattr__(self, "_wrapped", module)

    @property
    def wrapped(self) -> nn.Module:
        """The wrapped layer (its tensors are supplied by this module at every call)."""
        return self._wrapped

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        tensors: dict[str, Tensor] = {k: v for k, v in self._parameters.items() if v is not None}
        tensors.update((k, v) for k, v in self._buffers.items() if v is not None)
        if self.training and self.p > 0.0:
            tensors["weight"] = RF.drop_connect(tensors["weight"], self.p, True)
        return torch.func.functional_call(self._wrapped, tensors, args, kwargs)

    def extra_repr(self) -> str:
        return f"p={self.p}, module={self._wrapped!r}"


class DropBlock2d(_DropoutFamily):
    r"""DropBlock: drop contiguous `block_size × block_size` regions of `(N, C, H, W)` maps.

    Seeds with rate $\gamma = \frac{p}{b^2}\frac{HW}{(H-b+1)(W-b+1)}$ are drawn where a whole block
    fits, every unit under a block is dropped, and the output is rescaled by
    $\#M / \sum M$ (Ghiasi et al., 2018, "DropBlock: a regularization method for convolutional
    networks", NeurIPS). Handles rectangular maps, even block sizes and blocks larger than the map
    (clipped to it). Identity in evaluation mode. See
    [`drop_block2d`][reglight.nn.functional.drop_block2d].

    Args:
        p: Nominal fraction of dropped units, in `[0, 1)`.
        block_size: Side of the block, `>= 1`.
        shared_channels: One mask per sample for all channels instead of one per feature map.

    Examples:
        >>> import torch
        >>> from reglight.nn import DropBlock2d
        >>> layer = DropBlock2d(p=0.1, block_size=5)
        >>> layer(torch.randn(2, 4, 14, 9)).shape
        torch.Size([2, 4, 14, 9])
    """

    def __init__(self, p: float = 0.1, block_size: int = 7, shared_channels: bool = False) -> None:
        super().__init__(p)
        self.block_size = check_positive_int("block_size", block_size)
        self.shared_channels = shared_channels

    def forward(self, input: Tensor) -> Tensor:
        return RF.drop_block2d(input, self.p, self.block_size, self.training, self.shared_channels)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}, shared_channels={self.shared_channels}"


class DropPath(_DropoutFamily):
    r"""Stochastic depth: drop the residual branch of whole samples, $f(x)_n\, b_n / (1-p)$.

    Put it on the branch: `x + drop_path(block(x))` (Huang et al., 2016, "Deep networks with stochastic
    depth", ECCV). Identity in evaluation mode. See [`drop_path`][reglight.nn.functional.drop_path] and
    [`drop_path_rates`][reglight.nn.drop_path_rates] for the linear decay rule over depth.

    Args:
        p: Probability of dropping the branch of a sample, in `[0, 1)`.
        scale_by_keep: Divide kept samples by $1-p$.

    Examples:
        >>> import torch
        >>> from reglight.nn import DropPath
        >>> DropPath(0.2)(torch.randn(8, 16)).shape
        torch.Size([8, 16])
    """

    def __init__(self, p: float = 0.1, scale_by_keep: bool = True) -> None:
        super().__init__(p)
        self.scale_by_keep = scale_by_keep

    def forward(self, input: Tensor) -> Tensor:
        return RF.drop_path(input, self.p, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"p={self.p}, scale_by_keep={self.scale_by_keep}"


class LockedDropout(_DropoutFamily):
    r"""Variational dropout for sequences: one mask per sequence, shared across time steps.

    For `(N, T, D)` inputs the output is $h_{n,t,d}\, z_{n,d} / (1-p)$ (Gal & Ghahramani, 2016,
    "A theoretically grounded application of dropout in recurrent neural networks", NeurIPS). Identity in
    evaluation mode. See [`locked_dropout`][reglight.nn.functional.locked_dropout].

    Args:
        p: Probability of dropping a feature of a sequence, in `[0, 1)`.
        batch_first: Inputs are `(N, T, D)` if `True`, else `(T, N, D)`.

    Examples:
        >>> import torch
        >>> from reglight.nn import LockedDropout
        >>> LockedDropout(0.3)(torch.randn(4, 10, 8)).shape
        torch.Size([4, 10, 8])
    """

    def __init__(self, p: float = 0.5, batch_first: bool = True) -> None:
        super().__init__(p)
        self.batch_first = batch_first

    def forward(self, input: Tensor) -> Tensor:
        return RF.locked_dropout(input, self.p, self.training, self.batch_first)

    def extra_repr(self) -> str:
        return f"p={self.p}, batch_first={self.batch_first}"


def drop_path_rates(p_max: float, depth: int) -> list[float]:
    r"""Linear decay rule of stochastic depth: $p_l = \frac{l}{L}\, p_{max}$, $l = 1..L$.

    Block $l$ of $L$ drops its branch with probability $p_l$, so the last block has
    `p_max` and the first $p_{max}/L$ (Huang et al., 2016, section 3; timm's
    `calculate_drop_path_rates` starts at 0 instead).

    Args:
        p_max: Drop rate of the last block, in `[0, 1)`.
        depth: Number of residual blocks $L$, `>= 1`.

    Returns:
        `depth` rates, increasing.

    Raises:
        ValueError: If `p_max` is outside `[0, 1)` or `depth < 1`.

    Examples:
        >>> from reglight.nn import drop_path_rates
        >>> drop_path_rates(0.5, 4)
        [0.125, 0.25, 0.375, 0.5]
    """
    p_max = check_probability("p_max", p_max)
    depth = check_positive_int("depth", depth)
    return [p_max * layer / depth for layer in range(1, depth + 1)]


DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    Dropout,
    GaussianDropout,
    DropConnect,
    DropBlock2d,
    DropPath,
    LockedDropout,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
"""Every dropout-family module class, ours and torch's: the layers that [`mc_dropout`][reglight.nn.mc_dropout] switches to
training mode and that regularisation schedules drive through their mutable `p`."""
