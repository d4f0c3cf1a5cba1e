"""The gallery: every picture of the theme, computed by the library on real models and data.

Each figure is made by a *maker* registered with [register][reglight.figures.register]: a function
`(quick, seed) -> GalleryFigure` that computes its numbers with reglight's own code (solvers, paths, cross-
validation, dropout and norm modules) on a real data set, and draws them.
[write_figures][reglight.figures.write_figures] writes each one as PNG, SVG, a Markdown caption and a JSON
file of its numbers; the command `reglight figures` calls it.

[load_all][reglight.figures.load_all] imports every figure module of this package (the names of
`_MODULES` and any other public module in the folder), so that a new figure only needs a new file with a
registered maker.

Examples:
    >>> from reglight.figures import figure_names
    >>> figure_names()[:3]
    ['fit_regimes', 'constraint_geometry', 'coefficient_paths']
"""

from __future__ import annotations

import importlib
import pkgutil

from reglight.figures._base import FigureMaker, GalleryFigure, register, registered
from reglight.figures._write import write_figures

__all__ = [
    "FigureMaker",
    "GalleryFigure",
    "figure_names",
    "load_all",
    "register",
    "registered",
    "write_figures",
]

_MODULES = (
    "fit_regimes",
    "constraint_geometry",
    "coefficient_paths",
    "dropout_ensemble",
    "norm_axes",
)
"""The figure modules of this package that are always imported (others are found in the folder)."""


def load_all() -> dict[str, FigureMaker]:
    """Import every figure module of the package and return the registered makers in gallery order.

    The modules named in `_MODULES` are imported first, then every other module of the package folder
    whose name does not start with an underscore.

    Returns:
        The makers by name, in gallery order (see [registered][reglight.figures.registered]).
    """
    names = list(_MODULES)
    names += sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and info.name not in _MODULES
    )
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return registered()


def figure_names() -> list[str]:
    """The names of all gallery figures (the values `reglight figures --only` accepts), in gallery order."""
    return list(load_all())
