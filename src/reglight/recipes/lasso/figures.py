"""The regularization-path figure: coefficients against `α` with the chosen `α` marked.

Drawn on a bare matplotlib `Figure` (rendered by Agg; no display, no pyplot state) and returned for
[`log_figure`][reglight.logging.log_figure].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CVCurve", "path_figure"]


@dataclass
class CVCurve:
    """A cross-validation curve to draw under the path.

    Attributes:
        alphas: The grid (decreasing).
        mean: Mean held-out error per `α`.
        se: Its standard error per `α`.
        label: What the error is (`"MSE"`, `"log-loss"`).
    """

    alphas: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    label: str


def path_figure(
    alphas: np.ndarray,
    coefs: np.ndarray,
    feature_names: Sequence[str],
    alpha: float,
    *,
    cv: CVCurve | None = None,
    title: str = "Regularization path",
    ylabel: str = "coefficient (standardized)",
    n_labels: int = 8,
) -> Figure:
    """Coefficient paths against `α` (log axis, decreasing to the right), `α` marked.

    The `n_labels` features with the largest coefficients at `alpha` are coloured and named in
    the legend, the others drawn in grey. With `cv`, a second panel shows the cross-validation
    error (mean ± one standard error).

    Args:
        alphas: `(n_alphas,)` grid.
        coefs: `(n_features, n_alphas)` coefficients along the grid.
        feature_names: One name per feature.
        alpha: The chosen `α`.
        cv: A `CVCurve` to draw below, or `None`.
        title: Title of the figure.
        ylabel: Label of the coefficient axis.
        n_labels: How many features to name.

    Returns:
        A matplotlib figure.

    Examples:
        >>> import numpy as np
        >>> a = np.geomspace(1.0, 0.01, 5)
        >>> fig = path_figure(a, np.outer([1.0, -0.5], 1 - a), ["x", "y"], alpha=0.1)
        >>> len(fig.axes)
        1
    """
    from matplotlib.figure import Figure  # a bare Figure renders with Agg, no pyplot state

    alphas = np.asarray(alphas, dtype=np.float64)
    coefs = np.asarray(coefs, dtype=np.float64)
    rows = 2 if cv is not None else 1
    fig = Figure(figsize=(7.0, 4.2 * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    at = int(np.argmin(np.abs(np.log(alphas) - np.log(max(alpha, 1e-300)))))
    order = np.argsort(-np.abs(coefs[:, at]))
    named = [j for j in order[:n_labels] if coefs[j, at] != 0]
    for j in range(coefs.shape[0]):
        if j not in named:
            ax.plot(alphas, coefs[j], color="0.75", linewidth=0.8)
    for j in named:
        ax.plot(alphas, coefs[j], linewidth=1.6, label=str(feature_names[j]))
    ax.axhline(0.0, color="0.4", linewidth=0.6)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if named:
        ax.legend(fontsize=8, loc="best", frameon=False)
    for a in axes:
        a.axvline(alpha, color="crimson", linestyle="--", linewidth=1.2)
    ax.annotate(
        f"α = {alpha:.3g}",
        xy=(alpha, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(3, -12),
        textcoords="offset points",
        color="crimson",
        fontsize=9,
    )
    if cv is not None:
        cax = axes[1]
        cax.plot(cv.alphas, cv.mean, color="black", linewidth=1.4)
        cax.fill_between(cv.alphas, cv.mean - cv.se, cv.mean + cv.se, color="0.8")
        best = int(np.argmin(cv.mean))
        cax.plot(cv.alphas[best], cv.mean[best], "o", color="black", markersize=4)
        cax.annotate(
            "min",
            xy=(cv.alphas[best], cv.mean[best]),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
        cax.set_ylabel(f"cross-validated {cv.label}")
    axes[-1].set_xlabel("α (log scale)")
    return fig
