"""Gallery figure: flat and sharp minima of the same network trained plainly, with dropout and with SAM.

The network is a two-hidden-layer MLP on scikit-learn's handwritten digits (8×8 images, real data bundled
with scikit-learn, no download). Each variant is trained from the same initial weights on the same
minibatches; the curvature and sharpness of its training loss are then measured with
[reglight.landscape][reglight.landscape]: the top Hessian eigenvalue (Lanczos,
[top_eigenvalues][reglight.landscape.top_eigenvalues]), Keskar et al.'s ε-sharpness
([sharpness][reglight.landscape.sharpness]) and a 2-D slice along two filter-normalized random directions
(Li et al. 2018, [random_directions][reglight.landscape.random_directions],
[slice_2d][reglight.landscape.slice_2d]), drawn as a surface and as contours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reglight import landscape
from reglight.figures._base import GalleryFigure, register
from reglight.nn import Dropout
from reglight.optim import SAM

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FlatSharpData",
    "VariantLandscape",
    "cross_entropy",
    "digits",
    "flat_sharp_data",
    "flat_sharp_figure",
    "mlp",
    "new_figure",
]

VARIANTS = ("plain", "dropout", "sam")
"""The trained variants: plain SGD, dropout `p = 0.3` after each hidden layer, SAM (`rho = 0.05`) around SGD."""

_LABELS = {"plain": "plain SGD", "dropout": "dropout p = 0.3", "sam": "SAM ρ = 0.05"}


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib `Figure` on an Agg canvas (no pyplot state), constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def digits(seed: int = 0, n_train: int = 1200) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits (1,797 8×8 images, 10 classes), scaled to [0, 1] and split at random.

    Args:
        seed: Seed of the split.
        n_train: Training images; the others are the test split.

    Returns:
        `(x_train, y_train, x_test, y_test)`: float32 images flattened to 64 features, int64 labels.

    Examples:
        >>> x, y, xt, yt = digits(0, n_train=1000)
        >>> tuple(x.shape), tuple(xt.shape), int(y.max())
        ((1000, 64), (797, 64), 9)
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def mlp(
    hidden: int = 128, depth: int = 2, dropout: float = 0.0, batch_norm: bool = False
) -> nn.Sequential:
    """An MLP 64 → `hidden` (× `depth`) → 10 with ReLU, optional batch norm, and dropout per hidden layer.

    A [Dropout][reglight.nn.Dropout] follows every hidden layer even with `dropout=0` (then the identity),
    so networks with and without dropout have the same parameter names.

    Examples:
        >>> [type(m).__name__ for m in mlp(8, 1, dropout=0.1, batch_norm=True)]
        ['Linear', 'BatchNorm1d', 'ReLU', 'Dropout', 'Linear']
    """
    layers: list[nn.Module] = []
    width = 64
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.ReLU())
        layers.append(Dropout(dropout))  # p = 0 too: the same parameter names with and without
        width = hidden
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def cross_entropy(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """The landscape functions' `loss_fn`: mean cross-entropy of `model` on `(x, y)`."""
    x, y = batch
    return F.cross_entropy(model(x), y)


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Accuracy in evaluation mode (the model's mode is restored)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(-1) == y).float().mean())
    model.train(was)
    return acc


@dataclass
class VariantLandscape:
    """What was measured on one trained variant.

    Attributes:
        name: `"plain"`, `"dropout"` or `"sam"`.
        top_eigenvalue: Largest eigenvalue of the Hessian of the training loss.
        sharpness: Keskar et al.'s ε-sharpness (percent) of the training loss.
        train_loss: Training loss at the weights (evaluation mode).
        test_acc: Test accuracy.
        plane: The 2-D filter-normalized slice of the training loss.
        model: The trained network (evaluation mode).
    """

    name: str
    top_eigenvalue: float
    sharpness: float
    train_loss: float
    test_acc: float
    plane: landscape.Slice2D
    model: nn.Module = field(repr=False)


@dataclass
class FlatSharpData:
    """The three variants' measurements and the settings they were taken with."""

    variants: list[VariantLandscape]
    epochs: int
    epsilon: float
    grid: int
    span: float


def _train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epochs: int,
    sam: bool,
    seed: int,
    lr: float = 0.05,
    batch_size: int = 32,
) -> None:
    opt: torch.optim.Optimizer
    if sam:
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=lr, momentum=0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    order = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed + 2)  # dropout masks
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]

            def closure(xb: Tensor = xb, yb: Tensor = yb) -> Tensor:
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                return loss

            opt.step(closure)
    model.eval()


def flat_sharp_data(
    quick: bool = True,
    seed: int = 0,
    *,
    epochs: int | None = None,
    grid: int | None = None,
    span: float = 1.0,
    epsilon: float = 1e-3,
    variants: Sequence[str] = VARIANTS,
    hidden: int = 128,
) -> FlatSharpData:
    """Train the variants on the digits and measure their loss landscapes with `reglight.landscape`.

    Every variant starts from the same initial weights (`seed`) and sees the same minibatches (SGD, lr
    0.05, momentum 0.9, batch 32). All measurements are on the training loss over the 1,200 training
    images, in evaluation mode (dropout off): top Hessian eigenvalue (Lanczos, tolerance 1e-3),
    ε-sharpness in Keskar et al.'s box (20 ascent steps), and the loss on a `grid` × `grid` plane
    $\\theta + x d_x + y d_y$, $x, y \\in [-\\text{span}, \\text{span}]$, along two filter-normalized
    Gaussian directions drawn once per variant from the same seed.

    Args:
        quick: Fewer epochs (15 instead of 40) and a coarser grid (13 instead of 31).
        seed: Seed of the split, the initial weights, the minibatch order and the directions.
        epochs: Training epochs (overrides `quick`).
        grid: Points per axis of the plane (overrides `quick`).
        span: Half-width of the plane in units of the directions.
        epsilon: The ε of the sharpness.
        variants: Which of `"plain"`, `"dropout"`, `"sam"` to train.
        hidden: Units of each of the two hidden layers.

    Returns:
        A [FlatSharpData][reglight.figures.flat_sharp.FlatSharpData].
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"`variants` must be among {VARIANTS}, got {list(variants)}")
    n_epochs = epochs if epochs is not None else (15 if quick else 40)
    n_grid = grid if grid is not None else (13 if quick else 31)
    x, y, xt, yt = digits(seed)
    torch.manual_seed(seed)
    init = mlp(hidden).state_dict()
    batches = [(x, y)]
    axis = torch.linspace(-span, span, n_grid)
    out = []
    for name in variants:
        model = mlp(hidden, dropout=0.3 if name == "dropout" else 0.0)
        model.load_state_dict(init)  # dropout has no parameters: same keys
        _train(model, x, y, n_epochs, sam=name == "sam", seed=seed)
        g = torch.Generator().manual_seed(seed + 10)
        top = landscape.top_eigenvalues(model, cross_entropy, batches, k=1, generator=g)
        sharp = landscape.sharpness(
            model,
            cross_entropy,
            batches,
            epsilon=epsilon,
            generator=torch.Generator().manual_seed(seed),
        )
        dirs = torch.Generator().manual_seed(seed + 20)
        dx = landscape.random_directions(model, generator=dirs)
        dy = landscape.random_directions(model, generator=dirs)
        plane = landscape.slice_2d(model, cross_entropy, batches, dx, dy, axis, axis)
        out.append(
            VariantLandscape(
                name=name,
                top_eigenvalue=float(top.eigenvalues[0]),
                sharpness=sharp.sharpness,
                train_loss=sharp.loss,
                test_acc=accuracy(model, xt, yt),
                plane=plane,
                model=model,
            )
        )
    return FlatSharpData(out, n_epochs, epsilon, n_grid, span)


def flat_sharp_figure(data: FlatSharpData) -> Figure:
    """Surfaces (top row) and contours (bottom row) of each variant's plane, on one log-loss scale."""
    import numpy as np
    from matplotlib import colors

    n = len(data.variants)
    fig = new_figure(4.2 * n, 7.6)
    z_all = [v.plane.losses.clamp_min(1e-12).log10().numpy() for v in data.variants]
    lo = min(float(z.min()) for z in z_all)
    hi = max(float(z.max()) for z in z_all)
    norm = colors.Normalize(vmin=lo, vmax=hi)
    levels = np.linspace(lo, hi, 25)
    contour = None
    for i, (v, z) in enumerate(zip(data.variants, z_all, strict=True)):
        xs, ys = v.plane.xs.numpy(), v.plane.ys.numpy()
        gx, gy = np.meshgrid(xs, ys)
        ax3 = fig.add_subplot(2, n, i + 1, projection="3d")
        ax3.plot_surface(gx, gy, z, cmap="viridis", norm=norm, linewidth=0, antialiased=True)
        ax3.set_zlim(lo, hi)
        ax3.set_xlabel("x")
        ax3.set_ylabel("y")
        ax3.set_zlabel("log10 loss")
        ax3.set_title(
            f"{_LABELS[v.name]}\nλmax = {v.top_eigenvalue:.3g}, "
            f"ε-sharpness = {v.sharpness:.3g}\ntest acc = {v.test_acc:.3f}",
            fontsize=9,
        )
        ax = fig.add_subplot(2, n, n + i + 1)
        contour = ax.contour(gx, gy, z, levels=levels, cmap="viridis", norm=norm)
        ax.plot([0.0], [0.0], marker="*", color="C3", ms=9)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("x (filter-normalized)")
        ax.set_ylabel("y (filter-normalized)")
        ax.set_title(f"train loss {v.train_loss:.3g}", fontsize=9)
    if contour is not None:
        fig.colorbar(contour, ax=fig.axes[n:], label="log10 training loss", shrink=0.8)
    fig.suptitle(
        f"Flat vs sharp minima: MLP on scikit-learn digits, {data.epochs} epochs "
        f"(ε = {data.epsilon:g}, {data.grid}×{data.grid} plane)"
    )
    return fig


@register("flat_sharp", 5)
def make(quick: bool, seed: int) -> GalleryFigure:
    """Figure 5 of the gallery: flat vs sharp minima (plain, dropout, SAM)."""
    data = flat_sharp_data(quick, seed)
    numbers: dict[str, float] = {}
    parts = []
    for v in data.variants:
        numbers[f"{v.name}/top_eigenvalue"] = v.top_eigenvalue
        numbers[f"{v.name}/sharpness"] = v.sharpness
        numbers[f"{v.name}/train_loss"] = v.train_loss
        numbers[f"{v.name}/test_acc"] = v.test_acc
        parts.append(
            f"{_LABELS[v.name]}: λmax {v.top_eigenvalue:.3g}, ε-sharpness {v.sharpness:.3g}, "
            f"training loss {v.train_loss:.3g}, test accuracy {v.test_acc:.3f}"
        )
    caption = (
        "The same MLP (64-128-128-10, ReLU) trained on scikit-learn's handwritten digits (1,200 training, "
        f"597 test images) for {data.epochs} epochs from the same initial weights and minibatches with "
        "plain SGD (lr 0.05, momentum 0.9, batch 32), with dropout p = 0.3 after each hidden layer, and "
        "with SAM (ρ = 0.05) around the same SGD. For each trained network, `reglight.landscape` measured "
        "on the training loss (evaluation mode) the top Hessian eigenvalue λmax (Lanczos), Keskar et "
        f"al.'s ε-sharpness (ε = {data.epsilon:g}) and the loss on a {data.grid}×{data.grid} plane "
        "spanned by two filter-normalized random directions (Li et al. 2018), drawn as a surface and as "
        "contours on one log scale. Measured: " + "; ".join(parts) + "."
    )
    if not all(math.isfinite(x) for x in numbers.values()):
        raise RuntimeError(f"non-finite measurement in the flat/sharp figure: {numbers}")
    return GalleryFigure(
        name="flat_sharp",
        title="Flat vs sharp minima: dropout and SAM",
        figure=flat_sharp_figure(data),
        caption=caption,
        numbers=numbers,
    )
