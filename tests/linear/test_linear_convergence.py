"""Solves capped by `max_iter` warn like scikit-learn's, with the KKT violation against `tol`.

Reference: scikit-learn's own `ConvergenceWarning` (the class reglight's subclasses, so its
filters apply) and the elastic-net optimality conditions computed here with NumPy.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

from reglight.linear import (
    ConvergenceWarning,
    Lasso,
    LassoCV,
    LogisticElasticNet,
    enet_path,
    logistic_path,
)


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def _kkt_violation(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, alpha: float) -> float:
    """The lasso's optimality conditions in NumPy: `|x_jᵀr/n - α sign(w_j)|` or `(|x_jᵀr/n| - α)_+`."""
    g = X.T @ (y - X @ w - b) / X.shape[0]
    res = np.where(w != 0, np.abs(g - alpha * np.sign(w)), np.maximum(np.abs(g) - alpha, 0.0))
    return float(res.max())


def _violation_in(message: str) -> float:
    match = re.search(r"KKT violation reached is ([0-9.e+-]+) > tol", message)
    assert match is not None, message
    return float(match.group(1))


def test_the_warning_is_scikit_learns_category() -> None:
    assert issubclass(ConvergenceWarning, SklearnConvergenceWarning)
    X, y = load_diabetes(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", SklearnConvergenceWarning)  # a user's existing filter
        Lasso(alpha=0.01, max_iter=1).fit(X, y)


def test_capped_lasso_warns_with_the_violation_it_reached() -> None:
    X, y = load_diabetes(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match=r"Lasso stopped at max_iter=1") as caught:
        model = Lasso(alpha=0.01, max_iter=1).fit(X, y)
    assert len(caught) == 1
    reported = _violation_in(str(caught[0].message))
    exact = _kkt_violation(X, y, model.coef_, model.intercept_, 0.01)
    assert reported == pytest.approx(exact, rel=1e-2)
    assert exact > 1e-3  # truly off the optimum


def test_capped_path_warns_once_for_all_its_alphas() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 40))
    y = X[:, :8] @ rng.standard_normal(8) + 0.1 * rng.standard_normal(60)
    with pytest.warns(ConvergenceWarning, match=r"enet_path stopped at max_iter=1") as caught:
        enet_path(X - X.mean(0), y - y.mean(), l1_ratio=1.0, alphas=[0.05, 0.01], max_iter=1)
    assert len(caught) == 1


def test_capped_logistic_solvers_warn() -> None:
    X, y = _breast_cancer()
    with pytest.warns(ConvergenceWarning, match="LogisticElasticNet stopped at max_iter=2"):
        LogisticElasticNet(alpha=1e-3, max_iter=2).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="logistic_path stopped at max_iter=2") as caught:
        logistic_path(X, y, n_alphas=10, max_iter=2)
    assert len(caught) == 1


def test_no_warning_at_the_defaults() -> None:
    X, y = load_diabetes(return_X_y=True)
    Xb, yb = _breast_cancer()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SklearnConvergenceWarning)
        Lasso(alpha=0.01).fit(X, y)
        enet_path(X - X.mean(0), y - y.mean(), l1_ratio=0.5, n_alphas=20)
        LassoCV(n_alphas=20, cv=3).fit(X, y)
        LogisticElasticNet(alpha=1e-3).fit(Xb, yb)
