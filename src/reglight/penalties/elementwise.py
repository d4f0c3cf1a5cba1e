r"""Elementwise penalties in scikit-learn's parametrization: `L1`, `L2` and `ElasticNet`.

All three are $\alpha\bigl(\rho\|\theta\|_1 + \tfrac{1-\rho}{2}\|\theta\|_2^2\bigr)$, the penalty of
scikit-learn's `ElasticNet(alpha, l1_ratio)`, with $\rho$ = `l1_ratio` fixed to 1 for
[`L1`][reglight.penalties.L1] (scikit-learn's `Lasso`) and to 0 for [`L2`][reglight.penalties.L2]
(gradient $\alpha\theta$: torch's `weight_decay=alpha`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from torch import Tensor

from reglight._validation import check_in_range
from reglight.penalties.base import Params, Penalty, as_real, params_and_grads
from reglight.penalties.functional import elastic_net_grad_, elastic_net_prox_, elastic_net_value
from reglight.penalties.steps import StepSize

__all__ = ["L1", "L2", "ElasticNet"]


class _Elementwise(Penalty):
    r"""$\alpha(\rho\|\theta\|_1 + \tfrac{1-\rho}{2}\|\theta\|_2^2)$ with $\rho$ = `l1_ratio`."""

    _fixed_l1_ratio: ClassVar[float]

    @property
    def l1_ratio(self) -> float:
        r"""The share $\rho \in [0, 1]$ of the L1 norm (1 for `L1`, 0 for `L2`)."""
        return self._fixed_l1_ratio

    def value(self, params: Params) -> Tensor:
        """The penalty (differentiable).

        Args:
            params: the penalized tensors.

        Returns:
            A scalar tensor.
        """
        return elastic_net_value(params, self.alpha, self.l1_ratio)

    def add_grad_(self, params: Params, grads: Iterable[Tensor] | None = None) -> None:
        """Add the (sub)gradient to `grads` (default: each tensor's `.grad`) in place.

        Args:
            params: the penalized tensors.
            grads: the gradients to update; by default `.grad` (tensors without one are skipped).
        """
        ps, gs = params_and_grads(params, grads)
        elastic_net_grad_(ps, gs, self.alpha, self.l1_ratio)

    def prox_(self, params: Params, step: StepSize) -> None:
        """Apply the proximal operator with step `step` in place.

        Args:
            params: the penalized tensors.
            step: a positive float, one per tensor, one tensor of per-coordinate steps per tensor,
                or a [`DiagonalStep`][reglight.penalties.DiagonalStep].
        """
        elastic_net_prox_(params, step, self.alpha, self.l1_ratio)


class L1(_Elementwise):
    r"""Lasso penalty $\alpha \sum_k \|\theta_k\|_1$ (Tibshirani, 1996), scikit-learn's `Lasso(alpha)`.

    - gradient: $\alpha \operatorname{sign}(\theta)$ (0 at 0);
    - prox with step $t$: soft-thresholding at $t\alpha$, which sets every
      coordinate with $|\theta_i| \le t\alpha$ to exactly zero.

    Args:
        alpha: $\alpha \ge 0$.

    Raises:
        ValueError: if `alpha` is negative or not finite.

    Examples:
        >>> import torch
        >>> w = torch.tensor([0.5, -0.05, 2.0])
        >>> penalty = L1(alpha=0.1)
        >>> penalty.value([w])
        tensor(0.2550)
        >>> penalty.prox_([w], step=1.0)
        >>> w
        tensor([0.4000, 0.0000, 1.9000])
    """

    _fixed_l1_ratio = 1.0


class L2(_Elementwise):
    r"""Ridge penalty $\frac{\alpha}{2} \sum_k \|\theta_k\|_2^2$ (Hoerl & Kennard, 1970).

    The gradient is $\alpha\theta$: `L2(alpha)` in the gradient mode of
    [`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook] is torch's `weight_decay=alpha` of
    `SGD` and `Adam` (not the decoupled decay of `AdamW`). The prox with step $t$ is
    $\theta / (1 + t\alpha)$. scikit-learn's `Ridge(alpha)` minimizes twice
    $\tfrac12\|y - X\theta\|_2^2 + \tfrac{\alpha}{2}\|\theta\|_2^2$: the same minimizer.

    Args:
        alpha: $\alpha \ge 0$.

    Raises:
        ValueError: if `alpha` is negative or not finite.

    Examples:
        >>> import torch
        >>> w = torch.tensor([1.0, -2.0])
        >>> L2(alpha=0.5).value([w])
        tensor(1.2500)
    """

    _fixed_l1_ratio = 0.0


class ElasticNet(_Elementwise):
    r"""Elastic-net penalty $\alpha\bigl(\rho\|\theta\|_1 + \frac{1-\rho}{2}\|\theta\|_2^2\bigr)$.

    Zou & Hastie (2005), in scikit-learn's parametrization: `ElasticNet(alpha, l1_ratio)` is the
    penalty term of scikit-learn's `ElasticNet(alpha=alpha, l1_ratio=l1_ratio)`. $\rho$ =
    `l1_ratio`: 1 is [`L1`][reglight.penalties.L1], 0 is [`L2`][reglight.penalties.L2]. The prox
    with step $t$ is $S_{t\alpha\rho}(\theta) / (1 + t\alpha(1-\rho))$.

    Args:
        alpha: $\alpha \ge 0$.
        l1_ratio: $\rho \in [0, 1]$, the share of the L1 norm.

    Raises:
        ValueError: if `alpha` is negative or `l1_ratio` is outside `[0, 1]`.

    Examples:
        >>> import torch
        >>> w = torch.tensor([1.0, -2.0])
        >>> ElasticNet(alpha=0.1, l1_ratio=0.5).value([w])  # 0.05 * 3 + 0.025 * 5
        tensor(0.2750)
    """

    def __init__(self, alpha: float, l1_ratio: float = 0.5) -> None:
        super().__init__(alpha)
        self.l1_ratio = l1_ratio

    @property
    def l1_ratio(self) -> float:
        r"""The share $\rho \in [0, 1]$ of the L1 norm (settable)."""
        return self._l1_ratio

    @l1_ratio.setter
    def l1_ratio(self, value: float) -> None:
        self._l1_ratio = check_in_range("l1_ratio", as_real(value), 0.0, 1.0)

    def hparams(self) -> dict[str, float | int]:
        """The penalty's hyperparameters (what `state_dict` saves)."""
        return {"alpha": self.alpha, "l1_ratio": self.l1_ratio}
