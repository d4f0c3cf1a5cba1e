r"""A fused elementwise-penalty gradient: one `torch.compile`'d pass over each weight and its gradient.

The eager kernels of [`elastic_net_grad_`][reglight.penalties.elastic_net_grad_] need two (L1) or
three (elastic net) elementwise passes, because no torch operator computes
$\alpha\rho\operatorname{sign}(\theta) + \alpha(1-\rho)\,\theta$ at once. Compiled, the whole update
$g \leftarrow g + \alpha\rho\operatorname{sign}(\theta) + \alpha(1-\rho)\,\theta$ becomes one loop
that reads $\theta$ and $g$ and writes $g$ (inductor's C++ code on CPU, Triton on GPU): the
memory-bound minimum.

The coefficients $\alpha\rho$ and $\alpha(1-\rho)$ enter the compiled function as a tensor, so
changing a penalty's `alpha` or `l1_ratio` during training (a schedule) does not recompile. The
first call compiles (a few seconds); if compilation fails (no C++ compiler, an unsupported
platform) a warning says why and the eager kernels take over.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from reglight._compile import FallbackCompiled
from reglight.penalties.functional import _add_grad_, elastic_net_coefficients

__all__ = ["FusedElasticNetGrad"]


def _elastic_net_grad_kernel(params: list[Tensor], grads: list[Tensor], coef: Tensor) -> None:
    a, b = coef[0], coef[1]
    for p, g in zip(params, grads):
        g.add_(torch.sign(p) * a + p * b)


class FusedElasticNetGrad:
    r"""Adds $\alpha\rho\operatorname{sign}(\theta) + \alpha(1-\rho)\,\theta$ to each gradient, one compiled pass per tensor.

    Same arguments and result as [`elastic_net_grad_`][reglight.penalties.elastic_net_grad_]
    (`sign(0) = 0`: exact zeros are not pushed), computed by a `torch.compile`'d function. One
    instance compiles once per list structure (number, shapes, dtypes and devices of the tensors);
    the coefficients are passed as a tensor, so new values of `alpha` and `l1_ratio` reuse the
    compiled code.

    Examples:
        >>> import torch
        >>> fused = FusedElasticNetGrad()
        >>> p, g = torch.tensor([2.0, 0.0, -1.0]), torch.zeros(3)
        >>> fused([p], [g], alpha=2.5, l1_ratio=0.2)  # the first call compiles
        >>> g
        tensor([ 4.5000,  0.0000, -2.5000])
    """

    def __init__(self) -> None:
        self._compiled = FallbackCompiled(
            _elastic_net_grad_kernel, "the fused penalty gradient", dynamic=False
        )
        # per (device, dtype): the coefficient tensor [αρ, α(1-ρ)] and the floats it holds
        self._coef: dict[tuple[torch.device, torch.dtype], tuple[Tensor, tuple[float, float]]] = {}

    @property
    def failure(self) -> str | None:
        """Why compilation failed (the eager kernels are used then), or `None`."""
        return self._compiled.failure

    def _coefficients(self, like: Sequence[Tensor], l1: float, l2: float) -> Tensor:
        dtype = like[0].dtype
        for t in like[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        key = (like[0].device, dtype)
        cached = self._coef.get(key)
        if cached is not None and cached[1] == (l1, l2):
            return cached[0]
        coef = cached[0] if cached is not None else torch.empty(2, device=key[0], dtype=dtype)
        # fill_ with a Python number launches no host-device copy
        coef[0].fill_(l1)
        coef[1].fill_(l2)
        self._coef[key] = (coef, (l1, l2))
        return coef

    @torch.no_grad()
    def __call__(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        alpha: float,
        l1_ratio: float = 0.5,
    ) -> None:
        r"""Add `alpha * l1_ratio * sign(p) + alpha * (1 - l1_ratio) * p` to each `grads[k]` in place.

        Args:
            params: the penalized tensors.
            grads: their gradients (same shapes), updated in place.
            alpha: $\alpha \ge 0$.
            l1_ratio: $\rho \in [0, 1]$, the share of the L1 norm.

        Raises:
            ValueError: if `alpha` or `l1_ratio` is out of range, or the lists differ in length.
        """
        l1, l2 = elastic_net_coefficients(alpha, l1_ratio)
        ps, gs = list(params), list(grads)
        if len(ps) != len(gs):
            raise ValueError(f"`grads` must have one entry per tensor ({len(ps)}), got {len(gs)}")
        if not ps or (not l1 and not l2):
            return
        if self._compiled(ps, gs, self._coefficients(ps, l1, l2)):
            return
        _add_grad_(ps, gs, l1, l2)
