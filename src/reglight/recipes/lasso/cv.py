"""Choosing `alpha` by K-fold cross-validation, and the regularization path, with `reglight.linear`.

Both run the full-batch solvers of `reglight.linear` on the standardized
training split: [`enet_cv`][reglight.linear.enet_cv] / [`enet_path`][reglight.linear.enet_path]
for regression (the mean squared error) and [`logistic_cv`][reglight.linear.logistic_cv] /
[`logistic_path`][reglight.linear.logistic_path] for classification (the log-loss).

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal((80, 5))
    >>> y = 2 * z[:, 0] + 0.1 * rng.standard_normal(80)
    >>> alpha, curve = cross_validate_alpha(z, y, "regression", n_alphas=20)
    >>> curve.label, len(curve.alphas), bool(0 < alpha < curve.alphas[0])
    ('MSE', 20, True)
"""

from __future__ import annotations

import numpy as np

from .figures import CVCurve

__all__ = ["cross_validate_alpha", "regularization_path"]


def cross_validate_alpha(
    z: np.ndarray,
    y: np.ndarray,
    task: str,
    *,
    l1_ratio: float = 1.0,
    n_alphas: int = 100,
    eps: float = 1e-3,
    cv: int = 5,
    rule: str = "min",
) -> tuple[float, CVCurve]:
    """The `alpha` that `rule` picks on the K-fold cross-validation curve.

    Args:
        z: `(n, p)` standardized training features.
        y: `(n,)` targets (regression) or class codes.
        task: `"regression"`, `"binary"` or `"multiclass"`.
        l1_ratio: scikit-learn's `l1_ratio`.
        n_alphas: size of the `alpha` grid.
        eps: `alpha_min / alpha_max` of the grid.
        cv: number of folds.
        rule: `"min"` (lowest mean error) or `"1se"` (the largest `alpha` within one standard
            error of it).

    Returns:
        `(alpha, curve)`: the chosen `alpha` and the curve, to draw under the path.
    """
    from reglight.linear import enet_cv, logistic_cv

    if task == "regression":
        result = enet_cv(
            z,
            np.asarray(y, dtype=np.float64),
            l1_ratio=l1_ratio,
            n_alphas=n_alphas,
            eps=eps,
            cv=cv,
            rule=rule,
        )
        label = "MSE"
    else:
        result = logistic_cv(
            z,
            np.asarray(y, dtype=np.int64),
            l1_ratio=l1_ratio,
            n_alphas=n_alphas,
            eps=eps,
            cv=cv,
            rule=rule,
        )
        label = "log-loss"
    curve = CVCurve(
        np.asarray(result.alphas[0]), np.asarray(result.mean[0]), np.asarray(result.se[0]), label
    )
    return float(result.alpha), curve


def regularization_path(
    z: np.ndarray,
    y: np.ndarray,
    task: str,
    *,
    l1_ratio: float = 1.0,
    n_alphas: int = 100,
    eps: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients along a decreasing `alpha` grid.

    Args:
        z: `(n, p)` standardized training features.
        y: `(n,)` targets (regression; centred here, the intercept being unpenalized) or class codes.
        task: `"regression"`, `"binary"` or `"multiclass"`.
        l1_ratio: scikit-learn's `l1_ratio`.
        n_alphas: size of the grid.
        eps: `alpha_min / alpha_max`.

    Returns:
        `(alphas, coefs)` with `coefs` of shape `(p, n_alphas)` (for the multinomial model: each
        feature's Euclidean norm over the classes).
    """
    from reglight.linear import enet_path, logistic_path

    if task == "regression":
        yn = np.asarray(y, dtype=np.float64)
        alphas, coefs = enet_path(z, yn - yn.mean(), l1_ratio=l1_ratio, n_alphas=n_alphas, eps=eps)
    else:
        alphas, coefs, _ = logistic_path(
            z, np.asarray(y, dtype=np.int64), l1_ratio=l1_ratio, n_alphas=n_alphas, eps=eps
        )
        coefs = np.asarray(coefs)
        if coefs.ndim == 3:
            coefs = np.linalg.norm(coefs, axis=0)
    return np.asarray(alphas), np.asarray(coefs)
