"""The [`Penalty`][reglight.penalties.Penalty] interface shared by all penalties."""

from __future__ import annotations

import abc
import numbers
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from reglight._validation import check_nonnegative, check_positive
from reglight.penalties.steps import DiagonalStep, StepSize, _ExplicitStep

__all__ = ["Penalty"]

Params = Tensor | Iterable[Tensor]
StepSource = DiagonalStep | _ExplicitStep


def as_tensor_list(params: Params) -> list[Tensor]:
    """`params` as a list (a single tensor becomes a one-element list)."""
    if isinstance(params, Tensor):
        return [params]
    out = list(params)
    for i, p in enumerate(out):
        if not isinstance(p, Tensor):
            raise TypeError(f"`params` must hold tensors, got {type(p).__name__} at position {i}")
    return out


def params_and_grads(
    params: Params, grads: Iterable[Tensor] | None
) -> tuple[list[Tensor], list[Tensor]]:
    """The tensors and the gradients a penalty updates: `grads` as given, or by default each tensor's
    `.grad` (tensors without one are left out)."""
    ps = as_tensor_list(params)
    if grads is not None:
        return ps, as_tensor_list(grads)
    with_grad = [p for p in ps if p.grad is not None]
    return with_grad, [p.grad for p in with_grad if p.grad is not None]


def as_real(value: Any) -> Any:
    """Real scalars that are not `float` (`int`, `numpy.float32`, ...) as `float`; else as given."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def normalize_step(step: StepSize, n: int) -> list[float] | StepSource:
    """Validate a proximal step and return one float per tensor or a lazy per-coordinate source.

    Args:
        step: a positive float, one positive float per tensor, one tensor per tensor, or a
            [`DiagonalStep`][reglight.penalties.DiagonalStep].
        n: number of tensors.

    Returns:
        A list of `n` floats, or an object with `lists()`/`compute()`/`tensor()`.

    Raises:
        ValueError: if a step is not positive or the number of steps is not `n`.
        TypeError: if `step` is a single tensor.
    """
    if isinstance(step, Tensor):
        raise TypeError(
            "`step` must be a float, a list of floats or a list of tensors, got a Tensor"
        )
    if isinstance(step, DiagonalStep):
        steps: Any = step
    elif isinstance(step, Iterable) and not isinstance(step, str):
        items: list[Any] = list(step)
        if items and all(isinstance(s, Tensor) for s in items):
            steps = _ExplicitStep(items)
        else:
            steps = [check_positive("step", as_real(s)) for s in items]
    else:
        return [check_positive("step", as_real(step))] * n
    if len(steps) != n:
        raise ValueError(f"`step` must have one entry per tensor ({n}), got {len(steps)}")
    return steps


class Penalty(abc.ABC):
    r"""A regularization term $\alpha R(\theta)$ over a list of tensors.

    Every penalty offers three views of the same function:

    - `value`: $\alpha R(\theta)$ as a differentiable tensor (to add to a loss);
    - `add_grad_`: adds a (sub)gradient $\alpha \nabla R(\theta)$ to `.grad` in place;
    - `prox_`: replaces $\theta$ by the proximal point
      $\operatorname{prox}_{t\alpha R}(\theta) = \arg\min_x \tfrac{1}{2t}\|x-\theta\|^2 +
      \alpha R(x)$ in place (with per-coordinate $t$ the norm is weighted by $1/t$).

    `alpha` ($\alpha \ge 0$) means what it means in scikit-learn's `Lasso`, `Ridge` and
    `ElasticNet`: the factor in front of the whole penalty. It is a plain mutable attribute: a
    schedule may set it between steps and the next update uses the new value.

    Args:
        alpha: the regularization strength $\alpha \ge 0$.

    Raises:
        ValueError: if `alpha` is negative or not a finite number.
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    @property
    def alpha(self) -> float:
        """The regularization strength $\\alpha$ (a float `>= 0`, settable)."""
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._alpha = check_nonnegative("alpha", as_real(value))

    @abc.abstractmethod
    def value(self, params: Params) -> Tensor:
        """The penalty $\\alpha R(\\theta)$ (differentiable).

        Args:
            params: the penalized tensors.

        Returns:
            A scalar tensor.
        """

    @abc.abstractmethod
    def add_grad_(self, params: Params, grads: Iterable[Tensor] | None = None) -> None:
        """Add the (sub)gradient of the penalty to `grads` in place.

        Args:
            params: the penalized tensors.
            grads: the gradients to update, one per tensor; by default each tensor's `.grad`
                (tensors without a gradient are skipped).
        """

    @abc.abstractmethod
    def prox_(self, params: Params, step: StepSize) -> None:
        """Apply the proximal operator with step `step` to `params` in place.

        Args:
            params: the penalized tensors.
            step: a positive float, one positive float per tensor, one tensor of per-coordinate
                steps per tensor, or a [`DiagonalStep`][reglight.penalties.DiagonalStep].
        """

    def __call__(self, params: Params) -> Tensor:
        """Same as `value`."""
        return self.value(params)

    @torch.no_grad()
    def sparsity(self, params: Params) -> dict[str, Tensor]:
        """Sparsity statistics as tensors (no host synchronization).

        Args:
            params: the penalized tensors.

        Returns:
            `{"zero_fraction": ...}`: the fraction of exactly-zero entries.
        """
        tensors = as_tensor_list(params)
        if not tensors:
            return {"zero_fraction": torch.zeros(())}
        total = sum(p.numel() for p in tensors)
        nonzero = torch.stack([torch.count_nonzero(p) for p in tensors]).sum()
        return {"zero_fraction": 1.0 - nonzero.to(torch.float32) / total}

    def hparams(self) -> dict[str, float | int]:
        """The penalty's hyperparameters (what `state_dict` saves)."""
        return {"alpha": self.alpha}

    def state_dict(self) -> dict[str, float | int]:
        """The mutable hyperparameters, for checkpoints.

        Returns:
            A dict of plain numbers.
        """
        return dict(self.hparams())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters saved by `state_dict` (validated like the constructor).

        Args:
            state_dict: the saved values.
        """
        for key, value in state_dict.items():
            if key not in self.hparams():
                raise ValueError(
                    f"`state_dict` has unknown key {key!r} for {type(self).__name__}; "
                    f"expected {sorted(self.hparams())}"
                )
            setattr(self, key, value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({args})"
