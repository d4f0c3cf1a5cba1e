"""K-fold cross-validation of `α` for the elastic net and the penalized logistic model.

For every fold the model is fitted along one shared grid of `α` (computed on all the data, as
scikit-learn's `ElasticNetCV` does) on the training part, and its held-out error is recorded:
mean squared error for regression, mean log-loss (cross-entropy) for classification. Two rules
pick `α` from the mean curve `m(α)` over the folds and its standard error
`se(α) = sd_folds(α) / √K`:

* `"min"`: `α_min = argmin m(α)` (scikit-learn's choice; same folds give the same `α`);
* `"1se"`: the largest `α` with `m(α) <= m(α_min) + se(α_min)`, the sparsest model within
  one standard error of the best (Breiman et al. 1984; Hastie, Tibshirani & Friedman, *Elements of
  Statistical Learning*, §7.10).

The final model is refitted on all the data at the chosen `α`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reglight._threads import torch_threads
from reglight._validation import check_choice, check_in_range, check_positive, check_positive_int

from ._convergence import collect
from ._estimator import classification_inputs, regression_inputs
from ._tensor import as_grid, as_matrix, as_vector, resolve_dtype
from .logistic import (
    _encode,
    _intercept_only,
    _LinearClassifier,
    _logistic_alpha_max,
    _logistic_enet,
    _logistic_path,
    _problem,
)
from .models import _elastic_net, _LinearRegression
from .path import _alpha_max, _check_l1_ratio, _enet_path, _grid

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
    """K-fold split of `range(n_samples)`; without shuffling, scikit-learn's `KFold` folds.

    The first `n_samples % n_splits` folds have one sample more than the others.

    Args:
        n_samples: Number of samples.
        n_splits: Number of folds `K >= 2`.
        shuffle: Permute the samples before splitting.
        seed: Seed of the permutation.

    Returns:
        A list of `(train_indices, test_indices)` pairs.

    Examples:
        >>> [test.tolist() for _, test in kfold_indices(5, 2)]
        [[0, 1, 2], [3, 4]]
    """
    check_positive_int("n_splits", n_splits, minimum=2)
    if not isinstance(n_samples, int) or n_samples < n_splits:
        raise ValueError(
            f"`n_splits`={n_splits} folds need at least as many samples, got n_samples={n_samples}"
        )
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


def _folds(cv: int | Folds, n: int, y: np.ndarray | None = None) -> list[tuple[Any, Any]]:
    """Index pairs of `cv`: K contiguous folds for an int, stratified by `y` when it is given."""
    if isinstance(cv, int) and not isinstance(cv, bool):
        return kfold_indices(n, cv) if y is None else _stratified(y, cv)
    if hasattr(cv, "split"):  # a scikit-learn splitter (KFold, StratifiedKFold, ...)
        cv = cv.split(np.zeros((n, 1)), y)
    try:
        folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv]  # type: ignore[union-attr]
    except TypeError as err:
        raise TypeError(
            "`cv` must be an int, a scikit-learn splitter or an iterable of (train, test) "
            f"index pairs, got {cv!r}"
        ) from err
    if len(folds) < 2:
        raise ValueError(f"`cv` must give at least 2 folds, got {len(folds)}")
    return folds


def select_alpha(alphas: Any, mean: Any, se: Any, rule: str = "min") -> tuple[int, float]:
    """Pick `α` from a cross-validation curve by the minimum or the one-standard-error rule.

    Args:
        alphas: Decreasing grid (n_alphas,).
        mean: Mean held-out error per `α`.
        se: Standard error of that mean per `α`.
        rule: `"min"` or `"1se"`.

    Returns:
        `(index, alpha)` of the chosen grid point.

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
    """Outcome of a cross-validation over `α` (and `l1_ratio`).

    Attributes:
        alphas: Grid, (n_l1_ratios, n_alphas).
        l1_ratios: The `l1_ratio` values tried.
        errors: Held-out error per `l1_ratio`, `α` and fold, (n_l1_ratios, n_alphas, n_folds).
        mean: Mean over folds, (n_l1_ratios, n_alphas).
        se: Standard error of the mean (fold standard deviation / √K), same shape.
        l1_ratio: The chosen `l1_ratio` (smallest minimum error).
        alpha_min: `α` of the minimum mean error (for the chosen `l1_ratio`).
        alpha_1se: Largest `α` within one standard error of that minimum.
        alpha: The `α` of the requested rule.
        rule: `"min"` or `"1se"`.
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


def _ratios(l1_ratio: float | Sequence[float]) -> np.ndarray:
    values = [l1_ratio] if isinstance(l1_ratio, (int, float)) else list(l1_ratio)
    if not values:
        raise ValueError("`l1_ratio` must not be empty")
    return np.array([_check_l1_ratio(v) for v in values])


def _check_cv_settings(n_alphas: int, eps: float, rule: str, tol: float) -> None:
    check_positive_int("n_alphas", n_alphas)
    check_in_range("eps", eps, 0.0, 1.0, low_inclusive=False)
    check_choice("rule", rule, ("min", "1se"))
    check_positive("tol", tol)


def _fold_tensors(folds: list[tuple[Any, Any]], device: torch.device) -> list[tuple[Any, Any]]:
    return [
        (torch.as_tensor(tr, device=device), torch.as_tensor(te, device=device)) for tr, te in folds
    ]


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
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_threads: int | None = 1,
) -> CVResult:
    r"""Cross-validate `α` (and `l1_ratio`) of the elastic net with an intercept.

    The counterpart of scikit-learn's `ElasticNetCV`: the grid comes from all the data
    (centred), each training fold is centred on its own means, the held-out error is the mean
    squared error of $X_{\text{test}} w + b$. With the same folds the chosen `α_min` is the same.
    `X` and `y` are converted to tensors once; the folds are index tensors on the same device.

    Args:
        X: Design matrix (n_samples, n_features), NumPy array or tensor.
        y: Targets (n_samples,).
        l1_ratio: Mixing `ρ` in (0, 1], or several to choose from.
        alphas: Explicit grid; `None` for `n_alphas` values from `α_max` down.
        n_alphas: Size of the automatic grid.
        eps: `α_min / α_max` of the automatic grid.
        cv: Number of folds (contiguous, like `KFold`), a scikit-learn splitter, or an iterable
            of (train, test) indices.
        rule: `"min"` or `"1se"`: which `α` ends up in `CVResult.alpha`.
        tol: Solver tolerance (see [`enet_path`][reglight.linear.enet_path]).
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Returns:
        A [`CVResult`][reglight.linear.CVResult] (NumPy arrays).

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((60, 5)); y = X[:, 0] + 0.1 * rng.standard_normal(60)
        >>> res = enet_cv(X, y, l1_ratio=1.0, n_alphas=20, cv=3, rule="1se")
        >>> res.alpha_1se >= res.alpha_min
        True
    """
    ratios = _ratios(l1_ratio)
    _check_cv_settings(n_alphas, eps, rule, tol)
    Xt = as_matrix("X", X, resolve_dtype(X, dtype), device)
    yt = as_vector("y", y, Xt.shape[0], Xt.dtype, Xt.device)
    with torch_threads(n_threads), collect("enet_cv", tol=tol, max_iter=1000):
        return _enet_cv(Xt, yt, ratios, alphas, n_alphas, eps, cv, rule, tol)


def _enet_cv(
    Xt: torch.Tensor,
    yt: torch.Tensor,
    ratios: np.ndarray,
    alphas: Any,
    n_alphas: int,
    eps: float,
    cv: int | Folds,
    rule: str,
    tol: float,
) -> CVResult:
    """[`enet_cv`][reglight.linear.enet_cv] on validated tensors."""
    folds = _fold_tensors(_folds(cv, Xt.shape[0]), Xt.device)
    given = None if alphas is None else as_grid(alphas, Xt.dtype, Xt.device)
    grids = []
    errors = []
    for rho in ratios.tolist():
        if given is None:
            grid = _grid(_alpha_max(Xt, yt, rho, True), n_alphas, eps, Xt.dtype, Xt.device)
        else:
            grid = given
        fold_err = []
        for train, test in folds:
            Xtr, ytr = Xt[train], yt[train]
            x_mean, y_mean = Xtr.mean(0), ytr.mean()
            _, coefs = _enet_path(Xtr - x_mean, ytr - y_mean, rho, grid, tol=tol)
            pred = Xt[test] @ coefs + (y_mean - x_mean @ coefs)
            fold_err.append(((pred - yt[test].unsqueeze(1)) ** 2).mean(0))
        grids.append(grid)
        errors.append(torch.stack(fold_err, 1))
    return _summarize(_host(torch.stack(grids)), ratios, _host(torch.stack(errors)), rule)


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


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
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_threads: int | None = 1,
) -> CVResult:
    """Cross-validate `α` of the penalized logistic model by held-out mean log-loss.

    Args:
        X: Design matrix (n_samples, n_features), NumPy array or tensor.
        y: Class labels (n_samples,).
        l1_ratio: Mixing `ρ` in (0, 1], or several to choose from.
        alphas: Explicit grid; `None` for `n_alphas` values from `α_max` down.
        n_alphas: Size of the automatic grid.
        eps: `α_min / α_max` of the automatic grid.
        cv: Number of folds, a scikit-learn splitter or an iterable of (train, test) indices.
            Integer folds are stratified by class (each fold holds every class in proportion),
            as scikit-learn does for classifiers.
        rule: `"min"` or `"1se"`.
        tol: Solver tolerance (gradient units).
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Returns:
        A [`CVResult`][reglight.linear.CVResult] whose errors are log-losses.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((80, 4)); y = (X[:, 0] + 0.5 * rng.standard_normal(80) > 0)
        >>> logistic_cv(X, y.astype(int), n_alphas=8, cv=4).alpha > 0
        True
    """
    ratios = _ratios(l1_ratio)
    _check_cv_settings(n_alphas, eps, rule, tol)
    Xt = as_matrix("X", X, resolve_dtype(X, dtype), device)
    classes, codes = _encode(y, Xt.shape[0])
    with torch_threads(n_threads), collect("logistic_cv", tol=tol, max_iter=100):
        return _logistic_cv(
            Xt, codes, classes.shape[0], ratios, alphas, n_alphas, eps, cv, rule, tol
        )


def _logistic_cv(
    Xt: torch.Tensor,
    codes: np.ndarray,
    n_classes: int,
    ratios: np.ndarray,
    alphas: Any,
    n_alphas: int,
    eps: float,
    cv: int | Folds,
    rule: str,
    tol: float,
) -> CVResult:
    """[`logistic_cv`][reglight.linear.logistic_cv] on a validated tensor and class codes."""
    folds = _folds(cv, Xt.shape[0], codes)
    codes_t = torch.as_tensor(codes, device=Xt.device)
    full = _problem(Xt, codes_t, n_classes)
    b0 = _intercept_only(full, True)
    given = None if alphas is None else as_grid(alphas, Xt.dtype, Xt.device)
    grids = []
    errors = []
    for rho in ratios.tolist():
        if given is None:
            a_max = _logistic_alpha_max(full, b0, rho)
            grid = _grid(a_max, n_alphas, eps, Xt.dtype, Xt.device)
        else:
            grid = given
        fold_err = []
        for train, test in folds:
            if np.unique(codes[train]).shape[0] < n_classes:
                raise ValueError(f"a training fold of `cv`={cv!r} misses a class; use fewer folds")
            tr, te = (
                torch.as_tensor(train, device=Xt.device),
                torch.as_tensor(test, device=Xt.device),
            )
            prob = _problem(Xt[tr], codes_t[tr], n_classes)
            _, coefs, intercepts = _logistic_path(prob, rho, grid, n_alphas, eps, True, tol, 100)
            # scores (n_test, n_alphas, K); the binary model scores class 1 against a zero
            eta = torch.einsum("ip,kpa->iak", Xt[te], coefs) + intercepts.T.unsqueeze(0)
            if n_classes == 2:
                eta = torch.cat([torch.zeros_like(eta), eta], 2)
            logp = torch.log_softmax(eta, 2)
            picked = logp.gather(2, codes_t[te].view(-1, 1, 1).expand(-1, eta.shape[1], 1))
            fold_err.append(-picked[..., 0].mean(0))
        grids.append(grid)
        errors.append(torch.stack(fold_err, 1))
    return _summarize(_host(torch.stack(grids)), ratios, _host(torch.stack(errors)), rule)


def _stratified(codes: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K folds without shuffling: each class is dealt round-robin over the folds."""
    check_positive_int("cv", n_splits, minimum=2)
    fold_of = np.empty(codes.shape[0], dtype=np.int64)
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        fold_of[idx] = np.arange(idx.shape[0]) % n_splits
    all_idx = np.arange(codes.shape[0])
    return [(all_idx[fold_of != k], all_idx[fold_of == k]) for k in range(n_splits)]


class _CrossValidated:
    """What the CV estimators share: the checks of their settings and the cross-validation step."""

    l1_ratio: float | Sequence[float]
    alphas: Any
    n_alphas: int
    eps: float
    cv: int | Folds
    rule: str
    tol: float

    def _ratios(self) -> np.ndarray:
        return _ratios(self.l1_ratio)

    def _record(self, res: CVResult) -> None:
        self.cv_ = res
        self.alpha_ = res.alpha
        self.l1_ratio_ = res.l1_ratio
        self.alpha_min_ = res.alpha_min
        self.alpha_1se_ = res.alpha_1se
        best = int(np.flatnonzero(res.l1_ratios == res.l1_ratio)[0])
        self.alphas_ = res.alphas[best]


class ElasticNetCV(_CrossValidated, _LinearRegression):
    r"""Elastic net with `α` (and `l1_ratio`) chosen by K-fold cross-validation.

    For each `α` of the grid and each `l1_ratio` it minimizes, on every training fold,

    $$
    \min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b \rVert_2^2
    + \alpha\Big(\rho\lVert w\rVert_1 + \frac{1-\rho}{2}\lVert w\rVert_2^2\Big),
    \qquad \rho = \texttt{l1\_ratio},
    $$

    records the held-out mean squared error, picks `α` by `rule` (see
    [`enet_cv`][reglight.linear.enet_cv]) and refits on all the data. A scikit-learn regressor;
    `X` and `y` are converted to tensors once per `fit`.

    Fitted attributes: `alpha_`, `l1_ratio_`, `alpha_min_`, `alpha_1se_`, `alphas_` (grid of the
    chosen `l1_ratio`), `mse_path_` (n_alphas, n_folds), `cv_` (the
    [`CVResult`][reglight.linear.CVResult]), `coef_`, `intercept_`, `n_iter_` (of the refit),
    `n_features_in_`. The CV
    summaries are NumPy arrays; `coef_`/`intercept_` follow the kind of the input, as in
    [`ElasticNet`][reglight.linear.ElasticNet].

    Args:
        l1_ratio: Mixing $\rho$ in (0, 1], or several to choose from.
        alphas: Explicit grid; `None` for `n_alphas` values from `α_max` down.
        n_alphas: Size of the automatic grid.
        eps: `α_min / α_max` of the automatic grid.
        cv: Number of folds, a scikit-learn splitter or an iterable of (train, test) indices.
        rule: `"min"` (scikit-learn's choice) or `"1se"`.
        tol: Solver tolerance.
        dtype: Computation dtype; default: float32 for float32 input, float64 otherwise.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

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
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        n_threads: int | None = 1,
    ) -> None:
        self.l1_ratio = l1_ratio
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.cv = cv
        self.rule = rule
        self.tol = tol
        self.dtype = dtype
        self.device = device
        self.n_threads = n_threads

    def fit(self, X: Any, y: Any) -> ElasticNetCV:
        """Cross-validate, then refit on all the data at the chosen `α` and `l1_ratio`.

        Args:
            X: Design matrix (n_samples, n_features): array-like or tensor.
            y: Targets (n_samples,).

        Returns:
            The fitted estimator.

        Raises:
            ValueError: For an invalid parameter or input.
        """
        ratios = self._ratios()
        _check_cv_settings(self.n_alphas, self.eps, self.rule, self.tol)
        Xt, yt = regression_inputs(self, X, y, self.dtype, self.device)
        name = type(self).__name__
        with torch_threads(self.n_threads), collect(name, tol=self.tol, max_iter=1000):
            res = _enet_cv(
                Xt, yt, ratios, self.alphas, self.n_alphas, self.eps, self.cv, self.rule, self.tol
            )
            self._record(res)
            self.mse_path_ = res.errors[int(np.flatnonzero(res.l1_ratios == res.l1_ratio)[0])]
            coef, intercept, self.n_iter_ = _elastic_net(
                Xt, yt, self.alpha_, self.l1_ratio_, True, None, "auto", self.tol, 1000
            )
        self._set_fit(X, coef, intercept)
        return self


class LassoCV(ElasticNetCV):
    r"""Lasso with `α` chosen by K-fold cross-validation ([`ElasticNetCV`][reglight.linear.ElasticNetCV] with `l1_ratio=1`).

    $$
    \min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b \rVert_2^2 + \alpha\lVert w\rVert_1
    $$

    Fitted attributes as for [`ElasticNetCV`][reglight.linear.ElasticNetCV].

    Args:
        alphas: Explicit grid; `None` for `n_alphas` values from `α_max` down.
        n_alphas: Size of the automatic grid.
        eps: `α_min / α_max` of the automatic grid.
        cv: Number of folds, a scikit-learn splitter or an iterable of (train, test) indices.
        rule: `"min"` (scikit-learn's choice) or `"1se"`.
        tol: Solver tolerance.
        dtype: Computation dtype; default: float32 for float32 input, float64 otherwise.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

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
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        n_threads: int | None = 1,
    ) -> None:
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.cv = cv
        self.rule = rule
        self.tol = tol
        self.dtype = dtype
        self.device = device
        self.n_threads = n_threads

    def _ratios(self) -> np.ndarray:
        return np.array([1.0])


class LogisticElasticNetCV(_CrossValidated, _LinearClassifier):
    r"""Penalized logistic regression with `α` chosen by K-fold cross-validated log-loss.

    For each `α` of the grid it fits, on every training fold, the model of
    [`LogisticElasticNet`][reglight.linear.LogisticElasticNet],

    $$
    \min_{W, b}\; \frac{1}{n}\sum_{i=1}^n \ell(y_i, x_i^\top W + b)
    + \alpha\Big(\rho\lVert W\rVert_1 + \frac{1-\rho}{2}\lVert W\rVert_F^2\Big),
    $$

    records the held-out mean log-loss, picks `α` by `rule` (see
    [`logistic_cv`][reglight.linear.logistic_cv]) and refits on all the data. A scikit-learn
    classifier; `X` is converted to a tensor once per `fit`.

    Fitted attributes: `alpha_`, `l1_ratio_`, `alpha_min_`, `alpha_1se_`, `alphas_`, `cv_`,
    `classes_`, `coef_`, `intercept_`, `n_iter_` (of the refit), `n_features_in_`.

    Args:
        l1_ratio: Mixing $\rho$ in (0, 1], or several to choose from.
        alphas: Explicit grid; `None` for `n_alphas` values from `α_max` down.
        n_alphas: Size of the automatic grid.
        eps: `α_min / α_max` of the automatic grid.
        cv: Number of (stratified) folds, a scikit-learn splitter or an iterable of (train, test)
            indices.
        rule: `"min"` or `"1se"`.
        tol: Solver tolerance.
        dtype: Computation dtype; default: float32 for float32 input, float64 otherwise.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

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
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        n_threads: int | None = 1,
    ) -> None:
        self.l1_ratio = l1_ratio
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.cv = cv
        self.rule = rule
        self.tol = tol
        self.dtype = dtype
        self.device = device
        self.n_threads = n_threads

    def fit(self, X: Any, y: Any) -> LogisticElasticNetCV:
        """Cross-validate, then refit on all the data at the chosen `α` and `l1_ratio`.

        Args:
            X: Design matrix (n_samples, n_features): array-like or tensor.
            y: Class labels (n_samples,).

        Returns:
            The fitted estimator.

        Raises:
            ValueError: For an invalid parameter or input.
        """
        ratios = self._ratios()
        _check_cv_settings(self.n_alphas, self.eps, self.rule, self.tol)
        Xt, classes, codes = classification_inputs(self, X, y, self.dtype, self.device)
        name = type(self).__name__
        with torch_threads(self.n_threads), collect(name, tol=self.tol, max_iter=100):
            res = _logistic_cv(
                Xt,
                codes,
                classes.shape[0],
                ratios,
                self.alphas,
                self.n_alphas,
                self.eps,
                self.cv,
                self.rule,
                self.tol,
            )
            self._record(res)
            prob = _problem(Xt, torch.as_tensor(codes, device=Xt.device), classes.shape[0])
            W, b, self.n_iter_ = _logistic_enet(
                prob, self.alpha_, self.l1_ratio_, True, self.tol, 100
            )
        self._set_fit(X, classes, W, b)
        return self
