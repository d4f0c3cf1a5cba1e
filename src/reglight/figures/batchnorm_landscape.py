"""Gallery figure: batch norm smooths the loss landscape (Santurkar, Tsipras, Ilyas & Madry 2018).

The same deep MLP on scikit-learn's digits is trained with and without batch norm from the same
minibatches. Every few steps, at the current weights $x$ and minibatch, the loss is measured along the
gradient direction, $L(x - \\eta \\nabla L(x))$ for a range of step sizes $\\eta$
([slice_1d][reglight.landscape.slice_1d]), together with the gradient predictiveness
$\\lVert \\nabla L(x) - \\nabla L(x - \\eta \\nabla L(x)) \\rVert_2$ and the effective β-smoothness
$\\max_\\eta \\lVert \\nabla L(x) - \\nabla L(x - \\eta \\nabla L(x)) \\rVert_2 / (\\eta \\lVert \\nabla L(x)
\\rVert_2)$, as in Santurkar et al.'s Figure 4. The final networks' training losses are also drawn on a 2-D
filter-normalized plane ([slice_2d][reglight.landscape.slice_2d]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reglight import landscape
from reglight.figures._base import GalleryFigure, register
from reglight.figures.flat_sharp import accuracy, cross_entropy, digits, mlp, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "BatchNormData",
    "GradientStep",
    "TrainingTrace",
    "batchnorm_data",
    "batchnorm_figure",
    "gradient_step_profile",
]

ETAS = (0.05, 0.1, 0.2, 0.3, 0.4)
"""Step sizes $\\eta$ along the gradient (the training learning rate is 0.1)."""


@dataclass
class GradientStep:
    """The loss and the gradient change along $x - \\eta \\nabla L(x)$ at one point.

    Attributes:
        etas: The step sizes, $\\eta = 0$ first.
        losses: $L(x - \\eta \\nabla L(x))$ for each step size.
        gradient_changes: $\\lVert \\nabla L(x) - \\nabla L(x - \\eta \\nabla L(x)) \\rVert_2$ for each step size.
        gradient_norm: $\\lVert \\nabla L(x) \\rVert_2$.
    """

    etas: Tensor
    losses: Tensor
    gradient_changes: Tensor
    gradient_norm: float

    @property
    def beta_smoothness(self) -> float:
        """$\\max_{\\eta > 0} \\lVert \\Delta g \\rVert / (\\eta \\lVert g \\rVert)$."""
        mask = self.etas > 0
        ratio = self.gradient_changes[mask] / (self.etas[mask] * self.gradient_norm)
        return float(ratio.max())


def _gradient(
    model: nn.Module, loss_fn: Any, batch: Any, params: list[nn.Parameter]
) -> list[Tensor]:
    loss = loss_fn(model, batch)
    return [g.detach() for g in torch.autograd.grad(loss, params)]


def gradient_step_profile(
    model: nn.Module,
    loss_fn: landscape.LossFn,
    batch: Any,
    etas: Sequence[float] = ETAS,
    *,
    train_mode: bool = True,
) -> GradientStep:
    """Loss and gradient change along the negative gradient at the model's weights.

    The losses come from [slice_1d][reglight.landscape.slice_1d] with the direction $-\\nabla L(x)$; the
    gradients at the displaced weights are computed with autograd inside
    [preserved][reglight.landscape.preserved], so the model is left exactly as found. With
    `train_mode=True` batch norm normalizes with the batch's statistics (as in training) without updating
    its running statistics; dropout is off.

    Args:
        model: The model.
        loss_fn: `loss_fn(model, batch) -> scalar Tensor`.
        batch: One batch.
        etas: Positive step sizes; $\\eta = 0$ is prepended.
        train_mode: Batch statistics in batch norm.

    Returns:
        A [GradientStep][reglight.figures.batchnorm_landscape.GradientStep].

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(1, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.fill_(1.0)
        >>> loss_fn = lambda m, b: m(b).pow(2).mean()  # L(w) = w^2, gradient 2w
        >>> r = gradient_step_profile(model, loss_fn, torch.ones(1, 1), [0.25])
        >>> r.losses.tolist(), r.gradient_changes.tolist()  # w = 1 - 0.25 * 2 = 0.5
        ([1.0, 0.25], [0.0, 1.0])
    """
    steps = [float(e) for e in etas]
    if not steps or any(not (e > 0 and math.isfinite(e)) for e in steps):
        raise ValueError(f"`etas` must be positive finite step sizes, got {list(etas)!r}")
    points = torch.tensor([0.0, *steps], dtype=torch.float64)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    with landscape.preserved(model, train_mode=train_mode):
        g = _gradient(model, loss_fn, batch, params)
    direction = {n: -gi for (n, _), gi in zip(named, g, strict=True)}
    losses = landscape.slice_1d(
        model, loss_fn, [batch], direction, points, train_mode=train_mode
    ).losses
    changes = [0.0]
    with landscape.preserved(model, train_mode=train_mode):
        origin = [p.detach().clone() for p in params]
        for eta in steps:
            with torch.no_grad():
                for p, o, gi in zip(params, origin, g, strict=True):
                    p.copy_(o - eta * gi)
            g_eta = _gradient(model, loss_fn, batch, params)
            diff = torch.stack([(a - b).pow(2).sum() for a, b in zip(g_eta, g, strict=True)]).sum()
            changes.append(float(diff.sqrt()))
    norm = float(torch.stack([gi.pow(2).sum() for gi in g]).sum().sqrt())
    return GradientStep(points, losses, torch.tensor(changes, dtype=torch.float64), norm)


@dataclass
class TrainingTrace:
    """One network's measurements over training.

    Attributes:
        name: `"batch norm"` or `"no batch norm"`.
        steps: Training steps at which the profile was taken.
        profiles: One [GradientStep][reglight.figures.batchnorm_landscape.GradientStep] per measured step.
        train_loss: Training loss of each step's minibatch (before the step).
        test_acc: Final test accuracy.
        plane: 2-D filter-normalized slice of the final training loss (evaluation mode).
    """

    name: str
    steps: list[int] = field(default_factory=list)
    profiles: list[GradientStep] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_acc: float = math.nan
    plane: landscape.Slice2D | None = None

    def loss_range(self) -> tuple[list[float], list[float]]:
        """Per measured step, the smallest and largest loss over the step sizes (η = 0 included)."""
        return [float(p.losses.min()) for p in self.profiles], [
            float(p.losses.max()) for p in self.profiles
        ]

    def gradient_change_range(self) -> tuple[list[float], list[float]]:
        """Per measured step, the smallest and largest gradient change over the positive step sizes."""
        return [float(p.gradient_changes[1:].min()) for p in self.profiles], [
            float(p.gradient_changes[1:].max()) for p in self.profiles
        ]

    def mean_beta(self) -> float:
        """Mean over the measured steps of the effective β-smoothness."""
        return float(sum(p.beta_smoothness for p in self.profiles) / len(self.profiles))


@dataclass
class BatchNormData:
    """Both networks' traces and the settings."""

    traces: list[TrainingTrace]
    steps: int
    every: int
    lr: float
    etas: tuple[float, ...]
    grid: int
    depth: int
    hidden: int


def batchnorm_data(
    quick: bool = True,
    seed: int = 0,
    *,
    steps: int | None = None,
    every: int | None = None,
    grid: int | None = None,
    depth: int = 4,
    hidden: int = 64,
    lr: float = 0.1,
    batch_size: int = 64,
    etas: Sequence[float] = ETAS,
) -> BatchNormData:
    """Train the MLP with and without batch norm and profile the loss along the gradient.

    Both networks start from the same linear weights (He-normal from `seed`, zero biases; batch norm's own
    parameters start at 1 and 0) and see the same minibatches; plain SGD with learning rate `lr`. Every `every` steps (and at
    the first), before the update, [gradient_step_profile][reglight.figures.batchnorm_landscape.gradient_step_profile]
    is taken on the step's minibatch in training mode.

    Args:
        quick: 60 steps profiled every 10, a 13×13 plane (instead of 400 steps every 20, 31×31).
        seed: Seed of the split, the weights and the minibatch order.
        steps: Training steps (overrides `quick`).
        every: Profile every this many steps (overrides `quick`).
        grid: Points per axis of the final planes (overrides `quick`).
        depth: Hidden layers.
        hidden: Units per hidden layer.
        lr: SGD learning rate.
        batch_size: Minibatch size.
        etas: Step sizes along the gradient.

    Returns:
        A [BatchNormData][reglight.figures.batchnorm_landscape.BatchNormData].
    """
    n_steps = steps if steps is not None else (60 if quick else 400)
    n_every = every if every is not None else (10 if quick else 20)
    n_grid = grid if grid is not None else (13 if quick else 31)
    x, y, xt, yt = digits(seed)
    torch.manual_seed(seed)
    init = [m for m in mlp(hidden, depth) if isinstance(m, nn.Linear)]
    with torch.no_grad():  # He initialization: the plain network trains at this depth too
        for m in init:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    traces = []
    for bn in (False, True):
        model = mlp(hidden, depth, batch_norm=bn)
        with torch.no_grad():  # the same linear layers; batch norm starts at weight 1, bias 0
            for a, b in zip([m for m in model if isinstance(m, nn.Linear)], init, strict=True):
                a.weight.copy_(b.weight)
                a.bias.copy_(b.bias)
        trace = TrainingTrace("batch norm" if bn else "no batch norm")
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        order = torch.Generator().manual_seed(seed + 1)
        perm = torch.randperm(len(x), generator=order)
        cursor = 0
        model.train()
        for step in range(n_steps):
            if cursor + batch_size > len(x):
                perm, cursor = torch.randperm(len(x), generator=order), 0
            idx = perm[cursor : cursor + batch_size]
            cursor += batch_size
            batch = (x[idx], y[idx])
            if step % n_every == 0:
                trace.steps.append(step)
                trace.profiles.append(gradient_step_profile(model, cross_entropy, batch, etas))
            opt.zero_grad()
            loss = F.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            opt.step()
            trace.train_loss.append(float(loss.detach()))
        model.eval()
        trace.test_acc = accuracy(model, xt, yt)
        dirs = torch.Generator().manual_seed(seed + 20)
        dx = landscape.random_directions(model, generator=dirs)
        dy = landscape.random_directions(model, generator=dirs)
        axis = torch.linspace(-1.0, 1.0, n_grid)
        trace.plane = landscape.slice_2d(model, cross_entropy, [(x, y)], dx, dy, axis, axis)
        traces.append(trace)
    return BatchNormData(
        traces, n_steps, n_every, lr, tuple(float(e) for e in etas), n_grid, depth, hidden
    )


def batchnorm_figure(data: BatchNormData) -> Figure:
    """Loss range and gradient-change range along the gradient over training; the final planes."""
    import numpy as np
    from matplotlib import colors

    fig = new_figure(11.0, 8.0)
    ax_loss = fig.add_subplot(2, 2, 1)
    ax_grad = fig.add_subplot(2, 2, 2)
    for trace, color in zip(data.traces, ("C3", "C0"), strict=True):
        lo, hi = trace.loss_range()
        ax_loss.fill_between(trace.steps, lo, hi, color=color, alpha=0.35, label=trace.name)
        ax_loss.plot(trace.steps, lo, color=color, lw=0.8)
        ax_loss.plot(trace.steps, hi, color=color, lw=0.8)
        glo, ghi = trace.gradient_change_range()
        ax_grad.fill_between(
            trace.steps,
            glo,
            ghi,
            color=color,
            alpha=0.35,
            label=f"{trace.name} (β-smoothness {trace.mean_beta():.3g})",
        )
        ax_grad.plot(trace.steps, glo, color=color, lw=0.8)
        ax_grad.plot(trace.steps, ghi, color=color, lw=0.8)
    etas = ", ".join(f"{e:g}" for e in data.etas)
    ax_loss.set(
        xlabel="training step",
        ylabel="loss",
        yscale="log",
        title=f"loss landscape: L(x − η∇L), η ∈ {{0, {etas}}}",
    )
    ax_grad.set(
        xlabel="training step",
        ylabel="‖∇L(x) − ∇L(x − η∇L(x))‖",
        yscale="log",
        title="gradient predictiveness",
    )
    for ax in (ax_loss, ax_grad):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    planes = [t.plane for t in data.traces if t.plane is not None]
    z_all = [p.losses.clamp_min(1e-12).log10().numpy() for p in planes]
    lo_z = min(float(z.min()) for z in z_all)
    hi_z = max(float(z.max()) for z in z_all)
    norm = colors.Normalize(vmin=lo_z, vmax=hi_z)
    for i, (trace, plane, z) in enumerate(zip(data.traces, planes, z_all, strict=True)):
        ax = fig.add_subplot(2, 2, 3 + i, projection="3d")
        gx, gy = np.meshgrid(plane.xs.numpy(), plane.ys.numpy())
        ax.plot_surface(gx, gy, z, cmap="viridis", norm=norm, linewidth=0, antialiased=True)
        ax.set_zlim(lo_z, hi_z)
        ax.set(xlabel="x", ylabel="y", zlabel="log10 loss")
        ax.set_title(
            f"{trace.name}: final training loss plane, test acc {trace.test_acc:.3f}", fontsize=9
        )
    fig.suptitle(
        f"Batch norm smooths the landscape: MLP ({len(data.etas)} step sizes, SGD lr {data.lr:g}, "
        f"{data.steps} steps, profile every {data.every})"
    )
    return fig


@register("batchnorm_landscape", 6)
def make(quick: bool, seed: int) -> GalleryFigure:
    """Figure 6 of the gallery: batch norm and the smoothness of the loss landscape."""
    data = batchnorm_data(quick, seed)
    numbers: dict[str, float] = {}
    parts = []
    for t in data.traces:
        key = "bn" if t.name == "batch norm" else "no_bn"
        lo, hi = t.loss_range()
        _, ghi = t.gradient_change_range()
        spread = sum(h - lo_ for lo_, h in zip(lo, hi, strict=True)) / len(lo)
        numbers[f"{key}/mean_loss_range"] = spread
        numbers[f"{key}/max_gradient_change"] = max(ghi)
        numbers[f"{key}/mean_beta_smoothness"] = t.mean_beta()
        numbers[f"{key}/final_train_loss"] = t.train_loss[-1]
        numbers[f"{key}/test_acc"] = t.test_acc
        parts.append(
            f"{t.name}: mean loss range {spread:.3g}, largest gradient change {max(ghi):.3g}, mean "
            f"β-smoothness {t.mean_beta():.3g}, test accuracy {t.test_acc:.3f}"
        )
    caption = (
        f"An MLP with {data.depth} hidden layers of {data.hidden} units trained on scikit-learn's digits with plain SGD "
        f"(lr {data.lr:g}, batch 64, {data.steps} steps) with and without batch norm after each linear "
        "layer, from the same He-initialized linear weights and minibatches. Every "
        f"{data.every} steps, on the current minibatch in training mode, the loss was measured at "
        f"$x - \\eta\\nabla L(x)$ for η ∈ {{0, {', '.join(f'{e:g}' for e in data.etas)}}} "
        "(`reglight.landscape.slice_1d` along the negative gradient; shaded: its range), with the "
        "gradient predictiveness $\\lVert\\nabla L(x) - \\nabla L(x - \\eta\\nabla L(x))\\rVert$ (shaded: "
        "its range over η) and the effective β-smoothness, the largest ratio of that change to "
        "$\\eta\\lVert\\nabla L(x)\\rVert$ (Santurkar et al. 2018, Figure 4). Below, the final training "
        f"loss on a {data.grid}×{data.grid} filter-normalized plane. Measured: "
        + "; ".join(parts)
        + "."
    )
    return GalleryFigure(
        name="batchnorm_landscape",
        title="Batch norm smooths the loss landscape",
        figure=batchnorm_figure(data),
        caption=caption,
        numbers=numbers,
    )
