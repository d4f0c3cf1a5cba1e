"""Single-``α`` elastic-net and lasso regression: a function and scikit-learn-like estimators."""

from __future__ import annotations

from typing import Any

import torch

from reglight._validation import check_nonnegative, check_positive, check_positive_int

from ._oracle import DesignOracle, GramOracle, HessianOracle
from ._tensor import as_matrix, as_vector, like_input, resolve_dtype, single_thread
from .path import _check_l1_ratio, solve_path

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
) -> tuple[Any, Any]:
    r"""Fit one elastic-net model exactly (scikit-learn's ``ElasticNet`` objective).

    $$
    \min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b \rVert_2^2 + \alpha\rho\lVert w\rVert_1
    + \frac{\alpha(1-\rho)}{2}\lVert w\rVert_2^2, \qquad \rho = \text{l1\_ratio}
    $$

    The intercept ``b`` is not penalized: with ``fit_intercept`` the columns of ``X`` and ``y`` are
    centred, the problem is solved without intercept and ``b = ȳ - x̄ᵀw``.

    Args:
        X: Design matrix (n_samples, n_features), NumPy array or tensor (CPU or GPU).
        y: Targets (n_samples,).
        alpha: Regularization strength ``α >= 0``.
        l1_ratio: Mixing ``ρ`` in (0, 1]; 1 is the lasso.
        fit_intercept: Fit an unpenalized intercept.
        coef_init: Warm start for the coefficients.
        precompute: ``"auto"``, ``True`` or ``False``: use the Gram matrix (see
            [`enet_path`][reglight.linear.enet_path]).
        tol: Relative tolerance on the optimality (KKT) conditions.
        max_iter: Maximum active-set iterations.
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.

    Returns:
        ``(coef, intercept)``: coefficients (n_features,) and the intercept (a float, or a 0-d
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
    if precompute not in ("auto", True, False):
        raise ValueError(f"`precompute` must be 'auto', True or False, got {precompute!r}")
    dt = resolve_dtype(X, dtype)
    Xt = as_matrix("X", X, dt, device)
    n, p = Xt.shape
    yt = as_vector("y", y, n, dt, Xt.device)
    with single_thread(Xt.device):
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
        w0 = None if coef_init is None else as_vector("coef_init", coef_init, p, dt, Xt.device)
        alphas = torch.tensor([alpha], dtype=dt, device=Xt.device)
        alpha_max = float(oracle.c.abs().max()) / rho
        coef = solve_path(
            oracle,
            alphas,
            rho,
            w0=w0,
            alpha_max=max(alpha_max, alpha),
            tol=tol,
            max_iter=max_iter,
            max_active=n if (rho == 1.0 and not use_gram) else None,
        )[:, 0]
        intercept = y_mean - x_mean @ coef
    if isinstance(X, torch.Tensor):
        return coef, intercept
    return like_input(X, coef), float(intercept)


class ElasticNet:
    r"""Elastic-net linear regression, solved exactly (scikit-learn's ``ElasticNet`` objective).

    $$
    \min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b \rVert_2^2 + \alpha\rho\lVert w\rVert_1
    + \frac{\alpha(1-\rho)}{2}\lVert w\rVert_2^2, \qquad \rho = \text{l1\_ratio}
    $$

    Zou & Hastie (2005), "Regularization and variable selection via the elastic net". Fitted
    attributes: ``coef_`` (n_features,), ``intercept_``, ``n_features_in_``; NumPy arrays for NumPy
    input, tensors for tensor input.

    Args:
        alpha: Regularization strength ``α >= 0``.
        l1_ratio: Mixing ``ρ`` in (0, 1].
        fit_intercept: Fit an unpenalized intercept.
        precompute: ``"auto"``, ``True`` or ``False`` (use the Gram matrix).
        tol: Relative tolerance on the optimality (KKT) conditions.
        max_iter: Maximum active-set iterations.
        warm_start: Start the next ``fit`` from the current ``coef_``.
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.

    Raises:
        ValueError: For an invalid argument.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
        >>> model = ElasticNet(alpha=0.1, l1_ratio=0.5).fit(X, 2.0 * X[:, 0])
        >>> np.round(model.coef_, 3)
        array([1.885, 0.   ])
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
    ) -> None:
        self.alpha = check_nonnegative("alpha", alpha)
        self.l1_ratio = _check_l1_ratio(l1_ratio)
        self.fit_intercept = bool(fit_intercept)
        if precompute not in ("auto", True, False):
            raise ValueError(f"`precompute` must be 'auto', True or False, got {precompute!r}")
        self.precompute = precompute
        self.tol = check_positive("tol", tol)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.warm_start = bool(warm_start)
        self.dtype = dtype
        self.device = device
        self.coef_: Any = None
        self.intercept_: Any = None
        self.n_features_in_: int = 0

    def fit(self, X: Any, y: Any) -> ElasticNet:
        """Fit the model.

        Args:
            X: Design matrix (n_samples, n_features).
            y: Targets (n_samples,).

        Returns:
            The fitted estimator.
        """
        init = self.coef_ if (self.warm_start and self.coef_ is not None) else None
        self.coef_, self.intercept_ = elastic_net(
            X,
            y,
            self.alpha,
            self.l1_ratio,
            fit_intercept=self.fit_intercept,
            coef_init=init,
            precompute=self.precompute,
            tol=self.tol,
            max_iter=self.max_iter,
            dtype=self.dtype,
            device=self.device,
        )
        self.n_features_in_ = int(self.coef_.shape[0])
        return self

    def _check_fitted(self) -> None:
        if self.coef_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call `fit` first")

    def predict(self, X: Any) -> Any:
        """Predictions ``Xw + b``.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            Predictions (n_samples,), NumPy array or tensor like ``X``.
        """
        self._check_fitted()
        if isinstance(self.coef_, torch.Tensor):
            Xt = as_matrix("X", X, self.coef_.dtype, self.coef_.device)
            return like_input(X, Xt @ self.coef_ + self.intercept_)
        Xt = as_matrix("X", X, torch.float64)
        coef = torch.as_tensor(self.coef_, dtype=torch.float64)
        return like_input(X, Xt @ coef + float(self.intercept_))

    def score(self, X: Any, y: Any) -> float:
        """Coefficient of determination R² of the predictions.

        Args:
            X: Design matrix (n_samples, n_features).
            y: True targets (n_samples,).

        Returns:
            ``1 - Σ(y - ŷ)² / Σ(y - ȳ)²``.
        """
        pred = torch.as_tensor(self.predict(X), dtype=torch.float64).cpu()
        yt = as_vector("y", y, pred.shape[0], torch.float64).cpu()
        ss_res = float(((yt - pred) ** 2).sum())
        ss_tot = float(((yt - yt.mean()) ** 2).sum())
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0

    @property
    def selected_(self) -> Any:
        """Indices of the nonzero coefficients."""
        self._check_fitted()
        if isinstance(self.coef_, torch.Tensor):
            return (self.coef_ != 0).nonzero().squeeze(1)
        return (torch.as_tensor(self.coef_) != 0).nonzero().squeeze(1).numpy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha!r}, l1_ratio={self.l1_ratio!r})"


class Lasso(ElasticNet):
    r"""Lasso linear regression (Tibshirani, 1996): [`ElasticNet`][reglight.linear.ElasticNet] with ``l1_ratio=1``.

    $$
    \min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b \rVert_2^2 + \alpha\lVert w\rVert_1
    $$

    Args:
        alpha: Regularization strength ``α >= 0``.
        fit_intercept: Fit an unpenalized intercept.
        precompute: ``"auto"``, ``True`` or ``False`` (use the Gram matrix).
        tol: Relative tolerance on the optimality (KKT) conditions.
        max_iter: Maximum active-set iterations.
        warm_start: Start the next ``fit`` from the current ``coef_``.
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.

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
    ) -> None:
        super().__init__(
            alpha,
            1.0,
            fit_intercept=fit_intercept,
            precompute=precompute,
            tol=tol,
            max_iter=max_iter,
            warm_start=warm_start,
            dtype=dtype,
            device=device,
        )

    def __repr__(self) -> str:
        return f"Lasso(alpha={self.alpha!r})"
