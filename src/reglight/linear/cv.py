"""K-fold cross-validation of ``α`` for the elastic net and the penalized logistic model.

For every fold the model is fitted along one shared grid of ``α`` (computed on all the data, as
scikit-learn's ``ElasticNetCV`` does) on the training part, and its held-out error is recorded:
mean squared error for regression, mean log-loss (cross-entropy) for classification. Two rules
pick ``α`` from the mean curve ``m(α)`` over the folds and its standard error
``se(α) = sd_folds(α) / √K``:

* ``"min"``: ``α_min = argmin m(α)`` (scikit-learn's choice; same folds give the same ``α``);
* ``"1se"``: the largest ``α`` with ``m(α) <= m(α_min) + se(α_min)``, the sparsest model within
  one standard error of the best (Breiman et al. 1984; Hastie, Tibshirani & Friedman, *Elements of
  Statistical Learning*, §7.10).

The final model is refitted on all the data at the chosen ``α``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reglight._validation import check_choice, check_in_range, check_positive_int

from .logistic import LogisticElasticNet, logistic_alpha_max, logistic_path
from .models import ElasticNet
from .path import _check_l1_ratio, alpha_grid, enet_path

__all__ = [
    "CVResult",
    "ElasticNetCV",
    "LassoCV",
    "LogisticElasticNetCV",
    "enet_cv",
    "kfold_indices",
    "logistic_cv",
    "select_alpha",
]

Folds = Iterable[tuple[Any, Any]]


def kfold_indices(
    n_samples: int, n_splits: int = 5, *, shuffle: bool = False, seed: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold split of ``range(n_samples)``; without shuffling, scikit-learn's ``KFold`` folds.

    The first ``n_samples % n_splits`` folds have one sample more than the others.

    Args:
        n_samples: Number of samples.
        n_splits: Number of folds ``K >= 2``.
        shuffle: Permute the samples before splitting.
        seed: Seed of the permutation.

    Returns:
        A list of ``(train_indices, test_indices)`` pairs.

    Examples:
        >>> [test.tolist() for _, test in kfold_indices(5, 2)]
        [[0, 1, 2], [3, 4]]
    """
    check_positive_int("n_splits", n_splits, minimum=2)
    check_positive_int("n_samples", n_samples, minimum=n_splits)
    order = np.arange(n_samples)
    if shuffle:
        order = np.random.default_rng(seed).permutation(n_samples)
    sizes = np.full(n_splits, n_samples // n_splits)
    sizes[: n_samples % n_splits] += 1
    folds = []
    start = 0
    for size in sizes:
        test = order[start : start + size]
        train = np.concatenate([order[:start], order[start + size :]])
        folds.append((train, test))
        start += size
    return folds


def _folds(cv: int | Folds, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(cv, int) and not isinstance(cv, bool):
        return kfold_indices(n, cv)
    try:
        folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv]  # type: ignore[union-attr]
    except TypeError as err:
        raise TypeError(
            f"`cv` must be an int or an iterable of (train, test) index pairs, got {cv!r}"
        ) from err
    if len(folds) < 2:
        raise ValueError(f"`cv` must give at least 2 folds, got {len(folds)}")
    return folds


def select_alpha(alphas: Any, mean: Any, se: Any, rule: str = "min") -> tuple[int, float]:
    """Pick ``α`` from a cross-validation curve by the minimum or the one-standard-error rule.

    Args:
        alphas: Decreasing grid (n_alphas,).
        mean: Mean held-out error per ``α``.
        se: Standard error of that mean per ``α``.
        rule: ``"min"`` or ``"1se"``.

    Returns:
        ``(index, alpha)`` of the chosen grid point.

    Examples:
        >>> select_alpha([1.0, 0.5, 0.1], [3.0, 2.05, 2.0], [0.1, 0.1, 0.1], rule="1se")
        (1, 0.5)
    """
    check_choice("rule", rule, ("min", "1se"))
    a = np.asarray(alphas, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    i_min = int(np.argmin(m))
    if rule == "min":
        return i_min, float(a[i_min])
    ok = np.flatnonzero(m <= m[i_min] + s[i_min])
    i = int(ok[np.argmax(a[ok])])
    return i, float(a[i])


@dataclass
class CVResult:
    """Outcome of a cross-validation over ``α`` (and ``l1_ratio``).

    Attributes:
        alphas: Grid, (n_l1_ratios, n_alphas).
        l1_ratios: The ``l1_ratio`` values tried.
        errors: Held-out error per ``l1_ratio``, ``α`` and fold, (n_l1_ratios, n_alphas, n_folds).
        mean: Mean over folds, (n_l1_ratios, n_alphas).
        se: Standard error of the mean (fold standard deviation / √K), same shape.
        l1_ratio: The chosen ``l1_ratio`` (smallest minimum error).
        alpha_min: ``α`` of the minimum mean error (for the chosen ``l1_ratio``).
        alpha_1se: Largest ``α`` within one standard error of that minimum.
        alpha: The ``α`` of the requested rule.
        rule: ``"min"`` or ``"1se"``.
    """

    alphas: np.ndarray
    l1_ratios: np.ndarray
    errors: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    l1_ratio: float
    alpha_min: float
    alpha_1se: float
    alpha: float
    rule: str


def _summarize(grids: np.ndarray, l1_ratios: np.ndarray, errors: np.ndarray, rule: str) -> CVResult:
    k = errors.shape[2]
    mean = errors.mean(2)
    se = errors.std(2, ddof=1) / np.sqrt(k)
    best = int(np.argmin(mean.min(1)))
    _, a_min = select_alpha(grids[best], mean[best], se[best], "min")
    _, a_1se = select_alpha(grids[best], mean[best], se[best], "1se")
    return CVResult(
        alphas=grids,
        l1_ratios=l1_ratios,
        errors=errors,
        mean=mean,
        se=se,
        l1_ratio=float(l1_ratios[best]),
        alpha_min=a_min,
        alpha_1se=a_1se,
        alpha=a_min if rule == "min" else a_1se,
        rule=rule,
    )


def _as_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _ratios(l1_ratio: float | Sequence[float]) -> np.ndarray:
    values = [l1_ratio] if isinstance(l1_ratio, (int, float)) else list(l1_ratio)
    if not values:
        raise ValueError("`l1_ratio` must not be empty")
    return np.array([_check_l1_ratio(v) for v in values])


def enet_cv(
    X: Any,
    y: Any,
    *,
    l1_ratio: float | Sequence[float] = 0.5,
    alphas: Any = None,
    n_alphas: int = 100,
    eps: float = 1e-3,
    cv: int | Folds = 5,
    rule: str = "min",
    tol: float = 1e-10,
) -> CVResult:
    """Cross-validate ``α`` (and ``l1_ratio``) of the elastic net with an intercept.

    The counterpart of scikit-learn's ``ElasticNetCV``: the grid comes from all the data
    (centred), each training fold is centred on its own means, the held-out error is the mean
    squared error of ``X_test w + b``. With the same folds the chosen ``α_min`` is the same.

    Args:
        X: Design matrix (n_samples, n_features).
        y: Targets (n_samples,).
        l1_ratio: Mixing ``ρ`` in (0, 1], or several to choose from.
        alphas: Explicit grid; ``None`` for ``n_alphas`` values from ``α_max`` down.
        n_alphas: Size of the automatic grid.
        eps: ``α_min / α_max`` of the automatic grid.
        cv: Number of folds (contiguous, like ``KFold``) or an iterable of (train, test) indices.
        rule: ``"min"`` or ``"1se"``: which ``α`` ends up in ``CVResult.alpha``.
        tol: Solver tolerance (see [`enet_path`][reglight.linear.enet_path]).

    Returns:
        A [`CVResult`][reglight.linear.CVResult].

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((60, 5)); y = X[:, 0] + 0.1 * rng.standard_normal(60)
        >>> res = enet_cv(X, y, l1_ratio=1.0, n_alphas=20, cv=3, rule="1se")
        >>> res.alpha_1se >= res.alpha_min
        True
    """
    check_choice("rule", rule, ("min", "1se"))
    Xn = _as_numpy(X).astype(np.float64, copy=False)
    yn = _as_numpy(y).astype(np.float64, copy=False).ravel()
    if Xn.ndim != 2 or yn.shape[0] != Xn.shape[0]:
        raise ValueError(f"`X` (n, p) and `y` (n,) must agree, got {Xn.shape} and {yn.shape}")
    folds = _folds(cv, Xn.shape[0])
    ratios = _ratios(l1_ratio)
    grids = []
    errors = []
    for rho in ratios:
        if alphas is None:
            grid = alpha_grid(Xn, yn, l1_ratio=rho, n_alphas=n_alphas, eps=eps, fit_intercept=True)
        else:
            grid = np.sort(np.asarray(alphas, dtype=np.float64).ravel())[::-1]
        fold_err = []
        for train, test in folds:
            Xtr, ytr = Xn[train], yn[train]
            x_mean, y_mean = Xtr.mean(0), ytr.mean()
            _, coefs = enet_path(Xtr - x_mean, ytr - y_mean, l1_ratio=rho, alphas=grid, tol=tol)
            intercepts = y_mean - x_mean @ coefs
            pred = Xn[test] @ coefs + intercepts
            fold_err.append(((pred - yn[test, None]) ** 2).mean(0))
        grids.append(grid)
        errors.append(np.stack(fold_err, 1))
    return _summarize(np.stack(grids), ratios, np.stack(errors), rule)


def logistic_cv(
    X: Any,
    y: Any,
    *,
    l1_ratio: float | Sequence[float] = 1.0,
    alphas: Any = None,
    n_alphas: int = 30,
    eps: float = 1e-2,
    cv: int | Folds = 5,
    rule: str = "min",
    tol: float = 1e-8,
) -> CVResult:
    """Cross-validate ``α`` of the penalized logistic model by held-out mean log-loss.

    Args:
        X: Design matrix (n_samples, n_features).
        y: Class labels (n_samples,).
        l1_ratio: Mixing ``ρ`` in (0, 1], or several to choose from.
        alphas: Explicit grid; ``None`` for ``n_alphas`` values from ``α_max`` down.
        n_alphas: Size of the automatic grid.
        eps: ``α_min / α_max`` of the automatic grid.
        cv: Number of folds or an iterable of (train, test) indices. Integer folds are stratified
            by class (each fold holds every class in proportion), as scikit-learn does for
            classifiers.
        rule: ``"min"`` or ``"1se"``.
        tol: Solver tolerance (gradient units).

    Returns:
        A [`CVResult`][reglight.linear.CVResult] whose errors are log-losses.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((80, 4)); y = (X[:, 0] + 0.5 * rng.standard_normal(80) > 0)
        >>> logistic_cv(X, y.astype(int), n_alphas=8, cv=4).alpha > 0
        True
    """
    check_choice("rule", rule, ("min", "1se"))
    Xn = _as_numpy(X).astype(np.float64, copy=False)
    yn = _as_numpy(y).ravel()
    classes, codes = np.unique(yn, return_inverse=True)
    if isinstance(cv, int) and not isinstance(cv, bool):
        folds = _stratified(codes, cv)
    else:
        folds = _folds(cv, Xn.shape[0])
    ratios = _ratios(l1_ratio)
    grids = []
    errors = []
    for rho in ratios:
        if alphas is None:
            a_max = logistic_alpha_max(Xn, codes, rho)
            grid = np.geomspace(a_max, a_max * eps, n_alphas)
        else:
            grid = np.sort(np.asarray(alphas, dtype=np.float64).ravel())[::-1]
        fold_err = []
        for train, test in folds:
            _, coefs, intercepts = logistic_path(
                Xn[train], codes[train], l1_ratio=rho, alphas=grid, tol=tol
            )
            if coefs.ndim == 2:  # binary: (p, n_alphas)
                eta = Xn[test] @ coefs + intercepts
                logp1 = -np.logaddexp(0.0, -eta)
                logp0 = -np.logaddexp(0.0, eta)
                yt = codes[test, None]
                fold_err.append(-(yt * logp1 + (1 - yt) * logp0).mean(0))
            else:  # (K, p, n_alphas)
                eta = np.einsum("ip,kpa->iak", Xn[test], coefs) + intercepts.T[None]
                logp = eta - np.logaddexp.reduce(eta, axis=2, keepdims=True)
                picked = np.take_along_axis(logp, codes[test][:, None, None], axis=2)[..., 0]
                fold_err.append(-picked.mean(0))
        grids.append(grid)
        errors.append(np.stack(fold_err, 1))
    del classes
    return _summarize(np.stack(grids), ratios, np.stack(errors), rule)


def _stratified(codes: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K folds without shuffling: each class is dealt round-robin over the folds."""
    check_positive_int("cv", n_splits, minimum=2)
    fold_of = np.empty(codes.shape[0], dtype=np.int64)
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        fold_of[idx] = np.arange(idx.shape[0]) % n_splits
    all_idx = np.arange(codes.shape[0])
    return [(all_idx[fold_of != k], all_idx[fold_of == k]) for k in range(n_splits)]


class _CrossValidatedModel:
    """What the CV estimators share: their validated settings and the cross-validation step."""

    def _set_params(
        self,
        l1_ratio: float | Sequence[float],
        alphas: Any,
        n_alphas: int,
        eps: float,
        cv: int | Folds,
        rule: str,
        tol: float,
    ) -> None:
        _ratios(l1_ratio)
        self.l1_ratio = l1_ratio
        self.alphas = alphas
        self.n_alphas = check_positive_int("n_alphas", n_alphas)
        self.eps = check_in_range("eps", eps, 0.0, 1.0, low_inclusive=False)
        self.cv = cv
        self.rule = check_choice("rule", rule, ("min", "1se"))
        self.tol = tol

    def _cross_validate(self, cv_function: Callable[..., CVResult], X: Any, y: Any) -> CVResult:
        res = cv_function(
            X,
            y,
            l1_ratio=self.l1_ratio,
            alphas=self.alphas,
            n_alphas=self.n_alphas,
            eps=self.eps,
            cv=self.cv,
            rule=self.rule,
            tol=self.tol,
        )
        self.cv_ = res
        self.alpha_ = res.alpha
        self.l1_ratio_ = res.l1_ratio
        self.alpha_min_ = res.alpha_min
        self.alpha_1se_ = res.alpha_1se
        return res


class ElasticNetCV(_CrossValidatedModel):
    """Elastic net with ``α`` (and ``l1_ratio``) chosen by K-fold cross-validation.

    See [`enet_cv`][reglight.linear.enet_cv] for the procedure; the model is refitted on all the
    data at the ``α`` of ``rule``. Fitted attributes: ``alpha_``, ``l1_ratio_``, ``alpha_min_``,
    ``alpha_1se_``, ``alphas_``, ``mse_path_`` (n_alphas, n_folds) of the chosen ``l1_ratio``,
    ``cv_`` (the [`CVResult`][reglight.linear.CVResult]), ``coef_``, ``intercept_``.

    Args:
        l1_ratio: Mixing ``ρ`` in (0, 1], or several to choose from.
        alphas: Explicit grid; ``None`` for ``n_alphas`` values from ``α_max`` down.
        n_alphas: Size of the automatic grid.
        eps: ``α_min / α_max`` of the automatic grid.
        cv: Number of folds or an iterable of (train, test) indices.
        rule: ``"min"`` (scikit-learn's choice) or ``"1se"``.
        tol: Solver tolerance.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((60, 5)); y = X[:, 0] + 0.1 * rng.standard_normal(60)
        >>> model = ElasticNetCV(l1_ratio=0.9, n_alphas=20, cv=3).fit(X, y)
        >>> int(np.argmax(np.abs(model.coef_)))
        0
    """

    def __init__(
        self,
        l1_ratio: float | Sequence[float] = 0.5,
        *,
        alphas: Any = None,
        n_alphas: int = 100,
        eps: float = 1e-3,
        cv: int | Folds = 5,
        rule: str = "min",
        tol: float = 1e-10,
    ) -> None:
        self._set_params(l1_ratio, alphas, n_alphas, eps, cv, rule, tol)

    def fit(self, X: Any, y: Any) -> ElasticNetCV:
        """Cross-validate, then refit on all the data.

        Args:
            X: Design matrix (n_samples, n_features).
            y: Targets (n_samples,).

        Returns:
            The fitted estimator.
        """
        res = self._cross_validate(enet_cv, X, y)
        best = int(np.flatnonzero(res.l1_ratios == res.l1_ratio)[0])
        self.alphas_ = res.alphas[best]
        self.mse_path_ = res.errors[best]
        model = ElasticNet(self.alpha_, self.l1_ratio_, tol=self.tol).fit(X, y)
        self.coef_, self.intercept_ = model.coef_, model.intercept_
        self._model = model
        return self

    def predict(self, X: Any) -> Any:
        """Predictions of the refitted model.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            Predictions (n_samples,).
        """
        return self._model.predict(X)


class LassoCV(ElasticNetCV):
    """Lasso with ``α`` chosen by K-fold cross-validation ([`ElasticNetCV`][reglight.linear.ElasticNetCV], ``l1_ratio=1``).

    Args:
        alphas: Explicit grid; ``None`` for ``n_alphas`` values from ``α_max`` down.
        n_alphas: Size of the automatic grid.
        eps: ``α_min / α_max`` of the automatic grid.
        cv: Number of folds or an iterable of (train, test) indices.
        rule: ``"min"`` (scikit-learn's choice) or ``"1se"``.
        tol: Solver tolerance.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((60, 5)); y = X[:, 0] + 0.1 * rng.standard_normal(60)
        >>> LassoCV(n_alphas=20, cv=3, rule="1se").fit(X, y).alpha_ > 0
        True
    """

    def __init__(
        self,
        *,
        alphas: Any = None,
        n_alphas: int = 100,
        eps: float = 1e-3,
        cv: int | Folds = 5,
        rule: str = "min",
        tol: float = 1e-10,
    ) -> None:
        super().__init__(1.0, alphas=alphas, n_alphas=n_alphas, eps=eps, cv=cv, rule=rule, tol=tol)


class LogisticElasticNetCV(_CrossValidatedModel):
    """Penalized logistic regression with ``α`` chosen by K-fold cross-validated log-loss.

    See [`logistic_cv`][reglight.linear.logistic_cv]; refitted on all the data at the chosen
    ``α``. Fitted attributes: ``alpha_``, ``l1_ratio_``, ``alpha_min_``, ``alpha_1se_``, ``cv_``,
    ``classes_``, ``coef_``, ``intercept_``.

    Args:
        l1_ratio: Mixing ``ρ`` in (0, 1], or several to choose from.
        alphas: Explicit grid; ``None`` for ``n_alphas`` values from ``α_max`` down.
        n_alphas: Size of the automatic grid.
        eps: ``α_min / α_max`` of the automatic grid.
        cv: Number of (stratified) folds or an iterable of (train, test) indices.
        rule: ``"min"`` or ``"1se"``.
        tol: Solver tolerance.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((80, 4)); y = (X[:, 0] > 0).astype(int)
        >>> LogisticElasticNetCV(n_alphas=8, cv=4).fit(X, y).coef_.shape
        (1, 4)
    """

    def __init__(
        self,
        l1_ratio: float | Sequence[float] = 1.0,
        *,
        alphas: Any = None,
        n_alphas: int = 30,
        eps: float = 1e-2,
        cv: int | Folds = 5,
        rule: str = "min",
        tol: float = 1e-8,
    ) -> None:
        self._set_params(l1_ratio, alphas, n_alphas, eps, cv, rule, tol)

    def fit(self, X: Any, y: Any) -> LogisticElasticNetCV:
        """Cross-validate, then refit on all the data.

        Args:
            X: Design matrix (n_samples, n_features).
            y: Class labels (n_samples,).

        Returns:
            The fitted estimator.
        """
        self._cross_validate(logistic_cv, X, y)
        model = LogisticElasticNet(self.alpha_, self.l1_ratio_, tol=self.tol).fit(X, y)
        self.classes_, self.coef_, self.intercept_ = model.classes_, model.coef_, model.intercept_
        self._model = model
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Labels predicted by the refitted model.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            Labels (n_samples,).
        """
        return self._model.predict(X)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities of the refitted model.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            Probabilities (n_samples, n_classes).
        """
        return self._model.predict_proba(X)
