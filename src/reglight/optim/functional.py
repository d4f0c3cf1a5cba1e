r"""The SAM / ASAM ascent step as functions of tensors (no optimizer state, no Lightning).

For the parameters $w$ with gradients $g$ of the loss $L$, the perturbation that (to first order) maximizes
the loss in a ball of radius $\rho$ is

$$\epsilon = \rho\,\frac{T_w^2\, g}{\lVert T_w\, g\rVert_2},$$

with $T_w = I$ for SAM (Foret et al., 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization") and $T_w = \operatorname{diag}(\lvert w\rvert + \eta)$ for adaptive SAM (ASAM; Kwon et al.,
2021, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural Networks").
The norm is taken over every perturbed parameter together. [`SAM`][reglight.optim.SAM] and
[`SAMCallback`][reglight.callbacks.SAMCallback] are built on these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from reglight._validation import check_nonnegative, check_positive

__all__ = ["PerturbationGroup", "apply_perturbation", "sam_perturbation"]


class PerturbationGroup(NamedTuple):
    r"""Parameters that share SAM's settings; the norm in the denominator spans all groups.

    Attributes:
        params: the parameters (leaves, updated in place).
        grads: their gradients, in the same order.
        rho: radius $\rho$ of the neighbourhood.
        adaptive: use ASAM's $T_w = \lvert w\rvert + \eta$.
        eta: ASAM's $\eta$.
        scratch: tensors shaped like `params` that hold $T_w$ when `adaptive` and $\eta > 0$ (an optimizer
            keeps them from step to step; `None` allocates them for this call). With $\eta = 0$ no scratch is
            needed: $T_w^2 g = w \odot w \odot g$ and $\lVert T_w g\rVert = \lVert w \odot g\rVert$.
    """

    params: list[Tensor]
    grads: list[Tensor]
    rho: float
    adaptive: bool = False
    eta: float = 0.0
    scratch: list[Tensor] | None = None


def _scales(group: PerturbationGroup) -> list[Tensor] | None:
    r"""$T_w$ of an adaptive group, without allocating when possible; `None` for SAM ($T_w = I$).

    With $\eta = 0$ the weights themselves serve: $w$ and $\lvert w\rvert$ differ only in sign, so
    $(g \odot w) \odot w = (g \odot \lvert w\rvert) \odot \lvert w\rvert$ exactly and the norms agree.
    """
    if not group.adaptive or not group.grads:
        return None
    if not group.eta:
        return list(group.params)
    if group.scratch is None:
        t = list(torch._foreach_abs(group.params))
    else:
        t = list(group.scratch)
        torch._foreach_copy_(t, group.params)
        torch._foreach_abs_(t)
    torch._foreach_add_(t, group.eta)
    return t


def _directions(
    groups: Sequence[PerturbationGroup], eps: float
) -> list[tuple[list[Tensor], list[Tensor] | None, Tensor | float]]:
    r"""Per group, `(h, t, s)` with $\epsilon = s\, t \odot h$: $h = T_w g$ written into the gradient
    tensors, $t$ the factor $T_w$ (`None` for SAM, where $\epsilon = s\, h$; the weights themselves when
    $\eta = 0$, so read it before moving them), and $s = \rho / (\lVert T_w g\rVert + \text{eps})$.

    $s$ is a Python float when the norm lives on the CPU (where reading it costs nothing and lets the update
    fuse the scaling), a 0-dim tensor elsewhere (no host synchronization).
    """
    scales: list[list[Tensor] | None] = []
    norms: list[Tensor] = []
    for group in groups:
        grads = list(group.grads)
        t = _scales(group)
        if t is not None:
            torch._foreach_mul_(grads, t)  # T g (up to sign when t is w)
        scales.append(t)
        if grads:
            norms.extend(torch._foreach_norm(grads))
    if not norms:
        return [([], None, 0.0) for _ in groups]
    dtype = norms[0].dtype
    for n in norms[1:]:
        dtype = torch.promote_types(dtype, n.dtype)
    total = torch.linalg.vector_norm(torch.stack([n.to(dtype) for n in norms]))
    denom: Tensor | float = total + eps
    if total.device.type == "cpu":
        denom = float(denom)
    return [(list(g.grads), t, g.rho / denom) for g, t in zip(groups, scales)]


def apply_perturbation(groups: Sequence[PerturbationGroup], eps: float = 1e-12) -> None:
    r"""Move the parameters to $w + \epsilon$ in place, using the gradients as scratch space.

    The gradients are overwritten (they hold $T_w g$ or $T_w^2 g$ afterwards): the caller discards them and
    computes the gradient at $w + \epsilon$. Groups with $\rho = 0$ should be left out, since they take no
    part in the norm. On accelerators no host synchronization happens. Nothing is allocated but the norms
    (and $T_w$ for an adaptive group with $\eta > 0$ and no `scratch`).

    Args:
        groups: the parameter groups.
        eps: added to the norm, $\epsilon = \rho\, T_w^2 g / (\lVert T_w g\rVert + \text{eps})$.

    Examples:
        >>> import torch
        >>> w = torch.tensor([1.0, 2.0]); g = torch.tensor([3.0, 4.0])
        >>> apply_perturbation([PerturbationGroup([w], [g], rho=0.5)])
        >>> w
        tensor([1.3000, 2.4000])
    """
    for group, (h, t, scale) in zip(groups, _directions(groups, eps)):
        if not h:
            continue
        if isinstance(scale, float):
            if t is None:
                torch._foreach_add_(group.params, h, alpha=scale)
            else:  # w + s (T g) T in one pass; t may be w itself (read before written, elementwise)
                torch._foreach_addcmul_(group.params, h, t, value=scale)
        else:
            if t is not None:
                torch._foreach_mul_(h, t)
            torch._foreach_mul_(h, scale)
            torch._foreach_add_(group.params, h)


def sam_perturbation(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    rho: float = 0.05,
    adaptive: bool = False,
    eta: float = 0.01,
    eps: float = 1e-12,
) -> list[Tensor]:
    r"""The SAM / ASAM perturbation $\epsilon = \rho\, T_w^2 g / \lVert T_w g\rVert_2$ (new tensors).

    Args:
        params: the parameters $w$ (read only).
        grads: their gradients $g$ (read only).
        rho: radius $\rho \ge 0$ of the neighbourhood.
        adaptive: ASAM's $T_w = \lvert w\rvert + \eta$ instead of $T_w = I$.
        eta: ASAM's $\eta \ge 0$ (Kwon et al. use 0.01).
        eps: added to the norm.

    Returns:
        $\epsilon$, one tensor per parameter.

    Raises:
        ValueError: for a negative `rho` or `eta`, a non-positive `eps`, or lists of different lengths.

    Examples:
        >>> import torch
        >>> e = sam_perturbation([torch.zeros(2)], [torch.tensor([3.0, 4.0])], rho=1.0)
        >>> e[0]
        tensor([0.6000, 0.8000])
        >>> w = torch.tensor([2.0, 1.0])
        >>> sam_perturbation([w], [torch.tensor([1.0, 1.0])], rho=1.0, adaptive=True, eta=0.0)[0]
        tensor([1.7889, 0.4472])
    """
    rho = check_nonnegative("rho", rho)
    eta = check_nonnegative("eta", eta)
    eps = check_positive("eps", eps)
    params, grads = list(params), list(grads)
    if len(params) != len(grads):
        raise ValueError(
            f"`params` and `grads` must have the same length, got {len(params)} and {len(grads)}"
        )
    if not params:
        return []
    scratch = [g.detach().clone() for g in grads]
    group = PerturbationGroup([p.detach() for p in params], scratch, rho, adaptive, eta)
    ((d, t, scale),) = _directions([group], eps)
    if t is not None:
        torch._foreach_mul_(d, t)
    torch._foreach_mul_(d, scale)
    return d
