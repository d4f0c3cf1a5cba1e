"""Shared drawing helpers of the gallery's figures (Agg figures, not pyplot; one palette)."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["COLORS", "new_figure"]

COLORS = {
    "l1": "#d62728",
    "l2": "#1f77b4",
    "enet": "#2ca02c",
    "data": "#555555",
    "under": "#9467bd",
    "good": "#2ca02c",
    "over": "#d62728",
    "ridge": "#1f77b4",
}
"""Colour of each penalty and regime, the same in every figure."""


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure with an Agg canvas and a constrained layout, independent of pyplot's state."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
