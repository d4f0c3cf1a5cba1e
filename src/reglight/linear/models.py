"""Single-`α` elastic-net and lasso regression: a function and scikit-learn-like estimators."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from reglight._threads import torch_threads
from reglight._validation import check_nonnegative, check_positive, check_positive_int

from ._convergence import collect
from ._estimator import coef_tensor, fitted_dtype, predict_input, regression_inputs, to_host
from ._oracle import DesignOracle, GramOracle, HessianOracle
from ._tensor import as_matrix, as_vector, like_input, resolve_dtype
from .path import _check_l1_ratio, _check_precompute, solve_path

__all__ = ["ElasticNet", "Lasso", "elastic_net"]


def elastic_net(
    X: Any,
    y: Any,
    alpha: float,
    l1_ratio: float = 0.5,
    *,
    fit_intercept: bool = True,
    coef_init: Any = None,
    precompute: bool | str = "auto",
    tol: float = 1e-10,
    max_iter: int = 1000,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_threads: int | None = 1,
) -> tuple[Any, Any]:
    r"""Fit one elastic-net model exactly (scikit-learn's `ElasticNet` objective).

    $$
    \min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b \rVert_2^2 + \alpha\rho\lVert w\rVert_1
    + \frac{\alpha(1-\rho)}{2}\lVert w\rVert_2^2, \qquad \rho = \text{l1\_ratio}
    $$

    The intercept `b` is not penalized: with `fit_intercept` the columns of `X` and `y` are
    centred, the problem is solved without intercept and `b = ȳ - x̄ᵀw`.

    Args:
        X: Design matrix (n_samples, n_features), NumPy array or tensor (CPU or GPU).
        y: Targets (n_samples,).
        alpha: Regularization strength `α >= 0`.
        l1_ratio: Mixing `ρ` in (0, 1]; 1 is the lasso.
        fit_intercept: Fit an unpenalized intercept.
        coef_init: Warm start for the coefficients.
        precompute: `"auto"`, `True` or `False`: use the Gram matrix (see
            [`enet_path`][reglight.linear.enet_path]).
        tol: Relative tolerance on the optimality (KKT) conditions.
        max_iter: Maximum active-set iterations.
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Returns:
        `(coef, intercept)`: coefficients (n_features,) and the intercept (a float, or a 0-d
        tensor for tensor input).

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
        >>> y = 2.0 * X[:, 0] + 1.0
        >>> coef, intercept = elastic_net(X, y, alpha=0.01, l1_ratio=1.0)
        >>> np.round(coef, 3), round(float(intercept), 3)
        (array([1.992, 0.   ]), 1.012)
    """
    alpha = check_nonnegative("alpha", alpha)
    rho = _check_l1_ratio(l1_ratio)
    check_positive("tol", tol)
    check_positive_int("max_iter", max_iter)
    _check_precompute(precompute)
    dt = resolve_dtype(X, dtype)
    Xt = as_matrix("X", X, dt, device)
    yt = as_vector("y", y, Xt.shape[0], dt, Xt.device)
    w0 = None
    if coef_init is not None:
        w0 = as_vector("coef_init", coef_init, Xt.shape[1], dt, Xt.device)
    with torch_threads(n_threads), collect("elastic_net", tol=tol, max_iter=max_iter):
        coef, intercept, _ = _elastic_net(
            Xt, yt, alpha, rho, fit_intercept, w0, precompute, tol, max_iter
        )
    if isinstance(X, torch.Tensor):
        return coef, intercept
    return like_input(X, coef), float(intercept)


def _elastic_net(
    Xt: torch.Tensor,
    yt: torch.Tensor,
    alpha: float,
    rho: float,
    fit_intercept: bool,
    w0: torch.Tensor | None,
    precompute: bool | str,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One fit on validated tensors: `(coef (p,), intercept (0-d), n_iter)`."""
    n, p = Xt.shape
    if fit_intercept:
        x_mean = Xt.mean(0)
        y_mean = yt.mean()
        Xc, yc = Xt - x_mean, yt - y_mean
    else:
        x_mean = Xt.new_zeros(p)
        y_mean = yt.new_zeros(())
        Xc, yc = Xt, yt
    use_gram = n > p if precompute == "auto" else bool(precompute)
    oracle: HessianOracle = GramOracle.from_data(Xc, yc) if use_gram else DesignOracle(Xc, yc)
    alphas = torch.tensor([alpha], dtype=Xt.dtype, device=Xt.device)
    alpha_max = float(oracle.c.abs().max()) / rho
    coefs, n_iter = solve_path(
        oracle,
        alphas,
        rho,
        w0=w0,
        alpha_max=max(alpha_max, alpha),
        tol=tol,
        max_iter=max_iter,
        max_active=n if (rho == 1.0 and not use_gram) else None,
    )
    coef = coefs[:, 0]
    return coef, y_mean - x_mean @ coef, n_iter


class _LinearRegression(RegressorMixin, BaseEstimator):
    """Prediction and scoring of a fitted linear regressor (`coef_`, `intercept_`)."""

    coef_: Any
    intercept_: Any

    def _set_fit(self, X: Any, coef: torch.Tensor, intercept: torch.Tensor) -> None:
        """Store the fitted coefficients in the kind of the input `X` (tensor or NumPy)."""
        if isinstance(X, torch.Tensor):
            self.coef_, self.intercept_ = coef, intercept
        else:
            self.coef_, self.intercept_ = like_input(X, coef), float(intercept)

    def predict(self, X: Any) -> Any:
        """Predictions $Xw + b$.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            Predictions (n_samples,): a tensor on the device of `X` when `X` is a tensor, else a
            NumPy array.
        """
        check_is_fitted(self)
        Xt = predict_input(self, X, fitted_dtype(self.coef_))
        out = Xt @ coef_tensor(self.coef_, Xt) + coef_tensor(self.intercept_, Xt)
        return like_input(X, out)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        r"""Coefficient of determination $R^2$ of the predictions (scikit-learn's `r2_score`).

        Args:
            X: Design matrix (n_samples, n_features).
            y: True targets (n_samples,).
            sample_weight: Weights of the samples in the score.

        Returns:
            $1 - \sum_i (y_i - \hat y_i)^2 / \sum_i (y_i - \bar y)^2$.
        """
        return float(super().score(to_host(X), to_host(y), to_host(sample_weight)))

    @property
    def selected_(self) -> Any:
        """Indices of the nonzero coefficients (NumPy array or tensor, like `coef_`)."""
        check_is_fitted(self)
        if isinstance(self.coef_, torch.Tensor):
            return (self.coef_ != 0).nonzero().squeeze(1)
        return np.flatnonzero(self.coef_)


class ElasticNet(_LinearRegression):
    r"""Elastic-net linear regression, solved exactly (scikit-learn's `ElasticNet` objective).

    $$
    \min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b \rVert_2^2
    + \alpha\Big(\rho\lVert w\rVert_1 + \frac{1-\rho}{2}\lVert w\rVert_2^2\Big),
    \qquad \rho = \texttt{l1\_ratio}
    $$

    Zou & Hastie (2005), "Regularization and variable selection via the elastic net". A
    scikit-learn estimator (`clone`, `Pipeline`, `GridSearchCV` work) computed in torch, on the CPU
    or a GPU. Arguments are checked by `fit`.

    Fitted attributes: `coef_` (n_features,), `intercept_`, `n_iter_` (active-set iterations plus
    optimality checks), `n_features_in_` (and
    `feature_names_in_` for a data frame). With NumPy-like input they are NumPy arrays and a
    float, whatever `device` computed them; with tensor input they are tensors on the computation
    device, and `predict` answers in the kind of its own `X`.

    Args:
        alpha: Regularization strength $\alpha \ge 0$.
        l1_ratio: Mixing $\rho$ in (0, 1]; 1 is the lasso.
        fit_intercept: Fit an unpenalized intercept.
        precompute: `"auto"` (Gram matrix when n_samples > n_features), `True` or `False`.
        tol: Relative tolerance on the optimality (KKT) conditions.
        max_iter: Maximum active-set iterations.
        warm_start: Start the next `fit` from the current `coef_`.
        dtype: Computation dtype (a floating `torch.dtype`); default: float32 for float32
            input, float64 otherwise.
        device: Computation device (`"cpu"`, `"cuda"`, a `torch.device`); default: the input's
            device (the CPU for NumPy input).
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
        >>> model = ElasticNet(alpha=0.1, l1_ratio=0.5).fit(X, 2.0 * X[:, 0])
        >>> np.round(model.coef_, 3)
        array([1.885, 0.   ])
        >>> from sklearn.base import clone
        >>> clone(model)
        ElasticNet(alpha=0.1)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        l1_ratio: float = 0.5,
        *,
        fit_intercept: bool = True,
        precompute: bool | str = "auto",
        tol: float = 1e-10,
        max_iter: int = 1000,
        warm_start: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        n_threads: int | None = 1,
    ) -> None:
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.precompute = precompute
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.dtype = dtype
        self.device = device
        self.n_threads = n_threads

    def _rho(self) -> float:
        return _check_l1_ratio(self.l1_ratio)

    def fit(self, X: Any, y: Any) -> ElasticNet:
        """Fit the model.

        Args:
            X: Design matrix (n_samples, n_features): array-like or tensor.
            y: Targets (n_samples,).

        Returns:
            The fitted estimator.

        Raises:
            ValueError: For an invalid parameter or input.
        """
        alpha = check_nonnegative("alpha", self.alpha)
        rho = self._rho()
        tol = check_positive("tol", self.tol)
        max_iter = check_positive_int("max_iter", self.max_iter)
        _check_precompute(self.precompute)
        warm = self.warm_start and hasattr(self, "coef_")
        previous = self.coef_ if warm else None
        Xt, yt = regression_inputs(self, X, y, self.dtype, self.device)
        w0 = None
        if previous is not None and previous.shape[0] == Xt.shape[1]:
            w0 = coef_tensor(previous, Xt)
        name = type(self).__name__
        with torch_threads(self.n_threads), collect(name, tol=tol, max_iter=max_iter):
            coef, intercept, self.n_iter_ = _elastic_net(
                Xt, yt, alpha, rho, bool(self.fit_intercept), w0, self.precompute, tol, max_iter
            )
        self._set_fit(X, coef, intercept)
        return self


class Lasso(ElasticNet):
    r"""Lasso linear regression (Tibshirani, 1996): [`ElasticNet`][reglight.linear.ElasticNet] with `l1_ratio=1`.

    $$
    \min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b \rVert_2^2 + \alpha\lVert w\rVert_1
    $$

    Fitted attributes and input kinds as for [`ElasticNet`][reglight.linear.ElasticNet].

    Args:
        alpha: Regularization strength $\alpha \ge 0$.
        fit_intercept: Fit an unpenalized intercept.
        precompute: `"auto"`, `True` or `False` (use the Gram matrix).
        tol: Relative tolerance on the optimality (KKT) conditions.
        max_iter: Maximum active-set iterations.
        warm_start: Start the next `fit` from the current `coef_`.
        dtype: Computation dtype; default: float32 for float32 input, float64 otherwise.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
        >>> np.round(Lasso(alpha=0.1).fit(X, 2.0 * X[:, 0]).coef_, 3)
        array([1.92, 0.  ])
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        fit_intercept: bool = True,
        precompute: bool | str = "auto",
        tol: float = 1e-10,
        max_iter: int = 1000,
        warm_start: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        n_threads: int | None = 1,
    ) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.precompute = precompute
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.dtype = dtype
        self.device = device
        self.n_threads = n_threads

    def _rho(self) -> float:
        return 1.0
