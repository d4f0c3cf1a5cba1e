"""Low-dimensional slices of the loss: random filter-normalized directions, 1-D and 2-D slices, and the
linear interpolation between two sets of weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reglight._validation import check_choice
from reglight.landscape._core import (
    LossFn,
    Objective,
    Patterns,
    Reduce,
    check_generator,
    prepare,
    preserved,
    select_landscape_parameters,
)

__all__ = [
    "Direction",
    "Slice1D",
    "Slice2D",
    "random_directions",
    "slice_1d",
    "slice_2d",
]

Direction = Mapping[str, Tensor] | Sequence[Tensor]
"""A direction in weight space: `{parameter name: tensor}` (absent parameters do not move) or one tensor per
selected parameter, in `model.named_parameters()` order."""

NORMALIZATIONS = ("filter", "layer", "model", "none")


def random_directions(
    model: nn.Module,
    normalization: str = "filter",
    *,
    ignore_bias_and_norm: bool = True,
    include: Patterns = None,
    exclude: Patterns = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """A random Gaussian direction in weight space, normalized to the weights' scale (Li et al. 2018).

    With `normalization="filter"`, each filter $d_{i}$ of a direction (the slice along the first dimension of
    a weight of 2 or more dimensions: an output unit of a linear layer, an output channel of a convolution)
    is rescaled to the norm of the same filter of the weights, $d_{i} \\leftarrow d_{i}\\,
    \\|\\theta_{i}\\| / \\|d_{i}\\|$, which makes slices of networks of different scale comparable.
    `"layer"` rescales each parameter tensor as a whole, `"model"` the whole direction (to the norm of all
    the weights of 2 or more dimensions), `"none"` keeps the Gaussian draw.

    Parameters of at most one dimension (biases and normalization parameters) are set to zero when
    `ignore_bias_and_norm` is true; otherwise they are set to the weights themselves, as in the reference
    implementation of Li et al.

    Args:
        model: The model.
        normalization: `"filter"`, `"layer"`, `"model"` or `"none"`.
        ignore_bias_and_norm: Zero the direction on parameters of at most one dimension.
        include: Parameters the direction moves (default: every one with `requires_grad`).
        exclude: Parameters left out.
        generator: Source of the Gaussian draw (the global RNG is not touched when given).

    Returns:
        `{parameter name: direction tensor}` for the selected parameters.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(3, 2)
        >>> d = random_directions(model, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(d["weight"].norm(dim=1), model.weight.norm(dim=1)), d["bias"].abs().sum().item()
        (True, 0.0)
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_generator(generator)
    named = select_landscape_parameters(model, include, exclude)
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, p in named:
            w = p.detach()
            if generator is not None:
                d = torch.randn(
                    w.shape, generator=generator, device=generator.device, dtype=w.dtype
                )
                d = d.to(w.device)
            else:
                d = torch.randn_like(w)
            if w.dim() <= 1:
                d = torch.zeros_like(w) if ignore_bias_and_norm else w.clone()
            elif normalization == "filter":
                dims = tuple(range(1, w.dim()))
                d = d * (
                    torch.linalg.vector_norm(w, dim=dims, keepdim=True)
                    / (torch.linalg.vector_norm(d, dim=dims, keepdim=True) + 1e-10)
                )
            elif normalization == "layer":
                d = d * (torch.linalg.vector_norm(w) / (torch.linalg.vector_norm(d) + 1e-10))
            out[name] = d
        if normalization == "model":
            multi = [n for n, p in named if p.dim() > 1]
            if multi:
                w_norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(dict(named)[n].detach()) for n in multi])
                )
                d_norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(out[n]) for n in multi])
                )
                for n in multi:
                    out[n] = out[n] * (w_norm / (d_norm + 1e-10))
    return out


@dataclass
class Slice1D:
    """The loss along a line $\\theta + \\alpha d$.

    Attributes:
        alphas: The step sizes $\\alpha$.
        losses: The mean loss at each $\\alpha$ (float64, CPU).
    """

    alphas: Tensor
    losses: Tensor


@dataclass
class Slice2D:
    """The loss on a plane $\\theta + x\\,d_x + y\\,d_y$.

    Attributes:
        xs: Coordinates along `dir_x`.
        ys: Coordinates along `dir_y`.
        losses: Shape `(len(ys), len(xs))`: `losses[j, i]` is the mean loss at `(xs[i], ys[j])` (the layout
            of `matplotlib`'s `contour`), float64 on the CPU.
    """

    xs: Tensor
    ys: Tensor
    losses: Tensor


def _as_direction(name: str, value: Any, named: list[tuple[str, nn.Parameter]]) -> list[Tensor]:
    """`value` (a mapping or a sequence) as one tensor per selected parameter (zeros where absent)."""
    names = [n for n, _ in named]
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(
                f"`{name}` has entries for parameters that are not selected: {unknown[:5]}; "
                f"selected: {names[:10]}{' ...' if len(names) > 10 else ''}"
            )
        items = [value.get(n) for n in names]
    elif isinstance(value, Sequence) and not isinstance(value, (str, Tensor)):
        if len(value) != len(names):
            raise ValueError(
                f"`{name}` must hold one tensor per selected parameter ({len(names)}), got {len(value)}"
            )
        items = list(value)
    else:
        raise TypeError(
            f"`{name}` must be a mapping {{parameter name: tensor}} or a list of tensors, "
            f"got {type(value).__name__}"
        )
    out = []
    for (n, p), t in zip(named, items, strict=True):
        if t is None:
            out.append(torch.zeros_like(p.detach()))
            continue
        if not isinstance(t, Tensor) or t.shape != p.shape:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(
                f"`{name}` entry for {n!r} must have shape {tuple(p.shape)}, got {shape}"
            )
        out.append(t.detach().to(device=p.device, dtype=p.dtype))
    return out


def _as_points(name: str, values: Any) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).reshape(-1) if values is not None else None
    if t is None or t.numel() == 0 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"`{name}` must be a non-empty sequence of finite numbers, got {values!r}")
    return t


def _evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    batch_list: list[Any],
    named: list[tuple[str, nn.Parameter]],
    directions: list[list[Tensor]],
    coords: Tensor,
    train_mode: bool,
    reduce: Reduce | None,
) -> Tensor:
    """The mean loss at $\\theta + \\sum_k c_k d_k$ for each row $c$ of `coords` (one collective in all).

    Coordinate 0 varies fastest: for each value of the others, $b = \\theta + \\sum_{k>0} c_k d_k$ is
    formed once, and each point writes $b + c_0 d_0$ straight into the parameters (one pass over the
    weights per point, from saved copies: no accumulated rounding).
    """
    with preserved(model, train_mode=train_mode), torch.no_grad():
        obj = Objective(model, loss_fn, batch_list, named, reduce)
        targets = [p.detach() for _, p in named]
        origin = [t.clone() for t in targets]
        fast, slow = directions[0], directions[1:]
        base: list[Tensor] = origin
        base_key: tuple[float, ...] | None = None
        sums = []
        for c in coords.tolist():
            key = tuple(c[1:])
            if key != base_key:
                base = origin
                for ck, direction in zip(key, slow, strict=True):
                    if ck != 0.0:
                        base = list(torch._foreach_add(base, direction, alpha=ck))
                base_key = key
            for target, start, step in zip(targets, base, fast, strict=True):
                torch.add(start, step, alpha=c[0], out=target)
            losses = [obj._batch_loss(b).detach() for b in batch_list]
            sums.append(losses[0] if len(losses) == 1 else torch.stack(losses).sum())
        return obj.mean([torch.stack(sums)])[0].to(torch.float64).cpu()


def slice_1d(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    direction: Direction | None = None,
    alphas: Sequence[float] | Tensor | None = None,
    *,
    target: Mapping[str, Tensor] | nn.Module | None = None,
    include: Patterns = None,
    exclude: Patterns = None,
    train_mode: bool = False,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> Slice1D:
    """The loss along a line in weight space: $\\alpha \\mapsto L(\\theta + \\alpha d)$.

    Give either a `direction` $d$ (e.g. from [`random_directions`][reglight.landscape.random_directions])
    or a `target` (a model or a state dict with the same parameter names): then $d = \\theta_{target} -
    \\theta$ and the slice is the linear interpolation $(1-\\alpha)\\theta + \\alpha\\theta_{target}$ of
    Goodfellow, Vinyals & Saxe (2015), $\\alpha = 0$ at the model's weights and $1$ at the target's.
    Buffers (batch-norm statistics) are not interpolated.

    The weights are set for each $\\alpha$ in place, under `no_grad`, from a copy of the original ones
    (no accumulated rounding, no model copy) and restored bit-exactly.

    Args:
        model: The model.
        loss_fn: `loss_fn(model, batch) -> scalar Tensor`.
        batches: An iterable of batches; the loss is the mean over them.
        direction: The direction $d$ (a mapping from parameter names, or one tensor per selected
            parameter).
        alphas: Where to evaluate; default 51 points in $[-1, 1]$ with a direction, in $[-0.5, 1.5]$ with a
            target.
        target: The other end of an interpolation, instead of `direction`.
        include: Parameters that move (default: every one with `requires_grad`).
        exclude: Parameters left out.
        train_mode: Batch norm uses batch statistics (running statistics untouched); dropout stays off.
        generator: Unused (no randomness); accepted so every landscape function takes the same keywords.
        reduce: Sums a tensor over processes (data parallelism); `None` for one process.

    Returns:
        A [`Slice1D`][reglight.landscape.Slice1D].

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(1, 1, bias=False)
        >>> loss_fn = lambda m, b: m(b).pow(2).mean()
        >>> with torch.no_grad():
        ...     _ = model.weight.fill_(1.0)
        >>> slice_1d(model, loss_fn, [torch.ones(1, 1)], {"weight": torch.ones(1, 1)}, [-1.0, 0.0, 1.0]).losses
        tensor([0., 1., 4.], dtype=torch.float64)
    """
    if (direction is None) == (target is None):
        raise ValueError(
            "give exactly one of `direction` and `target`, got "
            f"direction={'None' if direction is None else type(direction).__name__}, "
            f"target={'None' if target is None else type(target).__name__}"
        )
    named, batch_list = prepare(model, loss_fn, batches, include, exclude, generator, reduce)
    if target is not None:
        state = target.state_dict() if isinstance(target, nn.Module) else target
        if not isinstance(state, Mapping):
            raise TypeError(
                f"`target` must be an nn.Module or a state dict, got {type(target).__name__}"
            )
        missing = [n for n, _ in named if n not in state]
        if missing:
            raise ValueError(f"`target` lacks the selected parameters {missing[:5]}")
        ends = _as_direction("target", {n: state[n] for n, _ in named}, named)
        d = [e - p.detach() for e, (_, p) in zip(ends, named, strict=True)]
        default = torch.linspace(-0.5, 1.5, 41, dtype=torch.float64)
    else:
        d = _as_direction("direction", direction, named)
        default = torch.linspace(-1.0, 1.0, 51, dtype=torch.float64)
    points = default if alphas is None else _as_points("alphas", alphas)
    losses = _evaluate(model, loss_fn, batch_list, named, [d], points[:, None], train_mode, reduce)
    return Slice1D(alphas=points, losses=losses)


def slice_2d(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    dir_x: Direction,
    dir_y: Direction,
    xs: Sequence[float] | Tensor | None = None,
    ys: Sequence[float] | Tensor | None = None,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    train_mode: bool = False,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> Slice2D:
    """The loss on a plane in weight space: $(x, y) \\mapsto L(\\theta + x\\,d_x + y\\,d_y)$ (Li et al. 2018).

    Each grid point is set in place, under `no_grad`, from a copy of the original weights (no model copy,
    no accumulated rounding), and the weights are restored bit-exactly. Under data parallelism all the
    grid's losses are reduced in one collective.

    Args:
        model: The model.
        loss_fn: `loss_fn(model, batch) -> scalar Tensor`.
        batches: An iterable of batches; the loss is the mean over them.
        dir_x: The first direction (see [`random_directions`][reglight.landscape.random_directions]).
        dir_y: The second direction.
        xs: Coordinates along `dir_x`; default 21 points in $[-1, 1]$.
        ys: Coordinates along `dir_y`; default 21 points in $[-1, 1]$.
        include: Parameters that move (default: every one with `requires_grad`).
        exclude: Parameters left out.
        train_mode: Batch norm uses batch statistics (running statistics untouched); dropout stays off.
        generator: Unused (no randomness); accepted so every landscape function takes the same keywords.
        reduce: Sums a tensor over processes (data parallelism); `None` for one process.

    Returns:
        A [`Slice2D`][reglight.landscape.Slice2D].

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 1, bias=False)
        >>> loss_fn = lambda m, b: m(b).pow(2).mean()  # L = (w1 + w2)^2 on the batch [[1, 1]]
        >>> dx, dy = [torch.tensor([[1.0, 0.0]])], [torch.tensor([[0.0, 1.0]])]
        >>> with torch.no_grad():
        ...     _ = model.weight.zero_()
        >>> slice_2d(model, loss_fn, [torch.ones(1, 2)], dx, dy, [0.0, 1.0], [0.0, 2.0]).losses
        tensor([[0., 1.],
                [4., 9.]], dtype=torch.float64)
    """
    named, batch_list = prepare(model, loss_fn, batches, include, exclude, generator, reduce)
    dx = _as_direction("dir_x", dir_x, named)
    dy = _as_direction("dir_y", dir_y, named)
    default = torch.linspace(-1.0, 1.0, 21, dtype=torch.float64)
    px = default if xs is None else _as_points("xs", xs)
    py = default if ys is None else _as_points("ys", ys)
    grid_y, grid_x = torch.meshgrid(py, px, indexing="ij")
    coords = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    losses = _evaluate(model, loss_fn, batch_list, named, [dx, dy], coords, train_mode, reduce)
    return Slice2D(xs=px, ys=py, losses=losses.reshape(py.numel(), px.numel()))
