"""Elementwise penalties: `L1`, `L2` and [`ElasticNet`][reglight.penalties.ElasticNet]."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from reglight._validation import check_in_range
from reglight.penalties.base import Params, Penalty, as_real, params_and_grads
from reglight.penalties.functional import elastic_net_grad_, elastic_net_prox_, elastic_net_value
from reglight.penalties.steps import StepSize

__all__ = ["L1", "L2", "ElasticNet"]


class _Elementwise(Penalty):
    """A penalty ``a * ||θ||_1 + b * ||θ||_2^2`` with weights given by `_weights`."""

    def _weights(self) -> tuple[float, float]:
        raise NotImplementedError

    def weights(self) -> tuple[float, float]:
        r"""The current weights ``(a, b)`` of $a\|\theta\|_1 + b\|\theta\|_2^2$ (from the strength)."""
        return self._weights()

    def value(self, params: Params) -> Tensor:
        """The penalty (differentiable).

        Args:
            params: the penalized tensors.

        Returns:
            A scalar tensor.
        """
        a, b = self._weights()
        return elastic_net_value(params, a, b)

    def add_grad_(self, params: Params, grads: Iterable[Tensor] | None = None) -> None:
        """Add the (sub)gradient to ``grads`` (default: each tensor's ``.grad``) in place.

        Args:
            params: the penalized tensors.
            grads: the gradients to update; by default ``.grad`` (tensors without one are skipped).
        """
        ps, gs = params_and_grads(params, grads)
        a, b = self._weights()
        elastic_net_grad_(ps, gs, a, b)

    def prox_(self, params: Params, step: StepSize) -> None:
        """Apply the proximal operator with step ``step`` in place.

        Args:
            params: the penalized tensors.
            step: a positive float, one per tensor, one tensor of per-coordinate steps per tensor,
                or a [`DiagonalStep`][reglight.penalties.DiagonalStep].
        """
        a, b = self._weights()
        elastic_net_prox_(params, step, a, b)


class L1(_Elementwise):
    r"""Lasso penalty $\lambda \sum_k \|\theta_k\|_1$ (Tibshirani, 1996).

    - gradient: $\lambda \operatorname{sign}(\theta)$ (0 at 0);
    - prox with step $t$: soft-thresholding at $t\lambda$, which sets every
      coordinate with $|\theta_i| \le t\lambda$ to exactly zero.

    Args:
        strength: $\lambda \ge 0$.

    Raises:
        ValueError: if ``strength`` is negative or not finite.

    Examples:
        >>> import torch
        >>> w = torch.tensor([0.5, -0.05, 2.0])
        >>> penalty = L1(strength=0.1)
        >>> penalty.value([w])
        tensor(0.2550)
        >>> penalty.prox_([w], step=1.0)
        >>> w
        tensor([0.4000, 0.0000, 1.9000])
    """

    def _weights(self) -> tuple[float, float]:
        return self.strength, 0.0


class L2(_Elementwise):
    r"""Ridge penalty $\lambda \sum_k \|\theta_k\|_2^2$ (Hoerl & Kennard, 1970).

    Note the absence of a factor 1/2: the gradient is $2\lambda\theta$ (torch's
    ``weight_decay=wd`` corresponds to ``strength = wd / 2``); the prox with step $t$ is
    $\theta / (1 + 2t\lambda)$.

    Args:
        strength: $\lambda \ge 0$.

    Raises:
        ValueError: if ``strength`` is negative or not finite.

    Examples:
        >>> import torch
        >>> w = torch.tensor([1.0, -2.0])
        >>> L2(strength=0.5).value([w])
        tensor(2.5000)
    """

    def _weights(self) -> tuple[float, float]:
        return 0.0, self.strength


class ElasticNet(_Elementwise):
    r"""Elastic-net penalty $\lambda\,(\alpha\|\theta\|_1 + (1 - \alpha)\|\theta\|_2^2)$.

    Zou & Hastie (2005). $\alpha$ = ``l1_ratio``: 1 is the lasso, 0 is ridge. The prox with step
    $t$ is $S_{t\lambda\alpha}(\theta) / (1 + 2t\lambda(1-\alpha))$.

    Args:
        strength: $\lambda \ge 0$.
        l1_ratio: $\alpha \in [0, 1]$, the share of the L1 norm.

    Raises:
        ValueError: if ``strength`` is negative or ``l1_ratio`` is outside ``[0, 1]``.

    Examples:
        >>> import torch
        >>> w = torch.tensor([1.0, -2.0])
        >>> ElasticNet(strength=0.1, l1_ratio=0.5).value([w])
        tensor(0.4000)
    """

    def __init__(self, strength: float, l1_ratio: float = 0.5) -> None:
        super().__init__(strength)
        self.l1_ratio = l1_ratio

    @property
    def l1_ratio(self) -> float:
        r"""The share $\alpha \in [0, 1]$ of the L1 norm (settable)."""
        return self._l1_ratio

    @l1_ratio.setter
    def l1_ratio(self, value: float) -> None:
        self._l1_ratio = check_in_range("l1_ratio", as_real(value), 0.0, 1.0)

    def hparams(self) -> dict[str, float | int]:
        """The penalty's hyperparameters (what `state_dict` saves)."""
        return {"strength": self.strength, "l1_ratio": self.l1_ratio}

    def _weights(self) -> tuple[float, float]:
        return self.strength * self.l1_ratio, self.strength * (1.0 - self.l1_ratio)
