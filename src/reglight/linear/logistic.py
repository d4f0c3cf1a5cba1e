r"""Sparse logistic regression (binary and multinomial) with an L1 or elastic-net penalty.

Objective, for `n` samples, labels `y_i` of `K` classes and `ρ = l1_ratio`:

$$
\min_{W, b}\; \frac{1}{n}\sum_{i=1}^n \ell(y_i, x_i^\top W + b)
+ \alpha\rho\lVert W\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert W\rVert_F^2
$$

with the logistic loss `ℓ = log(1 + e^η) - yη` for two classes (one coefficient vector) and the
multinomial (softmax cross-entropy) loss `ℓ = logsumexp(η) - η_y` for more; the intercept `b`
is not penalized. This is scikit-learn's `LogisticRegression(l1_ratio=ρ, C=C)` (`penalty="l1"`
for `ρ = 1`) with `C = 1 / (n α)`: scikit-learn minimizes `C Σ ℓ + penalty`, the same problem
multiplied by `C n`.

Solver: proximal Newton (Lee, Sun & Saunders 2014; the approach of glmnet and newGLMNET): at the
current point the loss is replaced by its second-order Taylor model, the penalized quadratic is
solved *exactly* by the active-set solver of `reglight.linear._qp`, and a backtracking line
search on the true objective accepts the step. Features enter through a working set (gradient
screening) with a KKT check on all features, as in the regression paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from reglight._threads import torch_threads
from reglight._validation import (
    check_in_range,
    check_nonnegative,
    check_positive,
    check_positive_int,
)

from ._convergence import collect, record
from ._estimator import (
    classification_inputs,
    coef_tensor,
    fitted_dtype,
    predict_input,
    to_host,
)
from ._qp import solve_l1_qp
from ._tensor import as_grid, as_matrix, like_input, resolve_dtype
from .path import _check_l1_ratio, _grid

__all__ = ["LogisticElasticNet", "logistic_alpha_max", "logistic_enet", "logistic_path"]


class _Logistic:
    """Loss, gradient and Hessian of the (multinomial) logistic loss on a subset of features."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor, binary: bool) -> None:
        self.X = X
        self.Y = Y  # (n,) in {0, 1} for binary, one-hot (n, K) otherwise
        self.binary = binary
        self.n = X.shape[0]
        self.K = 1 if binary else Y.shape[1]

    def probs(self, eta: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(eta) if self.binary else torch.softmax(eta, dim=1)

    def loss(self, eta: torch.Tensor) -> float:
        if self.binary:
            e = eta[:, 0]
            return float((torch.nn.functional.softplus(e) - self.Y * e).mean())
        return float((torch.logsumexp(eta, 1) - (eta * self.Y).sum(1)).mean())

    def residual(self, P: torch.Tensor) -> torch.Tensor:
        return P - (self.Y.unsqueeze(1) if self.binary else self.Y)

    def hessian(self, Xt: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        """Hessian w.r.t. the flattened (feature, class) coefficients of `Xt` (n, f)."""
        f = Xt.shape[1]
        if self.binary:
            v = (P[:, 0] * (1.0 - P[:, 0])) / self.n
            return (Xt * v.unsqueeze(1)).T @ Xt
        K = self.K
        S = torch.diag_embed(P) - P.unsqueeze(2) * P.unsqueeze(1)  # (n, K, K)
        H = torch.einsum("ia,ikm,ib->akbm", Xt, S, Xt) / self.n
        return H.reshape(f * K, f * K)


def _penalty(W: torch.Tensor, lam1: float, lam2: float) -> float:
    return float(lam1 * W.abs().sum() + 0.5 * lam2 * (W * W).sum())


def _solve_working_set(
    prob: _Logistic,
    F: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    lam1: float,
    lam2: float,
    fit_intercept: bool,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Proximal Newton on the features `F` (others fixed at zero)."""
    K = prob.K
    f = F.shape[0]
    Xt = prob.X[:, F]
    if fit_intercept:
        Xt = torch.cat([Xt, Xt.new_ones(prob.n, 1)], 1)
    rows = Xt.shape[1]
    pen_mask = torch.ones(rows, K, dtype=W.dtype, device=W.device)
    if fit_intercept:
        pen_mask[f:] = 0.0
    pen_mask = pen_mask.reshape(-1)
    l1 = lam1 * pen_mask
    l2 = lam2 * pen_mask
    beta = W[F]
    if fit_intercept:
        beta = torch.cat([beta, b.unsqueeze(0)], 0)
    beta = beta.reshape(-1)
    eta = Xt @ beta.reshape(rows, K)
    obj = prob.loss(eta) + _penalty(beta * pen_mask, lam1, lam2)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - returned below
        P = prob.probs(eta)
        grad = (Xt.T @ prob.residual(P)).reshape(-1) / prob.n
        # Convergence: the subgradient optimality conditions, to `tol`.
        nz = beta != 0
        res = torch.where(
            nz,
            (grad + l2 * beta + l1 * beta.sign()).abs(),
            (grad.abs() - l1).clamp_min(0.0),
        )
        if float(res.max()) <= tol:
            break
        H = prob.hessian(Xt, P)
        # A tiny proximal term keeps the model strictly convex (softmax shift invariance).
        delta = 1e-10 * float(H.diagonal().mean()) + 1e-14
        H.diagonal().add_(delta)
        z, _ = solve_l1_qp(H, H @ beta - grad, l1, beta, l2=l2, tol=1e-12, max_iter=500)
        d = z - beta
        pen_old = _penalty(beta * pen_mask, lam1, lam2)
        decrease = float(grad @ d) + _penalty(z * pen_mask, lam1, lam2) - pen_old
        if decrease >= 0.0:
            break  # the model sees no descent left: optimal at machine precision
        t = 1.0
        dEta = Xt @ d.reshape(rows, K)
        for _ in range(60):
            cand = beta + t * d
            cand_eta = eta + t * dEta
            cand_obj = prob.loss(cand_eta) + _penalty(cand * pen_mask, lam1, lam2)
            if cand_obj <= obj + 1e-4 * t * decrease:
                break
            t *= 0.5
        else:
            break
        beta, eta, obj = cand, cand_eta, cand_obj
    else:  # max_iter steps taken: are the optimality conditions met at the last one?
        grad = (Xt.T @ prob.residual(prob.probs(eta))).reshape(-1) / prob.n
        res = torch.where(
            beta != 0,
            (grad + l2 * beta + l1 * beta.sign()).abs(),
            (grad.abs() - l1).clamp_min(0.0),
        )
        if float(res.max()) > tol:
            record(float(res.max()), tol)
    B = beta.reshape(rows, K)
    W = W.clone()
    W[F] = B[:f]
    if fit_intercept:
        b = B[f].clone()
    return W, b, n_iter


def _fit(
    prob: _Logistic,
    lam1: float,
    lam2: float,
    W: torch.Tensor,
    b: torch.Tensor,
    fit_intercept: bool,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Working-set loop: solve on a subset of features, add KKT violators, repeat.

    Returns `(W, b, n_iter)`, `n_iter` the proximal Newton iterations over all working sets.
    """
    p = prob.X.shape[1]
    n_iter = 0

    def full_grad(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        eta = prob.X @ W + b
        return (prob.X.T @ prob.residual(prob.probs(eta))) / prob.n  # (p, K)

    g = full_grad(W, b)
    score = g.abs().amax(1)
    active = (W != 0).any(1)
    work = active | (score > lam1 + tol)
    if lam1 == 0.0:
        work = torch.ones(p, dtype=torch.bool, device=W.device)
    limit = max(10, 2 * int(active.sum()))
    if int(work.sum()) > limit:  # start from the strongest candidates, grow by doubling
        cand = torch.where(active, score.new_full((), float("inf")), score)
        work = torch.zeros_like(work)
        work[torch.topk(cand, limit).indices] = True
    while True:
        F = work.nonzero().squeeze(1)
        if F.numel() or fit_intercept:
            W, b, k = _solve_working_set(prob, F, W, b, lam1, lam2, fit_intercept, tol, max_iter)
            n_iter += k
        g = full_grad(W, b)
        viol = ~work & (g.abs().amax(1) > lam1 + tol)
        n_viol = int(viol.sum())
        if n_viol == 0:
            return W, b, n_iter
        m = min(n_viol, max(10, int(work.sum())))
        score = torch.where(viol, g.abs().amax(1), g.new_full((), float("-inf")))
        work[torch.topk(score, m).indices] = True


def _encode(y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and codes `0..K-1` of `y` (array or tensor) of length `n`."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"`y` must have shape ({n},), got {arr.shape}")
    classes, codes = np.unique(arr, return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(f"`y` must contain at least two classes, got {classes.tolist()}")
    return classes, codes


def _problem(Xt: torch.Tensor, codes: torch.Tensor, n_classes: int) -> _Logistic:
    """The loss on tensors: `codes` (n,) in `0..n_classes-1` on the device of `Xt`."""
    if n_classes == 2:
        return _Logistic(Xt, codes.to(Xt.dtype), binary=True)
    Y = torch.nn.functional.one_hot(codes, n_classes).to(Xt.dtype)
    return _Logistic(Xt, Y, binary=False)


def _inputs(
    X: Any, y: Any, dtype: torch.dtype | None, device: torch.device | str | None
) -> tuple[_Logistic, np.ndarray]:
    """Convert the public inputs once: the loss on tensors and the class labels."""
    Xt = as_matrix("X", X, resolve_dtype(X, dtype), device)
    classes, codes = _encode(y, Xt.shape[0])
    return _problem(Xt, torch.as_tensor(codes, device=Xt.device), classes.shape[0]), classes


def _intercept_only(prob: _Logistic, fit_intercept: bool) -> torch.Tensor:
    """The optimal intercept of the model with all coefficients zero (log-odds of the priors)."""
    dt, dev = prob.X.dtype, prob.X.device
    if not fit_intercept:
        return torch.zeros(prob.K, dtype=dt, device=dev)
    if prob.binary:
        m = float(prob.Y.mean())
        return torch.tensor([np.log(m / (1.0 - m))], dtype=dt, device=dev)
    logp = prob.Y.mean(0).log()
    return logp - logp.mean()


def _logistic_alpha_max(prob: _Logistic, b: torch.Tensor, rho: float) -> float:
    eta = prob.X.new_zeros(prob.n, prob.K) + b
    g = (prob.X.T @ prob.residual(prob.probs(eta))) / prob.n
    return float(g.abs().max()) / rho


def logistic_alpha_max(
    X: Any, y: Any, l1_ratio: float = 1.0, *, fit_intercept: bool = True
) -> float:
    r"""Smallest `α` at which every coefficient of the penalized logistic model is zero.

    $\alpha_{\max} = \max_{j,k} |x_j^\top(\hat p_k - y_k)| / (n\rho)$ with $\hat p$ the class
    frequencies (the intercept-only fit), or $1/2$ (binary) / $1/K$ without intercept.

    Args:
        X: Design matrix (n_samples, n_features).
        y: Class labels (n_samples,).
        l1_ratio: Mixing $\rho$ in (0, 1].
        fit_intercept: Whether the model has an unpenalized intercept.

    Returns:
        $\alpha_{\max}$.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0], [-1.0], [1.0], [-1.0]])
        >>> round(logistic_alpha_max(X, np.array([1, 0, 1, 1])), 12)
        0.25
    """
    rho = _check_l1_ratio(l1_ratio)
    prob, _ = _inputs(X, y, None, None)
    return _logistic_alpha_max(prob, _intercept_only(prob, fit_intercept), rho)


def logistic_path(
    X: Any,
    y: Any,
    *,
    l1_ratio: float = 1.0,
    alphas: Any = None,
    n_alphas: int = 100,
    eps: float = 1e-3,
    fit_intercept: bool = True,
    tol: float = 1e-9,
    max_iter: int = 100,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_threads: int | None = 1,
) -> tuple[Any, Any, Any]:
    """Regularization path of the penalized logistic model (see the module docstring).

    Warm-started from `α_max` down to `eps·α_max` on a log grid (or the given `alphas`).

    Args:
        X: Design matrix (n_samples, n_features).
        y: Class labels (n_samples,); two classes give the binary model, more the multinomial.
        l1_ratio: Mixing `ρ` in (0, 1].
        alphas: Explicit grid (sorted decreasingly); `None` for the automatic one.
        n_alphas: Number of `α` of the automatic grid.
        eps: `α_min / α_max` of the automatic grid.
        fit_intercept: Fit unpenalized intercepts.
        tol: Absolute tolerance on the optimality conditions (gradient units).
        max_iter: Maximum proximal Newton iterations per `α` and working set.
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Returns:
        `(alphas, coefs, intercepts)`: coefs of shape (n_features, n_alphas) for two classes,
        (n_classes, n_features, n_alphas) for more; intercepts (n_alphas,) or (n_classes, n_alphas).

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.2], [-1.0, 0.1], [0.8, -0.3], [-0.9, 0.4], [0.1, 0.0], [-0.2, 0.1]])
        >>> alphas, coefs, intercepts = logistic_path(X, np.array([1, 0, 1, 0, 0, 1]), n_alphas=3)
        >>> coefs.shape, bool((coefs[:, 0] == 0).all())
        ((2, 3), True)
    """
    rho = _check_l1_ratio(l1_ratio)
    check_positive_int("n_alphas", n_alphas)
    check_in_range("eps", eps, 0.0, 1.0, low_inclusive=False)
    check_positive("tol", tol)
    check_positive_int("max_iter", max_iter)
    prob, _ = _inputs(X, y, dtype, device)
    grid = None if alphas is None else as_grid(alphas, prob.X.dtype, prob.X.device)
    with torch_threads(n_threads), collect("logistic_path", tol=tol, max_iter=max_iter):
        grid, coefs, intercepts = _logistic_path(
            prob, rho, grid, n_alphas, eps, fit_intercept, tol, max_iter
        )
    if prob.binary:
        return like_input(X, grid), like_input(X, coefs[0]), like_input(X, intercepts[0])
    return like_input(X, grid), like_input(X, coefs), like_input(X, intercepts)


def _logistic_path(
    prob: _Logistic,
    rho: float,
    grid: torch.Tensor | None,
    n_alphas: int,
    eps: float,
    fit_intercept: bool,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The path on tensors: `(grid, coefs (K, p, n_alphas), intercepts (K, n_alphas))`."""
    b = _intercept_only(prob, fit_intercept)
    if grid is None:
        grid = _grid(_logistic_alpha_max(prob, b, rho), n_alphas, eps, prob.X.dtype, prob.X.device)
    p = prob.X.shape[1]
    W = prob.X.new_zeros(p, prob.K)
    coefs = prob.X.new_zeros(prob.K, p, grid.shape[0])
    intercepts = prob.X.new_zeros(prob.K, grid.shape[0])
    for i, alpha in enumerate(grid.tolist()):
        W, b, _ = _fit(prob, alpha * rho, alpha * (1 - rho), W, b, fit_intercept, tol, max_iter)
        coefs[:, :, i] = W.T
        intercepts[:, i] = b
    return grid, coefs, intercepts


def logistic_enet(
    X: Any,
    y: Any,
    alpha: float,
    l1_ratio: float = 1.0,
    *,
    fit_intercept: bool = True,
    tol: float = 1e-9,
    max_iter: int = 100,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_threads: int | None = 1,
) -> tuple[Any, Any]:
    """Fit one penalized logistic model (see the module docstring for the objective).

    Args:
        X: Design matrix (n_samples, n_features).
        y: Class labels (n_samples,).
        alpha: Regularization strength `α >= 0` (scikit-learn: `C = 1/(n α)`).
        l1_ratio: Mixing `ρ` in [0, 1].
        fit_intercept: Fit unpenalized intercepts.
        tol: Absolute tolerance on the optimality conditions (gradient units).
        max_iter: Maximum proximal Newton iterations per working set.
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Returns:
        `(coef, intercept)` of shapes (1, n_features) and (1,) for two classes, (n_classes,
        n_features) and (n_classes,) for more (scikit-learn's `coef_`/`intercept_` layout).

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.2], [-1.0, 0.1], [0.8, -0.3], [-0.9, 0.4], [0.1, 0.0], [-0.2, 0.1]])
        >>> coef, intercept = logistic_enet(X, np.array([1, 0, 1, 0, 0, 1]), alpha=0.05)
        >>> coef.shape, bool(coef[0, 1] == 0.0)
        ((1, 2), True)
    """
    alpha = check_nonnegative("alpha", alpha)
    rho = _check_l1_ratio(l1_ratio, allow_zero=True)
    check_positive("tol", tol)
    check_positive_int("max_iter", max_iter)
    prob, _ = _inputs(X, y, dtype, device)
    with torch_threads(n_threads), collect("logistic_enet", tol=tol, max_iter=max_iter):
        W, b, _ = _logistic_enet(prob, alpha, rho, fit_intercept, tol, max_iter)
    return like_input(X, W), like_input(X, b)


def _logistic_enet(
    prob: _Logistic, alpha: float, rho: float, fit_intercept: bool, tol: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One fit on tensors: `(coef (K, p), intercept (K,), n_iter)`."""
    b = _intercept_only(prob, fit_intercept)
    W = prob.X.new_zeros(prob.X.shape[1], prob.K)
    W, b, n_iter = _fit(prob, alpha * rho, alpha * (1 - rho), W, b, fit_intercept, tol, max_iter)
    return W.T.contiguous(), b, n_iter


class _LinearClassifier(ClassifierMixin, BaseEstimator):
    """Scores, probabilities and labels of a fitted (multinomial) logistic model."""

    classes_: np.ndarray
    coef_: Any
    intercept_: Any

    def _set_fit(self, X: Any, classes: np.ndarray, W: torch.Tensor, b: torch.Tensor) -> None:
        """Store the fit in the kind of the input `X` (tensors or NumPy arrays)."""
        self.classes_ = classes
        self.coef_, self.intercept_ = like_input(X, W), like_input(X, b)

    def decision_function(self, X: Any) -> Any:
        r"""Linear scores $XW^\top + b$: (n,) for two classes, (n, K) for more.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            The scores: a tensor on the device of `X` when `X` is a tensor, else a NumPy array.
        """
        check_is_fitted(self)
        Xt = predict_input(self, X, fitted_dtype(self.coef_))
        W = coef_tensor(self.coef_, Xt)
        scores = Xt @ W.T + coef_tensor(self.intercept_, Xt)
        return like_input(X, scores[:, 0] if W.shape[0] == 1 else scores)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities (n_samples, n_classes), columns in the order of `classes_`.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            Probabilities, a tensor or a NumPy array like `X`.
        """
        s = torch.as_tensor(self.decision_function(X))
        if s.ndim == 1:
            p1 = torch.sigmoid(s)
            return like_input(X, torch.stack([1 - p1, p1], 1))
        return like_input(X, torch.softmax(s, 1))

    def predict_log_proba(self, X: Any) -> Any:
        """Logarithms of the class probabilities of `predict_proba`.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            Log-probabilities (n_samples, n_classes), a tensor or a NumPy array like `X`.
        """
        s = torch.as_tensor(self.decision_function(X))
        if s.ndim == 1:
            s = torch.stack([torch.zeros_like(s), s], 1)
        return like_input(X, torch.log_softmax(s, 1))

    def predict(self, X: Any) -> Any:
        """Most probable class labels, values of `classes_`.

        Args:
            X: Design matrix (n_samples, n_features).

        Returns:
            Labels (n_samples,): a tensor on the device of `X` when `X` is a tensor and the labels
            are numbers, else a NumPy array.
        """
        s = torch.as_tensor(self.decision_function(X))
        codes = (s > 0).long() if s.ndim == 1 else s.argmax(1)
        if isinstance(X, torch.Tensor) and self.classes_.dtype.kind in "biuf":
            return torch.as_tensor(self.classes_, device=codes.device)[codes]
        return self.classes_[codes.cpu().numpy()]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of `predict(X)` against `y` (scikit-learn's `accuracy_score`).

        Args:
            X: Design matrix (n_samples, n_features).
            y: True labels (n_samples,).
            sample_weight: Weights of the samples in the score.

        Returns:
            The accuracy in [0, 1].
        """
        return float(super().score(to_host(X), to_host(y), to_host(sample_weight)))


class LogisticElasticNet(_LinearClassifier):
    r"""Sparse logistic regression (binary or multinomial) with an L1 / elastic-net penalty.

    $$
    \min_{W, b}\; \frac{1}{n}\sum_{i=1}^n \ell(y_i, x_i^\top W + b)
    + \alpha\Big(\rho\lVert W\rVert_1 + \frac{1-\rho}{2}\lVert W\rVert_F^2\Big),
    \qquad \rho = \texttt{l1\_ratio}
    $$

    with $\ell$ the logistic loss (two classes, one coefficient vector) or the softmax
    cross-entropy (more classes); the intercepts are not penalized. The same problem as
    scikit-learn's `LogisticRegression(C=1/(n α), l1_ratio=ρ)` (which minimizes $C\sum_i\ell$ plus
    the penalty), solved to machine precision by proximal Newton, in torch on the CPU or a GPU.
    A scikit-learn classifier: `clone`, `Pipeline` and `GridSearchCV` work; arguments are checked
    by `fit`.

    Fitted attributes: `classes_` (NumPy), `coef_` ((1, p) for two classes, (K, p) for more),
    `intercept_` ((1,) or (K,)), `n_iter_` (proximal Newton iterations), `n_features_in_`.
    `coef_`/`intercept_` are NumPy arrays for NumPy-like input, tensors on the computation
    device for tensor input; `decision_function`, `predict_proba` and `predict` answer in the
    kind of their own `X`.

    Args:
        alpha: Regularization strength $\alpha \ge 0$.
        l1_ratio: Mixing $\rho$ in [0, 1].
        fit_intercept: Fit unpenalized intercepts.
        tol: Absolute tolerance on the optimality conditions.
        max_iter: Maximum proximal Newton iterations per working set.
        dtype: Computation dtype; default: float32 for float32 input, float64 otherwise.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.2], [-1.0, 0.1], [0.8, -0.3], [-0.9, 0.4], [0.1, 0.0], [-0.2, 0.1]])
        >>> model = LogisticElasticNet(alpha=0.05).fit(X, np.array(["b", "a", "b", "a", "a", "b"]))
        >>> model.predict(np.array([[2.0, 0.0], [-2.0, 0.0]])).tolist()
        ['b', 'a']
    """

    def __init__(
        self,
        alpha: float = 1.0,
        l1_ratio: float = 1.0,
        *,
        fit_intercept: bool = True,
        tol: float = 1e-9,
        max_iter: int = 100,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        n_threads: int | None = 1,
    ) -> None:
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.dtype = dtype
        self.device = device
        self.n_threads = n_threads

    def fit(self, X: Any, y: Any) -> LogisticElasticNet:
        """Fit the model.

        Args:
            X: Design matrix (n_samples, n_features): array-like or tensor.
            y: Class labels (n_samples,).

        Returns:
            The fitted estimator.

        Raises:
            ValueError: For an invalid parameter, a continuous target or a single class.
        """
        alpha = check_nonnegative("alpha", self.alpha)
        rho = _check_l1_ratio(self.l1_ratio, allow_zero=True)
        tol = check_positive("tol", self.tol)
        max_iter = check_positive_int("max_iter", self.max_iter)
        Xt, classes, codes = classification_inputs(self, X, y, self.dtype, self.device)
        prob = _problem(Xt, torch.as_tensor(codes, device=Xt.device), classes.shape[0])
        name = type(self).__name__
        with torch_threads(self.n_threads), collect(name, tol=tol, max_iter=max_iter):
            W, b, self.n_iter_ = _logistic_enet(
                prob, alpha, rho, bool(self.fit_intercept), tol, max_iter
            )
        self._set_fit(X, classes, W, b)
        return self
