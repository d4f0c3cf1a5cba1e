r"""Lasso and elastic-net regularization paths in scikit-learn's objective scaling.

For each `α` of a decreasing grid the solvers minimize, with `ρ = l1_ratio`,

$$
\frac{1}{2n}\lVert y - Xw \rVert_2^2 + \alpha\rho\lVert w\rVert_1
+ \frac{\alpha(1-\rho)}{2}\lVert w\rVert_2^2,
$$

exactly the objective of `sklearn.linear_model.enet_path` (no intercept; centre `X` and
`y` first, or use [`ElasticNet`][reglight.linear.ElasticNet]), so that results compare one to one.

How (one α after another, warm-started from the previous solution):

1. **Strong rule** (Tibshirani et al. 2012, "Strong rules for discarding predictors in lasso-type
   problems"): feature `j` is screened out at `α_k` when
   `|x_jᵀ r(α_{k-1})|/n < ρ(2α_k - α_{k-1})`; the working set is what survives plus every feature
   that was ever active.
2. **Exact solve on the working set** by an active-set Newton method (feature-sign search,
   `reglight.linear._qp`): Cholesky solves on the active block of the Gram matrix instead of
   coordinate sweeps, so each solution is optimal to machine precision.
3. **KKT check** on all features: a screened-out feature with `|x_jᵀ r|/n > αρ` joins the working
   set and step 2 repeats.
4. **Path extension**: on a fixed active set and sign pattern the solution is an explicit function
   of `α`; the next grid points whose explicit solution passes the sign and KKT checks are
   accepted at once, so stretches of the path where the active set does not change cost one
   factorization in total. The first failing point proposes the next active set (sign changes
   leave, KKT violators enter), which is checked the same way before falling back to step 2.

The Gram matrix `XᵀX/n` is computed once when `n_samples > n_features` (`precompute="auto"`,
like scikit-learn); otherwise Gram blocks are computed only for the features screening lets in.
Everything runs in torch on the device of the input (CPU or GPU).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from reglight._threads import torch_threads
from reglight._validation import check_in_range, check_positive, check_positive_int

from ._convergence import collect, record
from ._oracle import DesignOracle, GramOracle, HessianOracle
from ._qp import solve_l1_qp
from ._tensor import as_grid, as_matrix, as_vector, like_input, resolve_dtype

__all__ = [
    "alpha_grid",
    "enet_dual_gap",
    "enet_objective",
    "enet_path",
    "lasso_path",
]


def _check_l1_ratio(l1_ratio: float, *, allow_zero: bool = False) -> float:
    return check_in_range(
        "l1_ratio", l1_ratio, 0.0, 1.0, low_inclusive=allow_zero, high_inclusive=True
    )


def alpha_grid(
    X: Any,
    y: Any,
    *,
    l1_ratio: float = 1.0,
    n_alphas: int = 100,
    eps: float = 1e-3,
    fit_intercept: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Any:
    r"""The log-spaced grid of `α` from `α_max` down to `eps·α_max` (scikit-learn's grid).

    $\alpha_{\max} = \max_j |x_j^\top y| / (n\rho)$ is the smallest `α` whose solution is all
    zeros (with `fit_intercept=True`, of the centred problem).

    Args:
        X: Design matrix (n_samples, n_features), NumPy array or tensor.
        y: Targets (n_samples,).
        l1_ratio: Elastic-net mixing `ρ` in (0, 1].
        n_alphas: Number of grid points.
        eps: Ratio `α_min / α_max`.
        fit_intercept: Centre `X` and `y` before computing `α_max`.
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.

    Returns:
        The decreasing grid (n_alphas,), NumPy array or tensor like `X`.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([2.0, -1.0])
        >>> alpha_grid(X, y, n_alphas=3, eps=0.01)
        array([1.  , 0.1 , 0.01])
    """
    rho = _check_l1_ratio(l1_ratio)
    check_positive_int("n_alphas", n_alphas)
    check_in_range("eps", eps, 0.0, 1.0, low_inclusive=False)
    dt = resolve_dtype(X, dtype)
    Xt = as_matrix("X", X, dt, device)
    yt = as_vector("y", y, Xt.shape[0], dt, Xt.device)
    a_max = _alpha_max(Xt, yt, rho, fit_intercept)
    return like_input(X, _grid(a_max, n_alphas, eps, dt, Xt.device))


def _alpha_max(Xt: torch.Tensor, yt: torch.Tensor, rho: float, fit_intercept: bool) -> float:
    """`max_j |x_jᵀ y| / (n ρ)`; centred: `(X - x̄)ᵀ(y - ȳ) = Xᵀ(y - ȳ)`, so `X` is not copied."""
    if fit_intercept:
        yt = yt - yt.mean()
    return float(((Xt.T @ yt) / Xt.shape[0]).abs().max()) / rho


def _grid(
    alpha_max: float, n_alphas: int, eps: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    if alpha_max <= np.finfo(np.float64).resolution:
        return torch.full(
            (n_alphas,), float(np.finfo(np.float64).resolution), dtype=dtype, device=device
        )
    grid = np.geomspace(alpha_max, alpha_max * eps, num=n_alphas)
    return torch.as_tensor(grid, dtype=dtype, device=device)


def enet_objective(X: Any, y: Any, coef: Any, alpha: float, l1_ratio: float = 1.0) -> float:
    r"""Value of the elastic-net objective (scikit-learn scaling) at `coef`.

    $$
    \frac{1}{2n}\lVert y - Xw \rVert_2^2 + \alpha\rho\lVert w\rVert_1
    + \frac{\alpha(1-\rho)}{2}\lVert w\rVert_2^2
    $$

    Args:
        X: Design matrix (n_samples, n_features).
        y: Targets (n_samples,).
        coef: Coefficients (n_features,).
        alpha: Regularization strength `α >= 0`.
        l1_ratio: Mixing `ρ` in [0, 1].

    Returns:
        The objective value, as a Python float.

    Examples:
        >>> import numpy as np
        >>> enet_objective(np.eye(2), np.array([1.0, 0.0]), np.array([0.5, 0.0]), alpha=0.5)
        0.3125
    """
    dtype = torch.float64
    Xt = as_matrix("X", X, dtype)
    yt = as_vector("y", y, Xt.shape[0], dtype, Xt.device)
    w = as_vector("coef", coef, Xt.shape[1], dtype, Xt.device)
    r = yt - Xt @ w
    n = Xt.shape[0]
    return float(
        0.5 * r.dot(r) / n
        + alpha * l1_ratio * w.abs().sum()
        + 0.5 * alpha * (1.0 - l1_ratio) * w.dot(w)
    )


def enet_dual_gap(X: Any, y: Any, coef: Any, alpha: float, l1_ratio: float = 1.0) -> float:
    """Duality gap of `coef` for the elastic-net problem (scikit-learn scaling).

    The dual point is the scaled residual `θ = r / max(1, ‖Xᵀr - nβw‖_∞ / (nα ρ))` of the
    Gap-Safe rules (Ndiaye et al. 2017); the gap bounds the objective error of `coef` from above.

    Args:
        X: Design matrix (n_samples, n_features).
        y: Targets (n_samples,).
        coef: Coefficients (n_features,).
        alpha: Regularization strength `α > 0`.
        l1_ratio: Mixing `ρ` in (0, 1].

    Returns:
        The duality gap (`>= 0` up to rounding), in the objective's units.

    Examples:
        >>> import numpy as np
        >>> X = np.eye(2); y = np.array([1.0, 0.0])
        >>> round(enet_dual_gap(X, y, np.array([0.0, 0.0]), alpha=0.25), 6)
        0.0625
    """
    dtype = torch.float64
    Xt = as_matrix("X", X, dtype)
    yt = as_vector("y", y, Xt.shape[0], dtype, Xt.device)
    w = as_vector("coef", coef, Xt.shape[1], dtype, Xt.device)
    n = Xt.shape[0]
    l1 = alpha * l1_ratio * n
    l2 = alpha * (1.0 - l1_ratio) * n
    r = yt - Xt @ w
    xta = Xt.T @ r - l2 * w
    dual_norm = float(xta.abs().max())
    rn2 = float(r.dot(r))
    if dual_norm > l1:
        const = l1 / dual_norm
        gap = 0.5 * (rn2 + rn2 * const**2)
    else:
        const = 1.0
        gap = rn2
    gap += l1 * float(w.abs().sum()) - const * float(r.dot(yt))
    gap += 0.5 * l2 * (1.0 + const**2) * float(w.dot(w))
    return gap / n


def enet_path(
    X: Any,
    y: Any,
    *,
    l1_ratio: float = 0.5,
    eps: float = 1e-3,
    n_alphas: int = 100,
    alphas: Any = None,
    precompute: bool | str = "auto",
    coef_init: Any = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_threads: int | None = 1,
) -> tuple[Any, Any]:
    r"""Elastic-net regularization path (scikit-learn's `enet_path`, solved exactly).

    Minimizes, for each `α` in `alphas` (in decreasing order), with `ρ = l1_ratio`,

    $$
    \frac{1}{2n}\lVert y - Xw \rVert_2^2 + \alpha\rho\lVert w\rVert_1
    + \frac{\alpha(1-\rho)}{2}\lVert w\rVert_2^2
    $$

    with warm starts, sequential strong-rule screening and a KKT check on all features (see the
    module docstring). No intercept is fitted: centre `X` and `y` beforehand (or use
    [`ElasticNet`][reglight.linear.ElasticNet]).

    Args:
        X: Design matrix (n_samples, n_features), NumPy array or tensor (CPU or GPU).
        y: Targets (n_samples,).
        l1_ratio: Mixing `ρ` in (0, 1]; 1 is the lasso.
        eps: `α_min / α_max` of the automatic grid.
        n_alphas: Number of `α` of the automatic grid.
        alphas: Explicit grid (sorted decreasingly before use); `None` for the automatic log
            grid from `α_max = max|Xᵀy| / (n ρ)` ([`alpha_grid`][reglight.linear.alpha_grid]).
        precompute: `"auto"` (Gram matrix when `n_samples > n_features`), `True` or
            `False`.
        coef_init: Starting coefficients for the first `α`.
        tol: Relative tolerance on the optimality (KKT) conditions.
        max_iter: Maximum active-set iterations per `α`.
        dtype: Computation dtype; default: the input's float dtype (float64 for non-floats).
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Returns:
        `(alphas, coefs)` with `coefs` of shape (n_features, n_alphas); NumPy arrays when `X`
        is one, tensors (on `device`) otherwise.

    Raises:
        ValueError: For invalid arguments or shapes.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((50, 4)); y = X @ np.array([1.0, 0.0, -2.0, 0.0])
        >>> alphas, coefs = enet_path(X, y, l1_ratio=0.5, n_alphas=5)
        >>> coefs.shape
        (4, 5)
        >>> bool(np.all(coefs[:, 0] == 0))
        True
    """
    rho = _check_l1_ratio(l1_ratio)
    check_in_range("eps", eps, 0.0, 1.0, low_inclusive=False)
    check_positive_int("n_alphas", n_alphas)
    check_positive("tol", tol)
    check_positive_int("max_iter", max_iter)
    _check_precompute(precompute)
    dt = resolve_dtype(X, dtype)
    Xt = as_matrix("X", X, dt, device)
    n, p = Xt.shape
    yt = as_vector("y", y, n, dt, Xt.device)
    grid = None if alphas is None else as_grid(alphas, dt, Xt.device)
    w0 = None if coef_init is None else as_vector("coef_init", coef_init, p, dt, Xt.device)
    with torch_threads(n_threads), collect("enet_path", tol=tol, max_iter=max_iter):
        grid, coefs = _enet_path(
            Xt,
            yt,
            rho,
            grid,
            n_alphas=n_alphas,
            eps=eps,
            precompute=precompute,
            w0=w0,
            tol=tol,
            max_iter=max_iter,
        )
    return like_input(X, grid), like_input(X, coefs)


def _check_precompute(precompute: Any) -> None:
    """Raise `ValueError` unless `precompute` is `"auto"`, `True` or `False`."""
    if not (precompute == "auto" or precompute is True or precompute is False):
        raise ValueError(f"`precompute` must be 'auto', True or False, got {precompute!r}")


def _enet_path(
    Xt: torch.Tensor,
    yt: torch.Tensor,
    rho: float,
    grid: torch.Tensor | None,
    *,
    n_alphas: int = 100,
    eps: float = 1e-3,
    precompute: bool | str = "auto",
    w0: torch.Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The path on tensors already converted and validated: `(grid, coefs (p, n_alphas))`."""
    n, p = Xt.shape
    use_gram = n > p if precompute == "auto" else bool(precompute)
    oracle: HessianOracle = GramOracle.from_data(Xt, yt) if use_gram else DesignOracle(Xt, yt)
    alpha_max = float(oracle.c.abs().max()) / rho
    if grid is None:
        grid = _grid(alpha_max, n_alphas, eps, Xt.dtype, Xt.device)
    coefs, _ = solve_path(
        oracle,
        grid,
        rho,
        w0=w0,
        alpha_max=alpha_max,
        tol=tol,
        max_iter=max_iter,
        max_active=n if (rho == 1.0 and not use_gram) else None,
    )
    return grid, coefs


def lasso_path(
    X: Any,
    y: Any,
    *,
    eps: float = 1e-3,
    n_alphas: int = 100,
    alphas: Any = None,
    precompute: bool | str = "auto",
    coef_init: Any = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_threads: int | None = 1,
) -> tuple[Any, Any]:
    r"""Lasso regularization path: [`enet_path`][reglight.linear.enet_path] with `l1_ratio=1`.

    $$
    \frac{1}{2n}\lVert y - Xw \rVert_2^2 + \alpha\lVert w\rVert_1
    $$

    Args:
        X: Design matrix (n_samples, n_features), NumPy array or tensor (CPU or GPU).
        y: Targets (n_samples,).
        eps: `α_min / α_max` of the automatic grid.
        n_alphas: Number of `α` of the automatic grid.
        alphas: Explicit grid; `None` for the automatic log grid from `α_max = max|Xᵀy|/n`.
        precompute: `"auto"`, `True` or `False` (see [`enet_path`][reglight.linear.enet_path]).
        coef_init: Starting coefficients for the first `α`.
        tol: Relative tolerance on the optimality (KKT) conditions.
        max_iter: Maximum active-set iterations per `α`.
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Returns:
        `(alphas, coefs)` with `coefs` of shape (n_features, n_alphas).

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([2.0, -1.0])
        >>> alphas, coefs = lasso_path(X, y, alphas=[0.5])
        >>> coefs[:, 0]
        array([1., 0.])
    """
    return enet_path(
        X,
        y,
        l1_ratio=1.0,
        eps=eps,
        n_alphas=n_alphas,
        alphas=alphas,
        precompute=precompute,
        coef_init=coef_init,
        tol=tol,
        max_iter=max_iter,
        dtype=dtype,
        device=device,
        n_threads=n_threads,
    )


Proposal = tuple[torch.Tensor, torch.Tensor]


def _extend(
    oracle: HessianOracle,
    A: torch.Tensor,
    theta: torch.Tensor,
    alphas: torch.Tensor,
    rho: float,
    kkt_tol: float,
    gram: bool,
) -> tuple[int, torch.Tensor | None, torch.Tensor | None, Proposal | None]:
    """Carry an active set `A` with signs `θ` along the next `α` of the grid, all at once.

    On a fixed active set with fixed signs the solution is explicit in `α`:
    `w_A(α) = (H_AA + α(1-ρ)I)⁻¹ (c_A - αρθ)` -- affine in `α` for the lasso (one Cholesky),
    a rational function for the elastic net (one eigendecomposition of `H_AA`). Every grid point
    whose explicit solution keeps the signs and satisfies the KKT conditions of the inactive
    features, `|c_j - H_jA w_A(α)| <= αρ`, is solved exactly without iterating: the discrete
    counterpart of the homotopy/LARS path (Osborne et al. 2000; Efron et al. 2004).

    Returns:
        The number `m` of leading grid points solved, their active coefficients (|A|, m), the
        residual correlations at the last of them and, when the grid continues past them, a
        proposal `(A', θ')` for the first failing point: the coefficients that changed sign
        leave, the features that violate their KKT condition enter with the sign of their
        correlation (`None` if there is nothing to propose).
    """
    k = A.shape[0]
    if k == 0:
        return 0, None, None, None
    QAA = oracle.block(A)
    cA = oracle.c[A]
    if rho == 1.0:
        try:
            L = torch.linalg.cholesky(QAA)
        except torch.linalg.LinAlgError:  # singular active block: no explicit solution
            return 0, None, None, None
        uv = torch.cholesky_solve(torch.stack([cA, theta], 1), L)
        W = uv[:, :1] - uv[:, 1:] * alphas
        Huv = oracle.hess_cols(A, uv)
        corr = (oracle.c - Huv[:, 0]).unsqueeze(1) + Huv[:, 1:] * alphas
    else:
        if not gram or k > 128:
            return 0, None, None, None
        lam, V = torch.linalg.eigh(QAA)
        D = ((V.T @ cA).unsqueeze(1) - rho * (V.T @ theta).unsqueeze(1) * alphas) / (
            lam.unsqueeze(1) + (1.0 - rho) * alphas
        )
        W = V @ D
        corr = oracle.c.unsqueeze(1) - oracle.hess_cols(A, W)
    signs_ok = W * theta.unsqueeze(1) > 0
    inactive = torch.ones_like(oracle.c, dtype=torch.bool)
    inactive[A] = False
    kkt_bad = (corr.abs() > rho * alphas + kkt_tol) & inactive.unsqueeze(1)
    ok = signs_ok.all(0) & ~kkt_bad.any(0)
    m = int(ok.to(torch.int32).cumprod(0).sum())
    proposal = None
    if m < alphas.shape[0]:
        keep = signs_ok[:, m]
        enter = kkt_bad[:, m].nonzero().squeeze(1)
        newA, order = torch.cat([A[keep], enter]).sort()
        if newA.numel() > 0:
            proposal = (newA, torch.cat([theta[keep], corr[enter, m].sign()])[order])
    if m == 0:
        return 0, None, None, proposal
    return m, W[:, :m], corr[:, m - 1], proposal


def _kkt_violation(corr: torch.Tensor, w: torch.Tensor, lam1: float, lam2: float) -> float:
    """Largest violation of the elastic-net optimality conditions, `corr = c - Hw` (gradient units)."""
    nz = w != 0
    res = torch.where(
        nz, (corr - lam2 * w - lam1 * w.sign()).abs(), (corr.abs() - lam1).clamp_min(0.0)
    )
    return float(res.max()) if res.numel() else 0.0


def solve_path(
    oracle: HessianOracle,
    alphas: torch.Tensor,
    l1_ratio: float,
    *,
    w0: torch.Tensor | None = None,
    alpha_max: float | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
    max_active: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Solve the elastic-net problems of a decreasing grid with screening and a KKT check.

    Args:
        oracle: Access to `XᵀX/n` and the residual correlations.
        alphas: Decreasing grid (n_alphas,).
        l1_ratio: Mixing `ρ` in (0, 1].
        w0: Warm start for the first `α` (zeros when `None`).
        alpha_max: `max|Xᵀy|/(nρ)`; the "previous α" of the first strong rule.
        tol: Relative KKT tolerance.
        max_iter: Active-set iterations per `α`.
        max_active: Bound on the useful number of nonzeros (`n_samples` for a lasso with
            `n_features >= n_samples`).

    Returns:
        `(coefs, n_iter)`: the coefficients (n_features, n_alphas) and the number of iterations,
        active-set iterations plus one per optimality check on all features.
    """
    c = oracle.c
    n_iter = 0
    p = oracle.n_features
    rho = l1_ratio
    gram = isinstance(oracle, GramOracle)
    w = c.new_zeros(p) if w0 is None else w0.clone()
    A = (w != 0).nonzero().squeeze(1)
    corr = oracle.corr(A, w[A])
    ever = w != 0
    prev = float(alpha_max) if alpha_max is not None else float(corr.abs().max()) / rho
    n_alphas = alphas.shape[0]
    out = c.new_zeros(p, n_alphas)
    grid = alphas.tolist()
    kkt_tol = max(tol, 8.0 * torch.finfo(c.dtype).eps) * max(float(c.abs().max()), 1e-300)
    backoff = skip = 0
    # Grid points tried per closed-form extension: all of them with a Gram matrix (cheap), an
    # adaptive window otherwise (each point costs a pass over the n_features correlations).
    min_window = n_alphas if gram else 8
    window = min_window
    i = 0
    while i < n_alphas:
        alpha = grid[i]
        lam1 = alpha * rho
        lam2 = alpha * (1.0 - rho)
        # Sequential strong rule; "ever active" features always stay in the working set.
        work = (corr.abs() >= rho * (2.0 * alpha - prev)) | ever
        if lam1 == 0.0:
            work = torch.ones_like(work)
        capped = False
        while True:
            W = work.nonzero().squeeze(1)
            if W.numel() == 0:
                w.zero_()
                A = W
                corr = c.clone()
            else:
                G, cols = oracle.locate(W)
                l1 = torch.full((W.shape[0],), lam1, dtype=c.dtype, device=c.device)
                wW, k = solve_l1_qp(
                    G,
                    c[W],
                    l1,
                    w[W],
                    l2=lam2,
                    cols=cols,
                    tol=tol,
                    max_iter=max_iter,
                    max_active=max_active,
                )
                n_iter += k
                capped = k >= max_iter
                w.zero_()
                w[W] = wW
                A = W[wW != 0]
                corr = oracle.corr(A, w[A])
            n_iter += 1
            violators = ~work & (corr.abs() > lam1 + kkt_tol)
            if not bool(violators.any()):
                break
            work |= violators
        if capped:  # the active-set iterations ran out: is the solution still off?
            violation = _kkt_violation(corr, w, lam1, lam2)
            if violation > kkt_tol:
                record(violation, kkt_tol)
        ever |= w != 0
        out[:, i] = w
        prev = alpha
        i += 1
        if i == n_alphas or A.numel() == 0 or lam1 == 0.0:
            continue
        if skip > 0:
            skip -= 1
            continue
        # Follow the path in closed form: accept what the current active set explains, then try
        # the active set proposed by the first failure, until a proposal explains nothing.
        theta = w[A].sign()
        accepted = False
        attempts = 0
        while i < n_alphas:
            span = min(n_alphas - i, window)
            m, WA, corr_m, proposal = _extend(
                oracle, A, theta, alphas[i : i + span], rho, kkt_tol, gram
            )
            if m > 0:
                assert WA is not None and corr_m is not None
                accepted = True
                out[A, i : i + m] = WA
                w.zero_()
                w[A] = WA[:, -1]
                ever[A] = True
                corr = corr_m
                i += m
                prev = grid[i - 1]
            elif attempts > 0:
                break  # the proposed active set explains nothing: back to the exact solver
            if m == span:  # the whole window holds: look further ahead next time
                window *= 2
                continue
            window = max(min_window, 2 * m)
            if proposal is None:
                break
            A, theta = proposal
            attempts += 1
        if accepted:
            backoff = 0
        else:
            backoff = min(2 * backoff + 1, 8)
            skip = backoff
    if not math.isfinite(float(out.abs().sum())):  # pragma: no cover - defensive
        raise FloatingPointError("the path solver produced non-finite coefficients")
    return out, n_iter
