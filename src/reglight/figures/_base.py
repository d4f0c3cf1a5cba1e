"""The gallery's building blocks: one computed figure and the registry of the figures `reglight figures` makes.

Every figure of the gallery is made by a *maker*, a function `(quick, seed) -> GalleryFigure` that computes the
numbers on a real model or data set with the library's own code and draws them. `quick` shrinks the
computation (fewer epochs, grid points, samples) so that all figures together take well under two minutes on
a 2-core CPU; the picture and its caption keep the same meaning. Makers are registered with
[register][reglight.figures._base.register] under a file stem and a position in the gallery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FigureMaker", "GalleryFigure", "register", "registered"]


@dataclass
class GalleryFigure:
    """One figure of the gallery, with the numbers it shows.

    Attributes:
        name: File stem (`fit_regimes` gives `fit_regimes.png`, `.svg` and `.md`).
        title: A short title (the gallery's heading for the figure).
        figure: The matplotlib figure (Agg; made with `matplotlib.figure.Figure`, not pyplot).
        caption: One Markdown paragraph: what was computed, on which model and data, and the measured
            numbers the picture shows.
        numbers: The measured numbers (written beside the picture as JSON), by name.
    """

    name: str
    title: str
    figure: Figure
    caption: str
    numbers: Mapping[str, float] = field(default_factory=dict)


FigureMaker = Callable[[bool, int], GalleryFigure]
"""A maker: `(quick, seed) -> GalleryFigure`."""

_REGISTRY: dict[str, tuple[int, FigureMaker]] = {}


def register(name: str, order: int) -> Callable[[FigureMaker], FigureMaker]:
    """Register a maker under `name` (the file stem) at position `order` of the gallery.

    Args:
        name: File stem and the value of `reglight figures --only`.
        order: Position in the gallery (ascending).

    Returns:
        A decorator that registers the maker and returns it unchanged.
    """

    def decorate(maker: FigureMaker) -> FigureMaker:
        if name in _REGISTRY and _REGISTRY[name][1] is not maker:
            raise ValueError(f"a gallery figure named {name!r} is already registered")
        _REGISTRY[name] = (order, maker)
        return maker

    return decorate


def registered() -> dict[str, FigureMaker]:
    """The registered makers by name, in gallery order."""
    return {name: maker for name, (_, maker) in sorted(_REGISTRY.items(), key=lambda kv: kv[1][0])}
