"""Figures of loss slices: a curve, a contour map and a surface (matplotlib, Agg, no pyplot state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from reglight.landscape.slices import Slice1D, Slice2D

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_contour", "plot_slice_1d", "plot_surface"]


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check(result: object, kind: type) -> None:
    if not isinstance(result, kind):
        raise TypeError(f"`result` must be a {kind.__name__}, got {type(result).__name__}")


def plot_slice_1d(result: Slice1D, *, log_scale: bool = False, title: str | None = None) -> Figure:
    """The loss along a 1-D slice (see [`slice_1d`][reglight.landscape.slice_1d]).

    Args:
        result: The slice.
        log_scale: Logarithmic loss axis.
        title: Optional title.

    Returns:
        A matplotlib `Figure` (Agg canvas; not registered with `pyplot`).

    Examples:
        >>> import torch
        >>> fig = plot_slice_1d(Slice1D(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 5) ** 2))
        >>> fig.axes[0].get_xlabel()
        'α'
    """
    _check(result, Slice1D)
    fig = _figure(4.5, 3.2)
    ax = fig.add_subplot()
    ax.plot(result.alphas.numpy(), result.losses.numpy(), color="C0")
    ax.axvline(0.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("α")
    ax.set_ylabel("loss")
    if log_scale:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    return fig


def plot_contour(
    result: Slice2D, *, levels: int = 30, log_scale: bool = False, title: str | None = None
) -> Figure:
    """Contour lines of a 2-D slice (see [`slice_2d`][reglight.landscape.slice_2d]), with the weights
    (the origin) marked.

    Args:
        result: The slice.
        levels: Number of contour levels.
        log_scale: Contour the logarithm of the loss.
        title: Optional title.

    Returns:
        A matplotlib `Figure` (Agg canvas; not registered with `pyplot`).

    Examples:
        >>> import torch
        >>> xs = torch.linspace(-1, 1, 5)
        >>> fig = plot_contour(Slice2D(xs, xs, xs[None, :] ** 2 + xs[:, None] ** 2))
        >>> len(fig.axes)  # the map and its colour bar
        2
    """
    _check(result, Slice2D)
    z = result.losses.log() if log_scale else result.losses
    fig = _figure(4.5, 3.8)
    ax = fig.add_subplot()
    cs = ax.contour(result.xs.numpy(), result.ys.numpy(), z.numpy(), levels=levels, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="log loss" if log_scale else "loss")
    ax.plot([0.0], [0.0], marker="*", color="C3", ms=9)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_aspect("equal", adjustable="box")
    if title:
        ax.set_title(title)
    return fig


def plot_surface(result: Slice2D, *, log_scale: bool = False, title: str | None = None) -> Figure:
    """A 3-D surface of a 2-D slice (see [`slice_2d`][reglight.landscape.slice_2d]).

    Args:
        result: The slice.
        log_scale: Plot the logarithm of the loss.
        title: Optional title.

    Returns:
        A matplotlib `Figure` (Agg canvas; not registered with `pyplot`).

    Examples:
        >>> import torch
        >>> xs = torch.linspace(-1, 1, 5)
        >>> fig = plot_surface(Slice2D(xs, xs, xs[None, :] ** 2 + xs[:, None] ** 2))
        >>> fig.axes[0].name
        '3d'
    """
    _check(result, Slice2D)
    z = result.losses.log() if log_scale else result.losses
    gy, gx = torch.meshgrid(result.ys, result.xs, indexing="ij")
    fig = _figure(5.0, 4.0)
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(
        gx.numpy(), gy.numpy(), z.numpy(), cmap="viridis", linewidth=0, antialiased=True
    )
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("log loss" if log_scale else "loss")
    if title:
        ax.set_title(title)
    return fig
