"""Lasso / elastic-net paths and single fits against scikit-learn (float64, standardized data)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_diabetes
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import Lasso as SkLasso
from sklearn.linear_model import enet_path as sk_enet_path

from reglight.linear import (
    ElasticNet,
    Lasso,
    alpha_grid,
    elastic_net,
    enet_dual_gap,
    enet_objective,
    enet_path,
    lasso_path,
)

TIGHT = {"tol": 1e-13, "max_iter": 200_000}


def _standardize(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (X - X.mean(0)) / X.std(0), y - y.mean()


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    Xs, yc = _standardize(X, y)
    return Xs, yc / y.std()


@pytest.fixture(scope="module")
def wide() -> tuple[np.ndarray, np.ndarray]:
    """p > n with correlated features and 6 informative ones."""
    rng = np.random.default_rng(3)
    n, p = 60, 250
    X = 0.8 * rng.standard_normal((n, p)) + 0.6 * rng.standard_normal((n, 1))
    w = np.zeros(p)
    w[[3, 17, 40, 99, 150, 201]] = [2.0, -1.5, 1.0, 3.0, -2.5, 1.2]
    y = X @ w + 0.5 * rng.standard_normal(n)
    return _standardize(X, y)


def _support(c: np.ndarray) -> np.ndarray:
    return np.abs(c) > 1e-10


@pytest.mark.parametrize("data", ["diabetes", "wide"])
@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_path_matches_sklearn(request: pytest.FixtureRequest, data: str, l1_ratio: float) -> None:
    X, y = request.getfixturevalue(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_alphas, sk_coefs, _ = sk_enet_path(
            np.asfortranarray(X), y, l1_ratio=l1_ratio, alphas=40, eps=1e-2, **TIGHT
        )
    alphas, coefs = enet_path(X, y, l1_ratio=l1_ratio, n_alphas=40, eps=1e-2)
    np.testing.assert_allclose(alphas, sk_alphas, rtol=1e-12)
    assert coefs.shape == (X.shape[1], 40)
    assert np.abs(coefs - sk_coefs).max() < 1e-4
    np.testing.assert_array_equal(_support(coefs), _support(sk_coefs))


@pytest.mark.parametrize("data", ["diabetes", "wide"])
@pytest.mark.parametrize("alpha_frac", [0.5, 0.1, 0.02])
def test_lasso_and_enet_match_sklearn(
    request: pytest.FixtureRequest, data: str, alpha_frac: float
) -> None:
    X, y = request.getfixturevalue(data)
    raw_y = y * 3.0 + 7.0  # with an intercept to fit
    alpha_max = np.abs(X.T @ (raw_y - raw_y.mean())).max() / X.shape[0]
    alpha = alpha_frac * alpha_max
    for ours, ref in (
        (Lasso(alpha), SkLasso(alpha=alpha, **TIGHT)),
        (ElasticNet(alpha, 0.7), SkElasticNet(alpha=alpha, l1_ratio=0.7, **TIGHT)),
    ):
        ours.fit(X, raw_y)
        ref.fit(X, raw_y)
        assert np.abs(ours.coef_ - ref.coef_).max() < 1e-4
        assert abs(ours.intercept_ - ref.intercept_) < 1e-4
        np.testing.assert_array_equal(_support(ours.coef_), _support(ref.coef_))


def test_objective_not_worse_than_sklearn_default_tolerance(wide: tuple) -> None:
    """Exact solutions: at every α the objective is at most scikit-learn's (default tol 1e-4)."""
    X, y = wide
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alphas, sk_coefs, _ = sk_enet_path(np.asfortranarray(X), y, l1_ratio=1.0, alphas=30)
    _, coefs = lasso_path(X, y, alphas=alphas)
    for i, a in enumerate(alphas):
        ours = enet_objective(X, y, coefs[:, i], a)
        theirs = enet_objective(X, y, sk_coefs[:, i], a)
        assert ours <= theirs + 1e-12 * abs(theirs)
        assert enet_dual_gap(X, y, coefs[:, i], a) < 1e-10


def test_alpha_grid_and_explicit_alphas(diabetes: tuple) -> None:
    X, y = diabetes
    grid = alpha_grid(X, y, l1_ratio=0.5, n_alphas=5, eps=1e-2)
    assert np.isclose(grid[0], np.abs(X.T @ y).max() / (X.shape[0] * 0.5))
    np.testing.assert_allclose(grid[-1] / grid[0], 1e-2)
    # at alpha_max all coefficients are zero, just below it one is not
    _, c = enet_path(X, y, l1_ratio=0.5, alphas=[grid[0], 0.99 * grid[0]])
    assert np.all(c[:, 0] == 0) and np.count_nonzero(c[:, 1]) == 1
    # unsorted alphas come back sorted decreasingly, like scikit-learn
    alphas, coefs = lasso_path(X, y, alphas=[0.01, 0.5, 0.1])
    np.testing.assert_allclose(alphas, [0.5, 0.1, 0.01])
    np.testing.assert_allclose(coefs[:, 1], lasso_path(X, y, alphas=[0.1])[1][:, 0], atol=1e-12)


@pytest.mark.parametrize("precompute", [True, False])
def test_gram_and_design_modes_agree(wide: tuple, precompute: bool) -> None:
    X, y = wide
    _, reference = lasso_path(X, y, n_alphas=15, eps=0.05)
    _, coefs = lasso_path(X, y, n_alphas=15, eps=0.05, precompute=precompute)
    assert np.abs(coefs - reference).max() < 1e-9


def test_tensor_in_tensor_out_and_float32(diabetes: tuple) -> None:
    X, y = diabetes
    alphas, coefs = lasso_path(torch.from_numpy(X), torch.from_numpy(y), n_alphas=10)
    assert isinstance(alphas, torch.Tensor) and isinstance(coefs, torch.Tensor)
    assert coefs.dtype == torch.float64
    _, ref = lasso_path(X, y, n_alphas=10)
    np.testing.assert_allclose(coefs.numpy(), ref, atol=1e-12)
    _, c32 = lasso_path(X.astype(np.float32), y.astype(np.float32), n_alphas=10)
    assert c32.dtype == np.float32
    assert np.abs(c32 - ref).max() < 1e-3
    coef, intercept = elastic_net(torch.from_numpy(X), torch.from_numpy(y + 2.0), 0.05)
    assert isinstance(coef, torch.Tensor) and abs(float(intercept) - 2.0) < 1e-10


def test_duplicate_columns_do_not_break_the_solver(diabetes: tuple) -> None:
    """A singular Gram matrix (exact duplicate columns): still the optimal objective."""
    X, y = diabetes
    Xd = np.hstack([X, X[:, [2, 8]]])
    alphas, coefs = lasso_path(Xd, y, n_alphas=20, eps=1e-3)
    _, ref = lasso_path(X, y, alphas=alphas)
    for i, a in enumerate(alphas):
        assert np.isclose(
            enet_objective(Xd, y, coefs[:, i], a), enet_objective(X, y, ref[:, i], a), rtol=1e-9
        )


def test_correlated_pair_lasso_picks_one_enet_keeps_both() -> None:
    """Zou & Hastie's grouping effect on two nearly identical informative features."""
    rng = np.random.default_rng(0)
    n = 200
    z = rng.standard_normal(n)
    X = np.column_stack(
        [z + 0.01 * rng.standard_normal(n), z + 0.01 * rng.standard_normal(n)]
        + [rng.standard_normal(n) for _ in range(8)]
    )
    y = 2.0 * z + 0.5 * rng.standard_normal(n)
    X = (X - X.mean(0)) / X.std(0)
    lasso = Lasso(alpha=0.1).fit(X, y)
    enet = ElasticNet(alpha=0.2, l1_ratio=0.2).fit(X, y)
    assert np.count_nonzero(lasso.coef_[:2]) == 1
    assert np.all(enet.coef_[:2] != 0)
    assert abs(enet.coef_[0] - enet.coef_[1]) < 0.1 * abs(enet.coef_[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"l1_ratio": 0.0}, "l1_ratio"),
        ({"l1_ratio": 1.5}, "l1_ratio"),
        ({"eps": 0.0}, "eps"),
        ({"n_alphas": 0}, "n_alphas"),
        ({"precompute": "yes"}, "precompute"),
        ({"alphas": [-1.0]}, "alphas"),
    ],
)
def test_invalid_arguments(diabetes: tuple, kwargs: dict, match: str) -> None:
    X, y = diabetes
    with pytest.raises(ValueError, match=match):
        enet_path(X, y, **kwargs)


def test_invalid_inputs(diabetes: tuple) -> None:
    X, y = diabetes
    with pytest.raises(ValueError, match="`y` must have shape"):
        lasso_path(X, y[:-1])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lasso_path(bad, y)
    with pytest.raises(TypeError, match="numeric"):
        lasso_path(np.array([["a", "b"]]), np.array([1.0]))
    with pytest.raises(ValueError, match="alpha"):
        Lasso(alpha=-1.0).fit(X, y)
    with pytest.raises(NotFittedError, match="not fitted"):
        Lasso(0.1).predict(X)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(wide: tuple) -> None:
    X, y = wide
    _, cpu = enet_path(X, y, l1_ratio=0.5, n_alphas=20)
    _, gpu = enet_path(
        torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda(), l1_ratio=0.5, n_alphas=20
    )
    assert gpu.is_cuda
    assert np.abs(gpu.cpu().numpy() - cpu).max() < 1e-9


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(5, 40),
    p=st.integers(1, 60),
    rho=st.sampled_from([1.0, 0.7, 0.2]),
    corr=st.floats(0.0, 0.95),
    seed=st.integers(0, 10_000),
)
def test_random_problems_are_solved_to_optimality(
    n: int, p: int, rho: float, corr: float, seed: int
) -> None:
    """Random designs (n < p and n > p, correlated): the duality gap certifies every solution."""
    rng = np.random.default_rng(seed)
    X = np.sqrt(1 - corr) * rng.standard_normal((n, p)) + np.sqrt(corr) * rng.standard_normal(
        (n, 1)
    )
    y = X[:, : min(p, 3)].sum(1) + rng.standard_normal(n)
    alphas, coefs = enet_path(X, y, l1_ratio=rho, n_alphas=12, eps=1e-2)
    scale = float(y @ y) / n
    for i, a in enumerate(alphas):
        assert enet_dual_gap(X, y, coefs[:, i], a, rho) <= 1e-8 * max(scale, 1e-12)
