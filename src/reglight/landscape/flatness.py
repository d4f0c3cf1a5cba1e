"""Sharpness (flatness) of a minimum: how much the loss can rise in a small neighbourhood of the weights."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reglight._validation import check_positive, check_positive_int
from reglight.landscape._core import LossFn, Objective, Patterns, Reduce, prepare, preserved

__all__ = ["SharpnessResult", "sharpness"]


@dataclass
class SharpnessResult:
    """The outcome of [`sharpness`][reglight.landscape.sharpness].

    Attributes:
        sharpness: $100\\,(L_{max} - L)/(1 + L)$.
        loss: $L$, the mean loss at the weights.
        max_loss: $L_{max}$, the largest loss found in the neighbourhood.
        perturbation: The perturbation $\\delta$ of the selected parameters that reached `max_loss`.
        n_steps: Gradient-ascent steps taken.
    """

    sharpness: float
    loss: float
    max_loss: float
    perturbation: list[Tensor]
    n_steps: int


def sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    epsilon: float = 1e-3,
    *,
    adaptive: bool = False,
    steps: int = 20,
    step_size: float | None = None,
    eta: float = 0.01,
    include: Patterns = None,
    exclude: Patterns = None,
    train_mode: bool = False,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> SharpnessResult:
    """ε-sharpness: the largest relative rise of the loss in a neighbourhood of the weights.

    Keskar et al. (2017) measure, for the box
    $\\mathcal C_\\epsilon = \\{\\delta : |\\delta_i| \\le \\epsilon(|\\theta_i| + 1)\\}$,

    $$\\phi_\\epsilon = 100 \\cdot \\frac{\\max_{\\delta \\in \\mathcal C_\\epsilon} L(\\theta + \\delta) -
    L(\\theta)}{1 + L(\\theta)}.$$

    With `adaptive=True` the neighbourhood is the scale-invariant ball of ASAM (Kwon et al. 2021),
    $\\{\\delta : \\|\\delta / (|\\theta| + \\eta)\\|_2 \\le \\epsilon\\}$ (elementwise division): a
    neighbourhood that rescaling a layer's weights (and the next layer's inversely) maps onto itself.

    The maximum is searched by projected gradient ascent from a random point of the neighbourhood drawn
    from `generator`: sign-gradient steps of `step_size` times the box's half-widths for the box,
    normalized-gradient steps of `step_size`·ε in the scaled coordinates for the ball, each followed by
    the projection back; the step is halved whenever the loss went down. The best loss seen (a lower bound
    of the true maximum, and at least $L(\theta)$) is reported.

    Args:
        model: The model.
        loss_fn: `loss_fn(model, batch) -> scalar Tensor`.
        batches: An iterable of batches; the loss is the mean over them.
        epsilon: The neighbourhood's size ε, `> 0`.
        adaptive: Use ASAM's scale-invariant ball instead of Keskar's box.
        steps: Gradient-ascent steps.
        step_size: First step length as a fraction of the neighbourhood's size (the box's half-widths, or ε).
        eta: ASAM's η, added to $|\\theta|$ so zero weights can move (only with `adaptive=True`).
        include: Parameters to perturb (default: every one with `requires_grad`).
        exclude: Parameters to leave out.
        train_mode: Batch norm uses batch statistics (running statistics untouched); dropout stays off.
        generator: Source of the random start (the global RNG is not touched when given); under data
            parallelism it must be seeded alike on every process.
        reduce: Sums a tensor over processes (data parallelism); `None` for one process.

    Returns:
        A [`SharpnessResult`][reglight.landscape.SharpnessResult].

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(1, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.fill_(1.0)
        >>> loss_fn = lambda m, b: m(b).pow(2).mean()  # L(w) = w^2: the maximum is at w = 1 + 2 eps
        >>> res = sharpness(model, loss_fn, [torch.ones(1, 1)], epsilon=0.1,
        ...                 generator=torch.Generator().manual_seed(0))
        >>> round(res.max_loss, 6), round(res.sharpness, 4)
        (1.44, 22.0)
    """
    check_positive("epsilon", epsilon)
    check_positive_int("steps", steps)
    if step_size is not None:
        check_positive("step_size", step_size)
    check_positive("eta", eta)
    size = 0.5 if step_size is None else step_size
    named, batch_list = prepare(model, loss_fn, batches, include, exclude, generator, reduce)
    with preserved(model, train_mode=train_mode):
        obj = Objective(model, loss_fn, batch_list, named, reduce)
        gen = obj.common_generator(generator)
        params = obj.params
        origin = [p.detach().clone() for p in params]
        with torch.no_grad():
            base = float(obj.loss())
        if adaptive:
            scale = [p.abs() + eta for p in origin]  # delta = scale * z, ||z||_2 <= epsilon
        else:
            scale = [epsilon * (p.abs() + 1) for p in origin]  # delta = scale * z, |z_i| <= 1
        radius = epsilon if adaptive else 1.0

        def project(z: list[Tensor]) -> list[Tensor]:
            if adaptive:
                norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(t) for t in z])
                )
                factor = torch.clamp(radius / (norm + 1e-30), max=1.0)
                return [t * factor for t in z]
            return [t.clamp(-1.0, 1.0) for t in z]

        # random start in the neighbourhood (uniform in the box, or a uniform direction at radius/2)
        flat = obj.gaussian(gen) if adaptive else _uniform(obj, gen)
        if adaptive:
            flat = flat * (0.5 * radius / torch.linalg.vector_norm(flat))
        z = obj.split(flat)
        best_loss = base  # delta = 0 is in the neighbourhood
        best_z = [torch.zeros_like(t) for t in z]
        previous = -math.inf
        for _ in range(steps):
            with torch.no_grad():
                for p, o, s, t in zip(params, origin, scale, z, strict=True):
                    p.copy_(o + s * t)
            loss, grads = obj.loss_and_gradient()
            value = float(loss)  # reduced: every process takes the same decisions
            if value > best_loss:
                best_loss, best_z = value, [t.clone() for t in z]
            if value < previous:  # overshoot: shorter steps
                size *= 0.5
            previous = value
            g = [gr * s for gr, s in zip(grads, scale, strict=True)]  # gradient with respect to z
            if adaptive:
                gnorm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(t) for t in g])
                )
                z = project(
                    [t + (size * radius) * gi / (gnorm + 1e-30) for t, gi in zip(z, g, strict=True)]
                )
            else:
                z = project([t + (size * radius) * gi.sign() for t, gi in zip(z, g, strict=True)])
        with torch.no_grad():
            for p, o, s, t in zip(params, origin, scale, z, strict=True):
                p.copy_(o + s * t)
            value = float(obj.loss())
        if value > best_loss:
            best_loss, best_z = value, z
        perturbation = [(s * t).detach().clone() for s, t in zip(scale, best_z, strict=True)]
    return SharpnessResult(
        sharpness=100.0 * (best_loss - base) / (1.0 + base),
        loss=base,
        max_loss=best_loss,
        perturbation=perturbation,
        n_steps=steps,
    )


def _uniform(obj: Objective, generator: torch.Generator) -> Tensor:
    u = torch.rand(obj.dim, generator=generator, device=generator.device, dtype=obj.dtype)
    return (2 * u - 1).to(obj.device)
