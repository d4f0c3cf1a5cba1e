r"""Exact active-set solver for an L1-penalized convex quadratic (the kernel of every solver here).

Problem, for a symmetric positive semi-definite `Q` (k x k), `b` (k,), weights `l1 >= 0` and
`l2 >= 0`:

$$
\min_w\; F(w) = \tfrac12 w^\top Q w + \tfrac12 \sum_j l_{2,j} w_j^2 - b^\top w + \sum_j l_{1,j} |w_j|
$$

(`l1_j = l2_j = 0` leaves coordinate `j` unpenalized, e.g. an intercept). `Q` may be given as
a sub-block `G[cols][:, cols]` of a larger matrix `G` (a cached Gram matrix): only the blocks an
iteration needs are gathered.

Algorithm: the *feature-sign search* of Lee, Battle, Raina & Ng (2007, "Efficient sparse coding
algorithms"), an active-set Newton method. Guess the active set `A` and the signs `θ` of the
solution; on that orthant `F` is a quadratic whose minimizer solves `(Q_AA + diag(l2_A)) x =
b_A - l1_A θ_A` exactly (Cholesky). Move from the current point towards `x` with a discrete line
search on the true objective (the end point and every zero crossing on the segment are candidates),
which drops coordinates that reach zero. Once the nonzero coefficients are optimal for their sign
pattern, the zero coordinates violating `|g_j| <= l1_j` (`g` the gradient of the smooth part)
join, the worst first. Every iteration lowers `F`; when no coordinate violates the optimality
conditions `w` is optimal to machine precision, unlike coordinate descent, which stops at a
tolerance. Warm-started along a regularization path the active set rarely changes, so most problems
take one linear solve.
"""

from __future__ import annotations

import torch

__all__ = ["solve_l1_qp", "spd_solve"]


def spd_solve(A: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve `A x = rhs` for a symmetric positive semi-definite `A` by Cholesky.

    A singular `A` (duplicate features, more active features than samples) gets a growing diagonal
    jitter, starting at `1e-12 * mean(diag(A))`; the caller's line search on the true objective
    keeps every step a descent step, so an approximate direction is harmless.

    Examples:
        >>> import torch
        >>> spd_solve(torch.tensor([[2.0, 0.0], [0.0, 4.0]]), torch.tensor([2.0, 2.0]))
        tensor([1.0000, 0.5000])
    """
    # `torch.linalg.cholesky` rather than `cholesky_ex`: the latter is ~1000x slower on small
    # matrices with several intra-op threads on a loaded CPU (measured with torch 2.x).
    try:
        L = torch.linalg.cholesky(A)
    except torch.linalg.LinAlgError:
        scale = float(A.diagonal().abs().mean()) or 1.0
        eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
        jitter = 1e-12 * scale
        for _ in range(12):
            try:
                L = torch.linalg.cholesky(A + jitter * eye)
                break
            except torch.linalg.LinAlgError:
                jitter *= 100.0
        else:
            return torch.linalg.lstsq(A, rhs.unsqueeze(-1)).solution.squeeze(-1)
    return torch.cholesky_solve(rhs.unsqueeze(-1), L).squeeze(-1)


def _line_search(
    wA: torch.Tensor,
    d: torch.Tensor,
    gA: torch.Tensor,
    QA: torch.Tensor,
    l1A: torch.Tensor,
) -> tuple[float, torch.Tensor | None, float]:
    """Feature-sign discrete line search on the segment `w + t d`, `t` in (0, 1].

    Candidates are the end point `t = 1` (the Newton point) and every `t` where a nonzero
    coordinate crosses zero; the true objective is evaluated at all of them at once,
    `ΔF(t) = t gᵀd + t²/2 dᵀQd + Σ_i l1_i (|w_i + t d_i| - |w_i|)`, and the lowest wins.
    Landing on a crossing point zeroes that coordinate, so the active set shrinks.

    Returns:
        `t*`, the positions (in A) of the coordinates that are zero at `t*` (or `None`) and
        the objective change `ΔF(t*)`.
    """
    q1 = torch.dot(gA, d)
    q2 = torch.dot(d, QA @ d)
    cross = ((wA * d) < 0) & (l1A > 0)
    pos = cross.nonzero().squeeze(1)
    tb = -wA[pos] / d[pos]
    keep = tb < 1.0
    pos, tb = pos[keep], tb[keep]
    t = torch.cat([tb, tb.new_ones(1)])
    l1_change = (l1A * ((wA + t[:, None] * d).abs() - wA.abs())).sum(1)
    delta = t * q1 + 0.5 * t * t * q2 + l1_change
    k = int(delta.argmin())
    best_t = float(t[k])
    if k < tb.shape[0]:
        return best_t, pos[tb == tb[k]], float(delta[k])
    return best_t, None, float(delta[k])


def solve_l1_qp(
    G: torch.Tensor,
    b: torch.Tensor,
    l1: torch.Tensor,
    w: torch.Tensor,
    *,
    l2: torch.Tensor | float = 0.0,
    cols: torch.Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 500,
    max_active: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Minimize `1/2 wᵀQw + 1/2 Σ l2_j w_j² - bᵀw + Σ_j l1_j |w_j|` exactly, warm-started at `w`.

    Feature-sign search: Newton steps on the current sign pattern (with the discrete line search
    that drops coordinates reaching zero) until the nonzero coefficients are optimal for their
    pattern; then the zero coordinates violating `|g_j| <= l1_j` join, the worst first and at
    most `max(10, nnz)` at a time (the active set at most doubles per round).

    Args:
        G: Symmetric positive semi-definite matrix; `Q = G` or `Q = G[cols][:, cols]`.
        b: Linear term (k,).
        l1: Per-coordinate L1 weights (k,), `>= 0`; zero leaves a coordinate unpenalized.
        w: Starting point (k,); not modified.
        l2: Ridge weight, a float or per-coordinate weights (k,).
        cols: Positions in `G` of the k coordinates, or `None` when `Q = G`.
        tol: Optimality tolerance on the subgradient conditions, relative to `max|b|`.
        max_iter: Maximum number of active-set (Newton) iterations.
        max_active: Rank bound on the number of nonzeros worth adding (`n_samples` for a lasso
            with more features than samples); `None` for no bound.

    Returns:
        The solution and the number of iterations used.

    Examples:
        The lasso with an orthonormal design is soft thresholding, `w_j = sign(b_j)(|b_j| - l1_j)_+`:

        >>> import torch
        >>> w, _ = solve_l1_qp(
        ...     torch.eye(3, dtype=torch.float64),
        ...     torch.tensor([2.0, -0.5, -3.0], dtype=torch.float64),
        ...     torch.ones(3, dtype=torch.float64),
        ...     torch.zeros(3, dtype=torch.float64),
        ... )
        >>> w
        tensor([ 1.,  0., -2.], dtype=torch.float64)
    """
    k = b.shape[0]
    l2v = l2 if isinstance(l2, torch.Tensor) else None
    l2s = 0.0 if isinstance(l2, torch.Tensor) else float(l2)

    def cols_of(idx: torch.Tensor) -> torch.Tensor:
        return G[:, idx] if cols is None else G[cols.unsqueeze(1), cols[idx]]

    def block(idx: torch.Tensor) -> torch.Tensor:
        ci = idx if cols is None else cols[idx]
        Q = G[ci.unsqueeze(1), ci]
        if l2v is not None:
            Q = Q + torch.diag(l2v[idx])
        elif l2s != 0.0:
            Q = Q + l2s * torch.eye(idx.shape[0], dtype=Q.dtype, device=Q.device)
        return Q

    def grad(idx: torch.Tensor, wA: torch.Tensor) -> torch.Tensor:
        g = cols_of(idx) @ wA - b if idx.numel() else -b
        return g + (l2v * w if l2v is not None else l2s * w)

    w = w.clone()
    nzi = (w != 0).nonzero().squeeze(1)
    g = grad(nzi, w[nzi])
    eps = torch.finfo(b.dtype).eps
    scale = float(b.abs().max()) if k else 0.0
    atol = max(tol, 8.0 * eps) * max(scale, float(l1.max()) if k else 0.0, 1e-300)
    neg_inf = g.new_full((), float("-inf"))
    settled = False  # the nonzero coefficients are optimal for their own sign pattern
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        nz = w != 0
        nnz = int(nz.sum())
        if not settled:
            res = torch.where(nz, (g + l1 * w.sign()).abs(), torch.zeros_like(g))
            settled = nnz == 0 or float(res.max()) <= atol
        add = None
        if settled:
            score = torch.where(nz, neg_inf, g.abs() - l1)
            n_viol = int((score > atol).sum())
            if n_viol == 0:
                return w, n_iter - 1
            m = min(n_viol, max(10, nnz))
            if max_active is not None:
                m = max(1, min(m, max_active - nnz))
            add = torch.topk(score, m).indices
            nz = nz.clone()
            nz[add] = True
        idx = nz.nonzero().squeeze(1)
        wA = w[idx]
        gA = g[idx]
        l1A = l1[idx]
        theta = torch.where(wA != 0, wA.sign(), -gA.sign())
        QA = block(idx)
        x = spd_solve(QA, b[idx] - l1A * theta)
        consistent = bool(((x * theta > 0) | (l1A == 0)).all())
        if consistent:
            step = x - wA
            w[idx] = x
        else:
            d = x - wA
            t, hit, delta = _line_search(wA, d, gA, QA, l1A)
            if not delta < 0.0:
                if add is None:
                    return w, n_iter  # no descent left at the precision of the linear algebra
                # Some added feature points the wrong way: one exact coordinate step on the
                # worst violator instead, which always descends.
                j = add[:1]
                gj = float(g[j])
                qjj = float(block(j)[0, 0])
                w[j] = -(abs(gj) - float(l1[j])) * (1.0 if gj > 0 else -1.0) / qjj
                nzi = (w != 0).nonzero().squeeze(1)
                g = grad(nzi, w[nzi])
                settled = False
                continue
            step = t * d
            newA = wA + step
            if hit is not None:
                newA[hit] = 0.0
            w[idx] = newA
        settled = consistent
        nzi = idx[w[idx] != 0]
        g = grad(nzi, w[nzi])
        tiny = float(step.abs().max()) <= 4.0 * eps * max(float(w.abs().max()), 1e-300)
        if tiny and (not settled or add is None):
            return w, n_iter  # stalled at the precision the linear algebra allows
    return w, n_iter
