"""Figures of the medical-image CNN recipe (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ablation_bar_chart", "confusion_matrix_figure"]


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def confusion_matrix_figure(
    matrix: np.ndarray, labels: Sequence[str], title: str = "Confusion matrix (test)"
) -> Figure:
    """Heat map of a confusion matrix with the counts written in the cells.

    Args:
        matrix: ``(K, K)`` counts (rows: true class, columns: predicted class), or ``(K, 2, 2)`` for a
            multi-label task (one panel per label).
        labels: Class (or label) names, ``K`` of them.
        title: Figure title.

    Returns:
        The matplotlib figure.

    Example:
        >>> fig = confusion_matrix_figure(np.array([[40, 2], [5, 109]]), ["malignant", "benign"])
        >>> len(fig.axes)
        1
    """
    m = np.asarray(matrix)
    if m.ndim == 3:
        panels = [(m[i], ["0", "1"], str(labels[i])) for i in range(m.shape[0])]
    else:
        panels = [(m, [str(x) for x in labels], title)]
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    k = panels[0][0].shape[0]
    size = max(2.5, 0.6 * k + 1.5)
    fig = _new_figure(size * cols, size * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (cm, names, name) in zip(axes.flat, panels):
        ax.imshow(cm, cmap="Blues")
        hi = cm.max() if cm.size else 0
        for (i, j), v in np.ndenumerate(cm):
            ax.text(
                j,
                i,
                f"{int(v)}",
                ha="center",
                va="center",
                color="white" if v > hi / 2 else "black",
            )
        ax.set_xticks(
            range(len(names)), names, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center"
        )
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if len(panels) > 1:
        fig.suptitle(title)
    return fig


def ablation_bar_chart(
    names: Sequence[str],
    means: Mapping[str, Sequence[float]],
    stds: Mapping[str, Sequence[float]],
    title: str = "Ablation (mean ± std over seeds)",
) -> Figure:
    """Grouped bar chart of ablation results with standard-deviation error bars.

    Args:
        names: Variant names (one group of bars each).
        means: Metric name → one mean per variant.
        stds: Metric name → one standard deviation per variant.
        title: Figure title.

    Returns:
        The matplotlib figure.

    Example:
        >>> fig = ablation_bar_chart(["full", "none"], {"AUC": [0.9, 0.8]}, {"AUC": [0.01, 0.02]})
        >>> len(fig.axes)
        1
    """
    fig = _new_figure(max(6.0, 1.1 * len(names) + 2), 4.0)
    ax = fig.subplots()
    x = np.arange(len(names))
    n = max(len(means), 1)
    w = 0.8 / n
    for i, metric in enumerate(means):
        ax.bar(
            x + (i - (n - 1) / 2) * w, means[metric], w, yerr=stds[metric], capsize=3, label=metric
        )
    ax.set_xticks(x, list(names), rotation=30, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_title(title)
    top = max((m + e for k in means for m, e in zip(means[k], stds[k])), default=1.0)
    ax.set_ylim(top=1.2 * top)
    ax.legend(loc="upper center", ncol=min(n, 4), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig
