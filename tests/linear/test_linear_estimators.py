"""The estimators of reglight.linear follow scikit-learn's estimator contract.

scikit-learn's own `check_estimator` suite runs on each of them; `clone`, `Pipeline` and
`GridSearchCV` are checked against the same constructions with scikit-learn's estimators, and the
coefficients against scikit-learn's solvers on real data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import Lasso as SkLasso
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from reglight.linear import (
    ElasticNet,
    ElasticNetCV,
    Lasso,
    LassoCV,
    LogisticElasticNet,
    LogisticElasticNetCV,
)

# scikit-learn's checks, with small grids for the CV estimators (every check fits several times)
# and one thread (the checks' problems are tiny: thread wake-ups would dominate on a busy CPU).
ESTIMATORS = [
    ElasticNet(n_threads=1),
    Lasso(n_threads=1),
    ElasticNetCV(n_alphas=10, cv=3, n_threads=1),
    LassoCV(n_alphas=10, cv=3, n_threads=1),
    LogisticElasticNet(alpha=0.01, n_threads=1),
    LogisticElasticNetCV(n_alphas=5, cv=3, n_threads=1),
]

# Checks that cannot apply, by estimator, with the reason (scikit-learn's `expected_failed_checks`).
# None at present: every check of scikit-learn 1.9 passes on every estimator.
EXPECTED_FAILED: dict[str, dict[str, str]] = {}


def _expected_failed(estimator: BaseEstimator) -> dict[str, str]:
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator: BaseEstimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


TIGHT = {"tol": 1e-12, "max_iter": 1_000_000}


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    return load_breast_cancer(return_X_y=True)


def test_init_stores_parameters_untouched_and_fit_validates(diabetes: tuple) -> None:
    X, y = diabetes
    model = ElasticNet(alpha=-1.0, l1_ratio=2, dtype=torch.float32, device="cpu")
    assert model.get_params()["alpha"] == -1.0 and model.get_params()["l1_ratio"] == 2
    with pytest.raises(ValueError, match=r"`alpha` must be a finite number >= 0, got -1\.0"):
        model.fit(X, y)
    with pytest.raises(ValueError, match=r"`l1_ratio` must be in \(0\.0, 1\.0\], got 2"):
        model.set_params(alpha=1.0).fit(X, y)
    with pytest.raises(ValueError, match="`precompute`"):
        Lasso(precompute="yes").fit(X, y)
    with pytest.raises(TypeError, match="`dtype`"):
        Lasso(dtype=torch.int64).fit(X, y)
    with pytest.raises(ValueError, match="`rule`"):
        LassoCV(rule="2se").fit(X, y)
    with pytest.raises(ValueError, match="`tol`"):
        LogisticElasticNet(tol=0.0).fit(X, y > 150)
    with pytest.raises(ValueError, match="`n_threads`"):
        ElasticNetCV(n_threads=0).fit(X, y)
    with pytest.raises(NotFittedError):
        LogisticElasticNet().predict(X)
    with pytest.raises(NotFittedError):
        Lasso().selected_  # noqa: B018 - the property raises


@pytest.mark.parametrize(
    "estimator",
    [
        Lasso(alpha=0.3, tol=1e-8),
        ElasticNet(alpha=0.3, l1_ratio=0.2, dtype=torch.float32),
        LassoCV(n_alphas=7, cv=KFold(3), rule="1se"),
        LogisticElasticNet(alpha=0.1, l1_ratio=0.5, device="cpu"),
        LogisticElasticNetCV(l1_ratio=[0.5, 1.0], n_alphas=4),
    ],
)
def test_clone_and_params_round_trip(estimator: BaseEstimator) -> None:
    copy = clone(estimator)
    assert copy is not estimator
    # parameters equal (a splitter is cloned too: compare it by its repr)
    assert repr(copy.get_params(deep=False)) == repr(estimator.get_params(deep=False))
    assert repr(copy) == repr(estimator)
    copy.set_params(tol=1e-6)
    assert copy.tol == 1e-6 and estimator.tol != 1e-6


def test_pipeline_matches_sklearn_pipeline(diabetes: tuple, cancer: tuple) -> None:
    """Pipeline(StandardScaler, ours) against Pipeline(StandardScaler, scikit-learn's): 1e-6."""
    X, y = diabetes
    ours = make_pipeline(StandardScaler(), Lasso(alpha=0.5)).fit(X, y)
    ref = make_pipeline(StandardScaler(), SkLasso(alpha=0.5, **TIGHT)).fit(X, y)
    np.testing.assert_allclose(ours[-1].coef_, ref[-1].coef_, atol=1e-6)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), atol=1e-6)
    assert ours.score(X, y) == pytest.approx(ref.score(X, y), abs=1e-10)
    Xc, yc = cancer
    clf = make_pipeline(StandardScaler(), LogisticElasticNet(alpha=0.01)).fit(Xc, yc)
    assert clf.score(Xc, yc) > 0.95
    assert clf.predict_proba(Xc).shape == (len(yc), 2)


def test_grid_search_over_alpha_matches_sklearn(diabetes: tuple) -> None:
    """Same grid, same folds: the same CV scores (to 1e-8) and the same best α as scikit-learn."""
    X, y = diabetes
    grid = {"lasso__alpha": [0.01, 0.1, 0.5, 1.0, 3.0]}
    folds = KFold(4, shuffle=True, random_state=0)
    ours = GridSearchCV(make_pipeline(StandardScaler(), Lasso()), grid, cv=folds).fit(X, y)
    ref = GridSearchCV(make_pipeline(StandardScaler(), SkLasso(**TIGHT)), grid, cv=folds).fit(X, y)
    assert ours.best_params_ == ref.best_params_
    np.testing.assert_allclose(
        ours.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"], atol=1e-8
    )
    assert isinstance(ours.best_estimator_[-1], Lasso)


@pytest.mark.parametrize(("alpha", "l1_ratio"), [(0.1, 1.0), (1.0, 1.0), (0.05, 0.3), (0.5, 0.7)])
def test_regression_coefficients_match_sklearn_on_diabetes(
    diabetes: tuple, alpha: float, l1_ratio: float
) -> None:
    """Raw (unstandardized) diabetes features: coef_ and intercept_ agree to 1e-6 (absolute)."""
    X, y = diabetes
    if l1_ratio == 1.0:
        ours, ref = Lasso(alpha).fit(X, y), SkLasso(alpha, **TIGHT).fit(X, y)
    else:
        ours = ElasticNet(alpha, l1_ratio).fit(X, y)
        ref = SkElasticNet(alpha=alpha, l1_ratio=l1_ratio, **TIGHT).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-6)
    assert ours.intercept_ == pytest.approx(ref.intercept_, abs=1e-6)
    np.testing.assert_array_equal(ours.coef_ == 0, np.abs(ref.coef_) < 1e-10)


@pytest.mark.parametrize(("alpha", "l1_ratio"), [(0.01, 1.0), (0.02, 0.5)])
def test_logistic_coefficients_match_sklearn_on_breast_cancer(
    cancer: tuple, alpha: float, l1_ratio: float
) -> None:
    """LogisticRegression(C=1/(nα), l1_ratio=ρ) on standardized features: coef_ to 1e-4."""
    X, y = cancer
    X = StandardScaler().fit_transform(X)
    ours = LogisticElasticNet(alpha, l1_ratio).fit(X, y)
    ref = LogisticRegression(
        C=1.0 / (X.shape[0] * alpha), l1_ratio=l1_ratio, solver="saga", tol=1e-12, max_iter=50_000
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-4)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-4)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)


def test_tensor_input_gives_tensor_output(diabetes: tuple, cancer: tuple) -> None:
    """Fitted on tensors: tensor attributes; predict answers in the kind of its own X."""
    X, y = diabetes
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    ref = Lasso(0.1).fit(X, y)
    model = Lasso(0.1).fit(Xt, yt)
    assert isinstance(model.coef_, torch.Tensor) and isinstance(model.intercept_, torch.Tensor)
    assert model.n_features_in_ == X.shape[1]
    np.testing.assert_allclose(model.coef_.numpy(), ref.coef_, atol=1e-10)
    assert isinstance(model.predict(Xt), torch.Tensor)
    assert isinstance(model.predict(X), np.ndarray)
    np.testing.assert_allclose(model.predict(X), ref.predict(X), atol=1e-8)
    assert isinstance(ref.predict(Xt), torch.Tensor)
    assert model.score(Xt, yt) == pytest.approx(ref.score(X, y), abs=1e-12)
    # float32 tensors compute in float32
    assert Lasso(0.1).fit(Xt.float(), yt.float()).coef_.dtype == torch.float32
    # classifier: numeric labels come back as a tensor for tensor input
    Xc, yc = cancer
    Xs = StandardScaler().fit_transform(Xc)
    clf = LogisticElasticNet(0.02).fit(torch.from_numpy(Xs), torch.from_numpy(yc))
    labels = clf.predict(torch.from_numpy(Xs))
    assert isinstance(labels, torch.Tensor)
    np.testing.assert_array_equal(labels.numpy(), LogisticElasticNet(0.02).fit(Xs, yc).predict(Xs))
    with pytest.raises(ValueError, match="X has 3 features, but Lasso is expecting 10"):
        model.predict(Xt[:, :3])


def test_cv_estimators_convert_once_and_match_functions(diabetes: tuple) -> None:
    """The CV estimators give the α of the functional form and refit at it."""
    X, y = diabetes
    model = ElasticNetCV(l1_ratio=[0.5, 1.0], n_alphas=15, cv=4).fit(X, y)
    assert model.l1_ratio_ in (0.5, 1.0) and model.alphas_.shape == (15,)
    refit = ElasticNet(model.alpha_, model.l1_ratio_).fit(X, y)
    np.testing.assert_allclose(model.coef_, refit.coef_, atol=1e-10)
    tensor_model = ElasticNetCV(l1_ratio=[0.5, 1.0], n_alphas=15, cv=4).fit(
        torch.from_numpy(X), torch.from_numpy(y)
    )
    assert tensor_model.alpha_ == pytest.approx(model.alpha_, rel=1e-12)
    assert isinstance(tensor_model.coef_, torch.Tensor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_parameter_computes_on_the_gpu(diabetes: tuple) -> None:
    X, y = diabetes
    cpu = Lasso(0.1).fit(X, y)
    gpu = Lasso(0.1, device="cuda").fit(X, y)
    assert isinstance(gpu.coef_, np.ndarray)  # NumPy in, NumPy out, whatever the device
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, atol=1e-9)
    on_gpu = Lasso(0.1).fit(torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda())
    assert on_gpu.coef_.is_cuda and on_gpu.predict(torch.from_numpy(X).cuda()).is_cuda


def test_n_threads_is_scoped_to_the_call(diabetes: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """`n_threads` sets torch's thread count while `fit` solves, then restores it."""
    import reglight.linear.models as models

    X, y = diabetes
    before = torch.get_num_threads()
    seen: list[int] = []
    solve = models._elastic_net

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return solve(*args, **kwargs)

    monkeypatch.setattr(models, "_elastic_net", spy)
    Lasso(alpha=0.1, n_threads=1).fit(X, y)
    Lasso(alpha=0.1).fit(X, y)
    assert seen == [1, before]
    assert torch.get_num_threads() == before
