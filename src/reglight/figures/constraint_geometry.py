r"""Gallery figure 2: the constraint regions of L2, L1 and the elastic net, and where a least-squares loss
meets them.

Penalized and constrained forms are the same problem: the solution $w(\alpha)$ of
$\min_w \frac{1}{2n}\lVert y - Xw\rVert^2 + \alpha\,P(w)$ also minimizes the loss over the region
$P(w) \le P(w(\alpha))$. For each penalty, $\alpha$ is found by bisection so that the solution lies on the
region whose boundary crosses the axes at $\pm t$:

- L1: $\lVert w\rVert_1 \le t$ (a diamond), solved by [elastic_net][reglight.linear.elastic_net] with
  `l1_ratio=1`;
- elastic net: $\rho\lVert w\rVert_1 + \frac{1-\rho}{2}\lVert w\rVert_2^2 \le \rho t + \frac{1-\rho}{2}t^2$,
  solved by [elastic_net][reglight.linear.elastic_net] with `l1_ratio=ρ`;
- L2: $\lVert w\rVert_2 \le t$ (a disc), ridge in closed form.

The two-feature data are built so that $X^\top X/n = H$ and $X^\top y/n = H w_{\mathrm{OLS}}$ exactly: the
loss contours are the ellipses $\frac12 (w - w_{\mathrm{OLS}})^\top H (w - w_{\mathrm{OLS}})$ + const.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from reglight.figures._base import GalleryFigure, register
from reglight.figures._ridge import ridge
from reglight.figures._style import COLORS, new_figure
from reglight.linear import elastic_net, enet_path

__all__ = ["GeometryPanel", "constraint_geometry", "design", "make_constraint_geometry"]

PENALTIES = ("l2", "l1", "enet")
"""The three regions, in drawing order."""

ENET_RATIO = 0.5
"""`l1_ratio` of the elastic-net region."""


def design(
    H: np.ndarray, w_ols: np.ndarray, n: int = 60, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Centred data `(X, y)` with $X^\\top X/n = H$ and $X^\\top y/n = H w_{\\mathrm{OLS}}$ exactly.

    Args:
        H: The 2x2 (positive definite) Hessian of the loss.
        w_ols: The least-squares solution.
        n: Number of samples.
        seed: Seed of the random directions and of the residual.

    Returns:
        `X` (n, 2) and `y` (n,), both with zero column means.

    Examples:
        >>> H = np.array([[1.0, 0.8], [0.8, 1.0]])
        >>> X, y = design(H, np.array([1.6, 0.4]))
        >>> np.allclose(X.T @ X / len(y), H), np.allclose(np.linalg.solve(X.T @ X, X.T @ y), [1.6, 0.4])
        (True, True)
    """
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((n, 3))
    raw -= raw.mean(0)
    q, _ = np.linalg.qr(raw)  # orthonormal, centred columns
    z = q[:, :2] * np.sqrt(n)  # z.T @ z / n = I
    evals, evecs = np.linalg.eigh(H)
    X = z @ (evecs * np.sqrt(evals)) @ evecs.T  # X.T X / n = H
    residual = q[:, 2] * np.sqrt(n) * 0.5  # orthogonal to X's columns and to the constant
    return X, X @ w_ols + residual


def _penalty(kind: str, w: np.ndarray) -> float:
    l1, l2sq = float(np.abs(w).sum()), float(w @ w)
    if kind == "l1":
        return l1
    if kind == "l2":
        return float(np.sqrt(l2sq))
    return ENET_RATIO * l1 + (1 - ENET_RATIO) / 2 * l2sq


def _level(kind: str, t: float) -> float:
    """The value of the penalty on the region's boundary that crosses the axes at ±t."""
    return _penalty(kind, np.array([t, 0.0]))


def _solver(kind: str, X: np.ndarray, y: np.ndarray) -> Callable[[float], np.ndarray]:
    if kind == "l2":
        Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
        return lambda alpha: ridge(Xt, yt, alpha)[0].numpy()
    rho = 1.0 if kind == "l1" else ENET_RATIO
    return lambda alpha: np.asarray(
        elastic_net(X, y, alpha, rho, fit_intercept=False, tol=1e-12)[0], dtype=np.float64
    )


def _bracket(kind: str, X: np.ndarray, y: np.ndarray, level: float) -> tuple[float, float]:
    """`log10 α` below and above the crossing of the level, from a coarse path (one solver call)."""
    grid = np.linspace(3.0, -8.0, 45)  # decreasing α: the penalty grows along the path
    if kind == "l2":
        solve = _solver(kind, X, y)
        coefs = np.stack([solve(10.0**g) for g in grid], axis=1)
    else:
        rho = 1.0 if kind == "l1" else ENET_RATIO
        _, coefs = enet_path(X, y, l1_ratio=rho, alphas=10.0**grid, tol=1e-12)
    values = np.array([_penalty(kind, coefs[:, j]) for j in range(len(grid))])
    above = np.flatnonzero(values > level)
    if len(above) == 0 or above[0] == 0:
        raise ValueError(
            f"the least-squares solution lies inside the {kind} region of level {level}"
        )
    i = int(above[0])
    return float(grid[i]), float(grid[i - 1])


def _constrained(
    kind: str, X: np.ndarray, y: np.ndarray, t: float, steps: int
) -> tuple[np.ndarray, float]:
    """The penalized solution whose penalty equals the region's level (bisection on log α)."""
    solve = _solver(kind, X, y)
    level = _level(kind, t)
    lo, hi = _bracket(kind, X, y, level)  # penalty(w(10**lo)) > level >= penalty(w(10**hi))
    for _ in range(steps):
        mid = (lo + hi) / 2
        if _penalty(kind, solve(10.0**mid)) > level:
            lo = mid
        else:
            hi = mid
    alpha = 10.0 ** ((lo + hi) / 2)
    return solve(alpha), alpha


@dataclass
class GeometryPanel:
    """One panel: the loss, the regions' size and the constrained solutions.

    Attributes:
        title: Panel title.
        H: Hessian of the loss ($X^\\top X/n$).
        w_ols: Unconstrained least-squares solution.
        t: The regions cross the axes at ±t.
        X: The design (n, 2).
        y: The targets.
        solutions: Constrained solution per penalty (`"l2"`, `"l1"`, `"enet"`).
        alphas: The penalty strength α that gives each solution.
    """

    title: str
    H: np.ndarray
    w_ols: np.ndarray
    t: float
    X: np.ndarray
    y: np.ndarray
    solutions: dict[str, np.ndarray]
    alphas: dict[str, float]

    def loss(self, w: np.ndarray) -> np.ndarray:
        """$\\frac{1}{2n}\\lVert y - Xw\\rVert^2$ at the points `w` (..., 2)."""
        r = self.y[:, None] - self.X @ np.asarray(w).reshape(-1, 2).T
        return (0.5 * (r**2).mean(0)).reshape(np.shape(w)[:-1])


def constraint_geometry(seed: int = 0, steps: int = 30, t: float = 1.0) -> list[GeometryPanel]:
    """The two panels: independent features of different curvature, and two correlated features.

    Args:
        seed: Seed of the data's random directions.
        steps: Bisection steps on log α after a coarse path brackets it (30 reach α to 1e-10 relative).
        t: Size of the regions.

    Returns:
        The panels with the solutions computed by the library's solvers.
    """
    setups = [
        ("independent features", np.diag([3.0, 1.0]), np.array([2.0, 0.6])),
        ("correlated features (r = 0.8)", np.array([[1.0, 0.8], [0.8, 1.0]]), np.array([1.6, 0.4])),
    ]
    panels = []
    for title, H, w_ols in setups:
        X, y = design(H, w_ols, seed=seed)
        solutions, alphas = {}, {}
        for kind in PENALTIES:
            solutions[kind], alphas[kind] = _constrained(kind, X, y, t, steps)
        panels.append(GeometryPanel(title, H, w_ols, t, X, y, solutions, alphas))
    return panels


def _boundary(kind: str, t: float) -> np.ndarray:
    """Points of the region's boundary, (m, 2)."""
    theta = np.linspace(0.0, 2 * np.pi, 721)
    u = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    if kind == "l2":
        return t * u
    if kind == "l1":
        return t * u / np.abs(u).sum(1, keepdims=True)
    # elastic net: radius r along u solves ρ r |u|_1 + (1-ρ)/2 r^2 = level
    a, b, c = (1 - ENET_RATIO) / 2, ENET_RATIO * np.abs(u).sum(1), _level("enet", t)
    r = (-b + np.sqrt(b**2 + 4 * a * c)) / (2 * a)
    return r[:, None] * u


_MARKER = {"l2": 7.0, "l1": 10.0, "enet": 6.0}  # the L1 dot stays visible under the elastic net's

_LABELS = {"l2": "L2 (ridge)", "l1": "L1 (lasso)", "enet": f"elastic net (ρ={ENET_RATIO})"}


@register("constraint_geometry", 2)
def make_constraint_geometry(quick: bool, seed: int) -> GalleryFigure:
    """Gallery maker of figure 2."""
    panels = constraint_geometry(seed, steps=20 if quick else 36)
    fig = new_figure(10.0, 4.9)
    axes = fig.subplots(1, 2)
    numbers: dict[str, float] = {}
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        lim = 2.4
        g = np.linspace(-lim, lim, 241)
        W = np.stack(np.meshgrid(g, g), axis=-1)
        L = panel.loss(W)
        base = float(panel.loss(panel.w_ols))
        ax.contour(
            g, g, L, levels=np.linspace(base, base + 6, 13)[1:], colors="0.8", linewidths=0.7
        )
        ax.plot(*panel.w_ols, "k*", ms=9, label="least squares")
        for kind in PENALTIES:
            color = COLORS[kind]
            ax.fill(*_boundary(kind, panel.t).T, color=color, alpha=0.08)
            ax.plot(*_boundary(kind, panel.t).T, color=color, lw=1.5)
            w = panel.solutions[kind]
            ax.contour(
                g, g, L, levels=[float(panel.loss(w))], colors=color, linewidths=1, linestyles=":"
            )
            ax.plot(
                *w,
                "o",
                color=color,
                ms=_MARKER[kind],
                mec="k",
                label=f"{_LABELS[kind]}: ({w[0]:.2f}, {w[1]:.2f})",
            )
            numbers[f"panel{i + 1}_{kind}_w1"] = float(w[0])
            numbers[f"panel{i + 1}_{kind}_w2"] = float(w[1])
            numbers[f"panel{i + 1}_{kind}_alpha"] = panel.alphas[kind]
        ax.axhline(0, color="0.5", lw=0.6)
        ax.axvline(0, color="0.5", lw=0.6)
        ax.set_xlim(-1.4, lim)
        ax.set_ylim(-1.4, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("$w_1$")
        ax.set_ylabel("$w_2$")
        ax.set_title(panel.title, fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    p1, p2 = panels
    caption = (
        f"Regions that cross the axes at ±{p1.t:g}: the L2 disc, the L1 diamond and the elastic-net region "
        f"(ρ = {ENET_RATIO}), with the contours of a two-feature least-squares loss (grey; star: its "
        f"minimum) and the constrained solutions (dots; dotted: the loss contour through each). Each "
        f"solution is the penalized fit of `reglight.linear.elastic_net` (ridge in closed form for L2) at "
        f"the α that bisection finds to put it on the region's boundary. Left, independent features of "
        f"curvature 3 and 1, least squares at ({p1.w_ols[0]:g}, {p1.w_ols[1]:g}): the L1 solution is on an "
        f"axis, ({p1.solutions['l1'][0]:.3f}, {p1.solutions['l1'][1]:.3f}) at α = {p1.alphas['l1']:.3f}; "
        f"L2 gives ({p1.solutions['l2'][0]:.3f}, {p1.solutions['l2'][1]:.3f}) and the elastic net "
        f"({p1.solutions['enet'][0]:.3f}, {p1.solutions['enet'][1]:.3f}). Right, two features with "
        f"correlation 0.8, least squares at ({p2.w_ols[0]:g}, {p2.w_ols[1]:g}): the lasso keeps one feature, "
        f"({p2.solutions['l1'][0]:.3f}, {p2.solutions['l1'][1]:.3f}), the elastic net keeps both, "
        f"({p2.solutions['enet'][0]:.3f}, {p2.solutions['enet'][1]:.3f})."
    )
    return GalleryFigure(
        "constraint_geometry",
        "Constraint regions of L2, L1 and the elastic net",
        fig,
        caption,
        numbers,
    )
