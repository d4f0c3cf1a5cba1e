"""K-fold cross-validation of α against scikit-learn's ElasticNetCV / LassoCV."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import ElasticNetCV as SkElasticNetCV
from sklearn.model_selection import KFold

from reglight.linear import (
    ElasticNetCV,
    LassoCV,
    LogisticElasticNetCV,
    enet_cv,
    kfold_indices,
    select_alpha,
)


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def _sk_cv(X: np.ndarray, y: np.ndarray, l1_ratio: float, cv: object) -> SkElasticNetCV:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SkElasticNetCV(
            l1_ratio=l1_ratio, cv=cv, alphas=100, tol=1e-10, max_iter=100_000
        ).fit(X, y)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_alpha_matches_elasticnetcv_with_same_folds(diabetes: tuple, l1_ratio: float) -> None:
    X, y = diabetes
    ref = _sk_cv(X, y, l1_ratio, 5)
    ours = ElasticNetCV(l1_ratio=l1_ratio, cv=5).fit(X, y)
    np.testing.assert_allclose(ours.alphas_, ref.alphas_, rtol=1e-12)
    assert np.isclose(ours.alpha_, ref.alpha_, rtol=1e-12)
    np.testing.assert_allclose(ours.mse_path_, ref.mse_path_, rtol=1e-4)
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-4
    # explicit, shuffled folds
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    assert np.isclose(
        enet_cv(X, y, l1_ratio=l1_ratio, cv=folds).alpha_min, _sk_cv(X, y, l1_ratio, folds).alpha_
    )


def test_one_standard_error_rule(diabetes: tuple) -> None:
    """α_1se = largest α whose mean CV error is within one SE (sd/√K) of the minimum."""
    X, y = diabetes
    ref = _sk_cv(X, y, 1.0, 5)
    mean = ref.mse_path_.mean(1)
    se = ref.mse_path_.std(1, ddof=1) / np.sqrt(5)
    i = int(np.argmin(mean))
    expected = ref.alphas_[mean <= mean[i] + se[i]].max()
    ours = LassoCV(cv=5, rule="1se").fit(X, y)
    assert np.isclose(ours.alpha_1se_, expected, rtol=1e-12)
    assert ours.alpha_ == ours.alpha_1se_ >= ours.alpha_min_
    assert np.count_nonzero(ours.coef_) <= np.count_nonzero(ElasticNetCV(1.0, cv=5).fit(X, y).coef_)


def test_several_l1_ratios_pick_the_best(diabetes: tuple) -> None:
    X, y = diabetes
    res = enet_cv(X, y, l1_ratio=[0.2, 0.9], n_alphas=30, cv=4)
    assert res.mean.shape == (2, 30) and res.errors.shape == (2, 30, 4)
    best = int(np.argmin(res.mean.min(1)))
    assert res.l1_ratio == [0.2, 0.9][best]


def test_kfold_matches_sklearn_and_select_alpha() -> None:
    for (tr, te), (sk_tr, sk_te) in zip(kfold_indices(23, 4), KFold(4).split(np.zeros(23))):
        np.testing.assert_array_equal(te, sk_te)
        np.testing.assert_array_equal(tr, sk_tr)
    assert select_alpha([3.0, 2.0, 1.0], [5.0, 4.0, 4.5], [0.1, 0.1, 0.1]) == (1, 2.0)
    with pytest.raises(ValueError, match="rule"):
        select_alpha([1.0], [1.0], [0.0], rule="2se")
    with pytest.raises(ValueError, match="n_splits"):
        kfold_indices(10, 1)


def test_logistic_cv_on_breast_cancer() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    model = LogisticElasticNetCV(n_alphas=12, cv=4, rule="1se").fit(X, y)
    res = model.cv_
    i_min = int(np.argmin(res.mean[0]))
    assert res.alpha_min == res.alphas[0, i_min]
    assert model.alpha_ >= res.alpha_min
    assert 0 < np.count_nonzero(model.coef_) < 30
    assert (model.predict(X) == y).mean() > 0.95
