"""The penalty as a loss term, for `training_step` and manual optimization."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from reglight.penalties.base import Penalty
from reglight.penalties.selection import Pattern, select_parameters

__all__ = ["penalty_loss"]


def penalty_loss(
    model: nn.Module,
    penalty: Penalty,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
) -> Tensor:
    """The penalty of `model`'s selected parameters, to add to a loss.

    Differentiable: backpropagating `loss + penalty_loss(...)` gives the same gradients as the
    gradient mode of [`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook], at the cost of one more piece of
    autograd graph per step. It never produces exact zeros; use the hook's proximal mode for that.

    Args:
        model: the model (e.g. `self` inside a `LightningModule`).
        penalty: the penalty.
        include: what to penalize (see [`select_parameters`][reglight.penalties.select_parameters]).
        exclude: what not to penalize (see [`select_parameters`][reglight.penalties.select_parameters]).

    Returns:
        A scalar tensor.

    Raises:
        TypeError: if `penalty` is not a [`Penalty`][reglight.penalties.Penalty].

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from reglight.penalties import L1
        >>> model = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, -2.0]]))
        >>> penalty_loss(model, L1(0.1))
        tensor(0.3000, grad_fn=<AddBackward0>)
    """
    if not isinstance(penalty, Penalty):
        raise TypeError(f"`penalty` must be a reglight Penalty, got {type(penalty).__name__}")
    return penalty.value(select_parameters(model, include, exclude))
