"""Hand-written float64 SAM / ASAM references, from the papers' formulas (no reglight code).

Foret et al. (2021), eq. (2): e = rho * g / ||g||_2.
Kwon et al. (2021), ASAM: e = rho * T_w^2 g / ||T_w g||_2 with T_w = |w| + eta (elementwise).
The base steps (SGD with momentum, AdamW) are written out as in the torch documentation's pseudo-code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

LossFn = Callable[[list[Tensor], int], Tensor]


def grads_at(params: list[Tensor], loss_fn: LossFn, step: int) -> list[Tensor]:
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    loss = loss_fn(leaves, step)
    return list(torch.autograd.grad(loss, leaves))


def perturbation(
    params: list[Tensor],
    grads: list[Tensor],
    rho: float,
    adaptive: bool,
    eta: float,
    perturbed: Sequence[bool] | None = None,
) -> list[Tensor]:
    """e_i for every parameter; parameters with perturbed[i] False get 0 and stay out of the norm."""
    keep = list(perturbed) if perturbed is not None else [True] * len(params)
    t = [(p.abs() + eta) if adaptive else torch.ones_like(p) for p in params]
    norm = torch.sqrt(sum(((ti * g) ** 2).sum() for ti, g, k in zip(t, grads, keep) if k))
    return [
        rho * ti * ti * g / (norm + 1e-12) if k else torch.zeros_like(g)
        for ti, g, k in zip(t, grads, keep)
    ]


class SGDRef:
    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.lr, self.momentum, self.wd = lr, momentum, weight_decay
        self.buf: list[Tensor] | None = None

    def step(self, params: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        d = [g + self.wd * p for p, g in zip(params, grads)]
        if self.momentum:
            self.buf = (
                d if self.buf is None else [self.momentum * b + x for b, x in zip(self.buf, d)]
            )
            d = self.buf
        return [p - self.lr * x for p, x in zip(params, d)]


class AdamWRef:
    def __init__(
        self,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, weight_decay
        self.t = 0
        self.m: list[Tensor] | None = None
        self.v: list[Tensor] | None = None

    def step(self, params: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        self.t += 1
        if self.m is None or self.v is None:
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]
        self.m = [self.b1 * m + (1 - self.b1) * g for m, g in zip(self.m, grads)]
        self.v = [self.b2 * v + (1 - self.b2) * g * g for v, g in zip(self.v, grads)]
        out = []
        for p, m, v in zip(params, self.m, self.v):
            p = p * (1 - self.lr * self.wd)
            mhat = m / (1 - self.b1**self.t)
            vhat = v / (1 - self.b2**self.t)
            out.append(p - self.lr * mhat / (vhat.sqrt() + self.eps))
        return out


def sam_reference(
    params: list[Tensor],
    loss_fn: LossFn,
    steps: int,
    base: SGDRef | AdamWRef,
    rho: float,
    adaptive: bool = False,
    eta: float = 0.0,
    perturbed: Sequence[bool] | None = None,
    lr_at: Callable[[int], float] | None = None,
    clip: Callable[[list[Tensor]], list[Tensor]] | None = None,
) -> list[Tensor]:
    """`steps` SAM steps from `params`; loss_fn(params, step) is the loss of step `step`'s batch.

    lr_at(step) sets the base step's learning rate; clip maps the descent gradient (gradient clipping).
    """
    w = [p.detach().clone() for p in params]
    for step in range(steps):
        g = grads_at(w, loss_fn, step)
        e = perturbation(w, g, rho, adaptive, eta, perturbed)
        g_sam = grads_at([wi + ei for wi, ei in zip(w, e)], loss_fn, step)
        if clip is not None:
            g_sam = clip(g_sam)
        if lr_at is not None:
            base.lr = lr_at(step)
        w = base.step(w, g_sam)
    return w
