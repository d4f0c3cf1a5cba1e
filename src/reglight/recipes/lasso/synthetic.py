r"""Synthetic sparse linear problems: few informative features among many, optionally correlated.

Examples:
    >>> data = make_sparse_data(n_samples=50, n_features=200, n_informative=3, group_size=2)
    >>> data.X.shape, int((data.coef != 0).sum())
    ((50, 200), 6)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reglight._validation import (
    check_choice,
    check_in_range,
    check_nonnegative,
    check_positive_int,
)

__all__ = ["SparseData", "check_sparse_args", "make_sparse_data"]


@dataclass
class SparseData:
    """A synthetic sparse problem from [`make_sparse_data`][reglight.recipes.lasso.make_sparse_data].

    Attributes:
        X: Features (n_samples, n_features), float64.
        y: Targets (float64 for regression, int64 labels in {0, 1} for classification).
        coef: True coefficients (n_features,); nonzero exactly on the informative features.
        feature_names: `"x0000"`, `"x0001"`, ...
    """

    X: np.ndarray
    y: np.ndarray
    coef: np.ndarray
    feature_names: list[str]


def check_sparse_args(
    n_samples: int,
    n_features: int,
    n_informative: int,
    group_size: int,
    correlation: float,
    noise: float,
) -> None:
    """Validate the arguments of [`make_sparse_data`][reglight.recipes.lasso.make_sparse_data].

    Raises:
        ValueError: naming the argument that is out of range.
    """
    check_positive_int("n_samples", n_samples, minimum=2)
    check_positive_int("n_features", n_features)
    check_positive_int("n_informative", n_informative, minimum=0)
    check_positive_int("group_size", group_size)
    check_in_range("correlation", correlation, 0.0, 1.0, high_inclusive=False)
    check_nonnegative("noise", noise)
    if n_informative * group_size > n_features:
        raise ValueError(
            f"`n_informative * group_size` ({n_informative} * {group_size}) must not exceed "
            f"`n_features` ({n_features})"
        )


def make_sparse_data(
    n_samples: int = 200,
    n_features: int = 1000,
    n_informative: int = 10,
    group_size: int = 1,
    correlation: float = 0.0,
    noise: float = 1.0,
    task: str = "regression",
    seed: int = 0,
) -> SparseData:
    r"""A sparse linear problem, high-dimensional when `n_samples < n_features`.

    The first `n_informative * group_size` columns form `n_informative` groups of `group_size`
    features; group `g` shares a latent factor `z_g`: `x_j = √c z_g + √(1-c) e_j` with
    `c = correlation`, so two members of a group have correlation `c`. Every member of group
    `g` carries the coefficient `β_g = ±U(1, 3)` (random sign). The other columns are
    independent standard normal noise features with coefficient 0.

    - regression: $y = X\beta + \sigma\varepsilon$ with `σ = noise`;
    - classification: $y = 1[X\beta + \sigma\varepsilon > 0]$.

    This is the genomics-like setting of the lasso (few informative among many measured features)
    and, with `group_size=2` and a correlation close to 1, the correlated-pair example: the lasso
    keeps one member of each pair, the elastic net keeps both (Zou & Hastie 2005).

    Args:
        n_samples: Number of rows.
        n_features: Number of columns (at least `n_informative * group_size`).
        n_informative: Number of informative groups.
        group_size: Features per informative group (1: no groups).
        correlation: Correlation `c` in `[0, 1)` between members of a group.
        noise: Standard deviation `σ` of the additive noise.
        task: `"regression"` or `"classification"`.
        seed: Seed of the NumPy generator.

    Returns:
        A `SparseData`.

    Raises:
        ValueError: if an argument is out of range or the informative groups do not fit.

    Examples:
        >>> data = make_sparse_data(n_samples=50, n_features=200, n_informative=3, group_size=2)
        >>> data.X.shape, int((data.coef != 0).sum())
        ((50, 200), 6)
    """
    check_sparse_args(n_samples, n_features, n_informative, group_size, correlation, noise)
    check_choice("task", task, ("regression", "classification"))
    n_signal = n_informative * group_size
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    if n_informative and correlation > 0:
        latent = rng.standard_normal((n_samples, n_informative))
        shared = np.repeat(latent, group_size, axis=1)
        X[:, :n_signal] = (
            math.sqrt(correlation) * shared + math.sqrt(1 - correlation) * X[:, :n_signal]
        )
    beta = rng.uniform(1.0, 3.0, n_informative) * rng.choice([-1.0, 1.0], n_informative)
    coef = np.zeros(n_features)
    coef[:n_signal] = np.repeat(beta, group_size)
    eta = X @ coef + noise * rng.standard_normal(n_samples)
    y = eta if task == "regression" else (eta > 0).astype(np.int64)
    width = max(4, len(str(n_features - 1)))
    names = [f"x{j:0{width}d}" for j in range(n_features)]
    return SparseData(X=X, y=y, coef=coef, feature_names=names)
