r"""A fused elementwise-penalty gradient: one ``torch.compile``'d pass over each weight and its gradient.

The eager kernels of [`elastic_net_grad_`][reglight.penalties.elastic_net_grad_] need two (L1) or three
(elastic net) elementwise passes, because no torch operator computes
$a\operatorname{sign}(\theta) + 2b\,\theta$ at once. Compiled, the whole update
$g \leftarrow g + a\operatorname{sign}(\theta) + 2b\,\theta$ becomes one loop that reads $\theta$ and $g$
and writes $g$ (inductor's C++ code on CPU, Triton on GPU): the memory-bound minimum.

The weights $a, b$ enter the compiled function as a tensor, so changing a penalty's strength during
training (a schedule) does not recompile. The first call compiles (a few seconds); if compilation
fails (no C++ compiler, an unsupported platform) a warning says why and the eager kernels take over.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from reglight._compile import FallbackCompiled
from reglight.penalties.functional import elastic_net_grad_

__all__ = ["FusedElasticNetGrad"]


def _elastic_net_grad_kernel(params: list[Tensor], grads: list[Tensor], coef: Tensor) -> None:
    a, b = coef[0], coef[1]
    for p, g in zip(params, grads):
        g.add_(torch.sign(p) * a + p * b)


class FusedElasticNetGrad:
    r"""Adds $a\operatorname{sign}(\theta) + 2b\,\theta$ to each gradient with one compiled pass per tensor.

    Same result as [`elastic_net_grad_`][reglight.penalties.elastic_net_grad_] (``sign(0) = 0``: exact
    zeros are not pushed), computed by a ``torch.compile``'d function. One instance compiles once per
    list structure (number, shapes, dtypes and devices of the tensors); the weights are passed as a
    tensor, so new values of ``l1`` and ``l2`` reuse the compiled code.

    Examples:
        >>> import torch
        >>> fused = FusedElasticNetGrad()
        >>> p, g = torch.tensor([2.0, 0.0, -1.0]), torch.zeros(3)
        >>> fused([p], [g], l1=0.5, l2=1.0)  # the first call compiles
        >>> g
        tensor([ 4.5000,  0.0000, -2.5000])
    """

    def __init__(self) -> None:
        self._compiled = FallbackCompiled(
            _elastic_net_grad_kernel, "the fused penalty gradient", dynamic=False
        )
        # per (device, dtype): the coefficient tensor [a, 2b] and the (l1, l2) it holds
        self._coef: dict[tuple[torch.device, torch.dtype], tuple[Tensor, tuple[float, float]]] = {}

    @property
    def failure(self) -> str | None:
        """Why compilation failed (the eager kernels are used then), or ``None``."""
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
        coef[1].fill_(2.0 * l2)
        self._coef[key] = (coef, (l1, l2))
        return coef

    @torch.no_grad()
    def __call__(
        self, params: Sequence[Tensor], grads: Sequence[Tensor], l1: float, l2: float
    ) -> None:
        r"""Add ``l1 * sign(p) + 2 * l2 * p`` to each ``grads[k]`` in place.

        Args:
            params: the penalized tensors.
            grads: their gradients (same shapes), updated in place.
            l1: weight $a \ge 0$ of the L1 norm.
            l2: weight $b \ge 0$ of the squared L2 norm.
        """
        ps, gs = list(params), list(grads)
        if len(ps) != len(gs):
            raise ValueError(f"`grads` must have one entry per tensor ({len(ps)}), got {len(gs)}")
        if not ps or (not l1 and not l2):
            return
        if self._compiled(ps, gs, self._coefficients(ps, float(l1), float(l2))):
            return
        elastic_net_grad_(ps, gs, l1, l2)
