"""What the lasso recipe reports: the selected features and the tables `reglight run` prints.

Examples:
    >>> import torch
    >>> w = torch.tensor([[0.0, -2.0, 0.5]], dtype=torch.float64)
    >>> scale = torch.tensor([1.0, 4.0, 0.5], dtype=torch.float64)
    >>> features = feature_rows(["a", "b", "c"], w, w / scale, w, w / scale, selected_only=True)
    >>> [(f.name, f.coef[0], f.coef_original[0]) for f in features]
    [('b', -2.0, -0.5), ('c', 0.5, 1.0)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

__all__ = [
    "Convergence",
    "SelectedFeature",
    "coefficient_table",
    "convergence_table",
    "feature_rows",
    "metrics_table",
    "support_recovery_table",
]


@dataclass(frozen=True)
class SelectedFeature:
    """A feature kept by the penalty, with its coefficients (one per model output).

    Attributes:
        name: Feature name.
        index: Column index in the data.
        coef: Coefficients on the standardized feature.
        coef_original: Coefficients in the feature's original units (`coef / scale`).
        refit: Relaxed-lasso refit coefficients (standardized).
        refit_original: Refit coefficients in original units.
    """

    name: str
    index: int
    coef: tuple[float, ...]
    coef_original: tuple[float, ...]
    refit: tuple[float, ...]
    refit_original: tuple[float, ...]


@dataclass(frozen=True)
class Convergence:
    """Where the full-batch solver stopped, and how far from the optimum.

    Attributes:
        converged: Whether the stopping rule was met before `max_epochs`.
        epochs: Number of proximal gradient steps taken (one per epoch).
        last_step: The last step's largest coefficient change over the largest coefficient.
        tol: The stopping tolerance on `last_step`.
        kkt_violation: The largest violation of the optimality (KKT) conditions of the
            penalized objective on the training split, in gradient units (0 at the minimizer).
    """

    converged: bool
    epochs: int
    last_step: float
    tol: float
    kkt_violation: float

    @property
    def status(self) -> str:
        """`"converged"` or `"not converged (step … > tol …)"`, for the summary."""
        if self.converged:
            return "converged"
        return f"not converged (step {self.last_step:.2g} > tol {self.tol:.2g})"

    def message(self) -> str:
        """The warning's text when the solver did not converge."""
        return (
            f"SparseLinearModel: the proximal gradient method stopped after {self.epochs} epochs "
            f"before its tolerance: the last step changed the coefficients by {self.last_step:.3g} "
            f"of the largest (tol {self.tol:.3g}) and the KKT violation is "
            f"{self.kkt_violation:.3g}. The selected features are not the lasso's yet: raise the Trainer's "
            "`max_epochs` (`--trainer.max_epochs`) or loosen `tol` (`--model.tol`)."
        )


def convergence_table(conv: Convergence) -> Any:
    """The solver's state as a `reglight.logging.Table`.

    Args:
        conv: Where the solver stopped.

    Returns:
        A `reglight.logging.Table`.
    """
    from reglight.logging import Table

    rows: list[list[Any]] = [
        ["status", conv.status],
        ["epochs (proximal steps)", conv.epochs],
        ["last step / largest coefficient", conv.last_step],
        ["tol", conv.tol],
        ["KKT violation (training split)", conv.kkt_violation],
    ]
    return Table("Solver", ["", "value"], rows)


def feature_rows(
    names: Sequence[str],
    coef: Tensor,
    coef_original: Tensor,
    refit: Tensor,
    refit_original: Tensor,
    *,
    selected_only: bool,
) -> list[SelectedFeature]:
    """One [`SelectedFeature`][reglight.recipes.lasso.SelectedFeature] per feature.

    Args:
        names: one name per feature.
        coef: `(n_outputs, p)` coefficients (standardized).
        coef_original: the same in original units.
        refit: `(n_outputs, p)` refit coefficients (standardized).
        refit_original: the same in original units.
        selected_only: only the features with a nonzero coefficient, largest first; else all of
            them in column order.

    Returns:
        A list of [`SelectedFeature`][reglight.recipes.lasso.SelectedFeature].
    """
    if selected_only:
        order = [j for j in range(coef.shape[1]) if bool((coef[:, j] != 0).any())]
        order.sort(key=lambda j: -float(coef[:, j].abs().max()))
    else:
        order = list(range(coef.shape[1]))
    return [
        SelectedFeature(
            name=names[j],
            index=j,
            coef=tuple(coef[:, j].tolist()),
            coef_original=tuple(coef_original[:, j].tolist()),
            refit=tuple(refit[:, j].tolist()),
            refit_original=tuple(refit_original[:, j].tolist()),
        )
        for j in order
    ]


def coefficient_table(
    features: Iterable[SelectedFeature], output_labels: Sequence[str], title: str
) -> Any:
    """The coefficients as a `reglight.logging.Table` (standardized, original units, refit).

    Args:
        features: the rows.
        output_labels: one label per model output; with more than one, a `class` column.
        title: the table's title.

    Returns:
        A `reglight.logging.Table`.
    """
    from reglight.logging import Table

    columns = ["feature", "coef (std)", "coef (orig)", "refit (std)", "refit (orig)"]
    multi = len(output_labels) > 1
    if multi:
        columns.insert(1, "class")
    rows: list[list[Any]] = []
    for f in features:
        for k, label in enumerate(output_labels):
            cells = [f.coef[k], f.coef_original[k], f.refit[k], f.refit_original[k]]
            rows.append([f.name, label, *cells] if multi else [f.name, *cells])
    return Table(title, columns, rows)


def metrics_table(results: Mapping[str, tuple[float, float]]) -> Any:
    """The test metrics of the lasso and of its relaxed refit, side by side.

    Args:
        results: `{"test/r2": (lasso, refit), ...}`.

    Returns:
        A `reglight.logging.Table`.
    """
    from reglight.logging import Table

    rows = [[key, a, b] for key, (a, b) in results.items()]
    return Table("Test metrics", ["metric", "lasso", "relaxed refit"], rows)


def support_recovery_table(selected: Iterable[int], true_coef: Any) -> Any:
    """How the selected features compare with the true support (synthetic data).

    Args:
        selected: indices of the selected features.
        true_coef: the true coefficients; nonzero on the informative features.

    Returns:
        A `reglight.logging.Table`.
    """
    from reglight.logging import Table

    true_set = {int(j) for j in np.flatnonzero(np.asarray(true_coef))}
    chosen = set(selected)
    rows = [
        ["informative features", len(true_set)],
        ["selected", len(chosen)],
        ["true positives", len(chosen & true_set)],
        ["false positives", len(chosen - true_set)],
        ["false negatives", len(true_set - chosen)],
    ]
    return Table("Support recovery (synthetic truth)", ["", "count"], rows)
