"""Penalized logistic regression against scikit-learn's LogisticRegression (matched scaling)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression

from reglight.linear import LogisticElasticNet, logistic_alpha_max, logistic_path


def _standardized(loader) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    X, y = loader(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def _sklearn(X: np.ndarray, y: np.ndarray, alpha: float, l1_ratio: float) -> LogisticRegression:
    """scikit-learn minimizes C Σ loss + penalty: the same problem with C = 1 / (n α)."""
    model = LogisticRegression(
        C=1.0 / (X.shape[0] * alpha), l1_ratio=l1_ratio, solver="saga", tol=1e-12, max_iter=50_000
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


def _objective(X: np.ndarray, y: np.ndarray, coef: np.ndarray, b: np.ndarray, a: float) -> float:
    eta = X @ coef.T + b
    if coef.shape[0] == 1:
        loss = np.logaddexp(0.0, eta[:, 0]) - y * eta[:, 0]
    else:
        loss = np.logaddexp.reduce(eta, axis=1) - eta[np.arange(len(y)), y]
    return float(loss.mean() + a * np.abs(coef).sum())


@pytest.mark.parametrize(("alpha", "l1_ratio"), [(0.02, 1.0), (0.005, 1.0), (0.01, 0.5)])
def test_binary_matches_sklearn_on_breast_cancer(alpha: float, l1_ratio: float) -> None:
    X, y = _standardized(load_breast_cancer)
    ours = LogisticElasticNet(alpha, l1_ratio).fit(X, y)
    ref = _sklearn(X, y, alpha, l1_ratio)
    assert ours.coef_.shape == ref.coef_.shape == (1, 30)
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-4
    assert np.abs(ours.intercept_ - ref.intercept_).max() < 1e-4
    np.testing.assert_array_equal(ours.coef_ != 0, np.abs(ref.coef_) > 1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)


def test_multinomial_matches_sklearn_on_iris() -> None:
    X, y = _standardized(load_iris)
    alpha = 0.01
    ours = LogisticElasticNet(alpha).fit(X, y)
    ref = _sklearn(X, y, alpha, 1.0)
    assert ours.coef_.shape == (3, 4)
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-4
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    assert (
        _objective(X, y, ours.coef_, ours.intercept_, alpha)
        <= _objective(X, y, ref.coef_, ref.intercept_, alpha) + 1e-12
    )
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_path_starts_at_alpha_max_and_warm_starts_agree() -> None:
    X, y = _standardized(load_breast_cancer)
    a_max = logistic_alpha_max(X, y)
    alphas, coefs, intercepts = logistic_path(X, y, n_alphas=8, eps=0.05)
    assert np.isclose(alphas[0], a_max)
    assert np.all(coefs[:, 0] == 0) and np.isclose(intercepts[0], np.log(y.mean() / (1 - y.mean())))
    assert np.count_nonzero(coefs[:, -1]) > np.count_nonzero(coefs[:, 1])
    single = LogisticElasticNet(float(alphas[5])).fit(X, y)
    assert np.abs(single.coef_[0] - coefs[:, 5]).max() < 1e-6


def test_labels_tensors_and_errors() -> None:
    X, y = _standardized(load_breast_cancer)
    names = np.where(y == 1, "benign", "malignant")
    model = LogisticElasticNet(0.02).fit(X, names)
    assert set(model.predict(X)) <= {"benign", "malignant"}
    assert (model.predict(X) == names).mean() > 0.9
    coef_t = LogisticElasticNet(0.02).fit(torch.from_numpy(X), torch.from_numpy(y)).coef_
    assert isinstance(coef_t, torch.Tensor)
    assert np.abs(coef_t.numpy() + LogisticElasticNet(0.02).fit(X, 1 - y).coef_).max() < 1e-6
    with pytest.raises(ValueError, match="two classes"):
        LogisticElasticNet(0.1).fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="alpha"):
        LogisticElasticNet(alpha=-0.1).fit(X, y)
