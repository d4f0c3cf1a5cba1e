"""Figures of the medical-image CNN recipe (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["confusion_matrix_figure"]


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def confusion_matrix_figure(
    matrix: np.ndarray, labels: Sequence[str], title: str = "Confusion matrix (test)"
) -> Figure:
    """Heat map of a confusion matrix with the counts written in the cells.

    Args:
        matrix: `(K, K)` counts (rows: true class, columns: predicted class), or `(K, 2, 2)` for a
            multi-label task (one panel per label).
        labels: Class (or label) names, `K` of them.
        title: Figure title.

    Returns:
        The matplotlib figure.

    Examples:
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
