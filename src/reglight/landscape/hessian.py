"""Curvature of the loss: Hessian-vector products, top eigenvalues, trace and spectral density.

Every function takes `model`, `loss_fn(model, batch) -> scalar` and `batches`; the loss is the mean of
`loss_fn` over the batches (and over processes, with `reduce`), and the Hessian is taken with respect to the
parameters selected by `include`/`exclude` (default: every parameter with `requires_grad`). The model is
left exactly as found (see [`preserved`][reglight.landscape.preserved]).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reglight._validation import check_choice, check_positive, check_positive_int
from reglight.landscape._core import (
    LossFn,
    Objective,
    Patterns,
    Reduce,
    prepare,
    preserved,
)

__all__ = [
    "EigenResult",
    "SpectralDensity",
    "TraceResult",
    "hessian_trace",
    "hvp",
    "spectral_density",
    "top_eigenvalues",
]


# --------------------------------------------------------------------------------------------------
# Hessian-vector products
# --------------------------------------------------------------------------------------------------
def _check_vectors(obj: Objective, vectors: Any) -> list[Tensor]:
    if isinstance(vectors, Tensor) or not isinstance(vectors, Sequence):
        raise TypeError(
            "`vectors` must be a list of tensors shaped like the selected parameters "
            f"({len(obj.params)} tensors), got {type(vectors).__name__}"
        )
    if len(vectors) != len(obj.params):
        raise ValueError(
            f"`vectors` must hold one tensor per selected parameter ({len(obj.params)}: "
            f"{', '.join(obj.names[:5])}{', ...' if len(obj.names) > 5 else ''}), got {len(vectors)}"
        )
    out = []
    for v, p, name in zip(vectors, obj.params, obj.names, strict=True):
        if not isinstance(v, Tensor) or v.shape != p.shape:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(
                f"`vectors` entry for parameter {name!r} must have shape {tuple(p.shape)}, got {shape}"
            )
        out.append(v.detach().to(device=p.device, dtype=p.dtype))
    return out


def hvp(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    vectors: Sequence[Tensor],
    *,
    method: str = "auto",
    include: Patterns = None,
    exclude: Patterns = None,
    train_mode: bool = False,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> list[Tensor]:
    """The Hessian-vector product $Hv$ of the mean loss, $H = \\nabla^2_\\theta L(\\theta)$.

    $L(\\theta) = \\frac1N \\sum_{b} \\ell(\\theta; b)$ is the mean of `loss_fn` over the batches (of all
    processes, with `reduce`). Two exact methods (Pearlmutter 1994):

    - `"double_backward"`: $Hv = \\nabla_\\theta (\\nabla_\\theta L \\cdot v)$, reverse over reverse; with a
      single batch, the graph of the gradient is built once and reused by the next products of the same
      call;
    - `"forward_over_reverse"`: the directional derivative of the gradient, `torch.func.jvp` over
      `torch.func.grad` with `functional_call`.

    `"auto"` picks double backward, which measured faster on CPU for convolutional and MLP models
    (`benchmarks/bench_landscape.py`).

    Args:
        model: The model.
        loss_fn: `loss_fn(model, batch) -> scalar Tensor`.
        batches: An iterable of batches (a list, a DataLoader); the loss is the mean over them.
        vectors: One tensor per selected parameter, shaped like it.
        method: `"auto"`, `"double_backward"` or `"forward_over_reverse"`.
        include: Parameters to differentiate with respect to (default: every one with `requires_grad`).
        exclude: Parameters to leave out.
        train_mode: Batch norm uses batch statistics (running statistics untouched); dropout stays off.
        generator: Unused (no randomness); accepted so every landscape function takes the same keywords.
        reduce: Sums a tensor over processes (data parallelism); `None` for one process.

    Returns:
        $Hv$ as one tensor per selected parameter.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 1, bias=False)
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> loss_fn = lambda m, b: 0.5 * m(b).pow(2).sum()  # H = x^T x = diag(1, 4)
        >>> hvp(model, loss_fn, [x], [torch.ones(1, 2)])
        [tensor([[1., 4.]])]
    """
    named, batch_list = prepare(
        model, loss_fn, batches, include, exclude, generator, reduce, method
    )
    with preserved(model, train_mode=train_mode):
        obj = Objective(model, loss_fn, batch_list, named, reduce, method)
        vs = _check_vectors(obj, vectors)
        return [h.detach() for h in obj.hvp(vs)]


# --------------------------------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------------------------------
def _tridiagonal(alphas: Sequence[float], betas: Sequence[float]) -> Tensor:
    a = torch.tensor(alphas, dtype=torch.float64)
    t = torch.diag(a)
    if len(alphas) > 1:
        b = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        t += torch.diag(b, 1) + torch.diag(b, -1)
    return t


def _ritz_error_bounds(
    alphas: Sequence[float], betas: Sequence[float], beta: float
) -> tuple[Tensor, Tensor]:
    """Ritz values (descending) of the tridiagonal matrix and the a-posteriori bounds of their errors.

    After $m$ steps, $H Q_m = Q_m T_m + \\beta_m q_{m+1} e_m^\\top$; a Ritz pair $(\\theta_i, Q_m s_i)$ of
    $T_m = S \\Theta S^\\top$ has the residual norm $r_i = \\lVert H Q_m s_i - \\theta_i Q_m s_i \\rVert =
    \\beta_m |s_{m,i}|$, so an eigenvalue lies within $r_i$ of $\\theta_i$, and within $r_i^2 / \\delta_i$
    when it is the only one closer than $\\delta_i$ (Kato 1949; Temple 1929; Parlett 1998, §11.7). The gap
    $\\delta_i$ is estimated from the other Ritz values, $\\delta_i = \\min_{l \\ne i} (|\\theta_i - \\theta_l|
    - r_l)$; the bound is $\\min(r_i, r_i^2 / \\delta_i)$ ($r_i$ alone when $\\delta_i \\le 0$ or $m = 1$).
    """
    evals, evecs = torch.linalg.eigh(_tridiagonal(alphas, betas))
    evals, evecs = evals.flip(0), evecs.flip(1)
    resid = abs(beta) * evecs[-1].abs()
    bound = resid.clone()
    m = evals.numel()
    if m > 1:
        dist = (evals[:, None] - evals[None, :]).abs() - resid[None, :]
        dist.fill_diagonal_(math.inf)
        gap = dist.min(dim=1).values
        ok = gap > 0
        bound[ok] = torch.minimum(resid[ok], resid[ok] ** 2 / gap[ok])
    return evals, bound


def _ritz_converged(
    alphas: Sequence[float], betas: Sequence[float], beta: float, k: int, tol: float
) -> bool:
    """Whether the top `k` Ritz values are within `tol` relatively of eigenvalues, by their bounds.

    True when $\\min(r_i, r_i^2/\\delta_i) \\le \\mathrm{tol}\\,|\\theta_i|$ for every $i \\le k$ (see
    `_ritz_error_bounds`). Only the tridiagonal matrix and the last $\\beta$ enter, which come from
    reduced Hessian-vector products: every process decides alike.
    """
    if len(alphas) < k:
        return False
    evals, bound = _ritz_error_bounds(alphas, betas, beta)
    return bool((bound[:k] <= tol * evals[:k].abs()).all())


@dataclass
class _Lanczos:
    basis: Tensor  # (m, n) orthonormal Lanczos vectors
    alphas: list[float]
    betas: list[float]
    converged: bool


def _lanczos(
    obj: Objective,
    v0: Tensor,
    max_iter: int,
    *,
    k: int | None = None,
    tol: float = 0.0,
    restart: torch.Generator | None = None,
) -> _Lanczos:
    """Lanczos with full reorthogonalization (classical Gram-Schmidt, twice) from `v0`.

    With `k`, stops once the error bounds of the top `k` Ritz values are below `tol` relatively (see
    `_ritz_converged`).
    With `restart`, an invariant subspace found before `max_iter` steps does not end the iteration: it
    goes on from a new random vector orthogonal to the basis (a zero off-diagonal entry), since the top
    eigenvalues may lie outside the subspace the start vector spans.
    All decisions use quantities computed from reduced Hessian-vector products, so every process takes
    them identically.
    """
    n = obj.dim
    m = min(max_iter, n)
    basis = torch.empty(m, n, dtype=obj.dtype, device=obj.device)
    basis[0] = v0 / torch.linalg.vector_norm(v0)
    alphas: list[float] = []
    betas: list[float] = []
    converged = False
    for j in range(m):
        w = obj.matvec(basis[j])
        alpha = torch.dot(w, basis[j])
        w = w - alpha * basis[j]
        if j > 0:
            w = w - betas[-1] * basis[j - 1]
        q = basis[: j + 1]
        for _ in range(2):
            w = w - q.T @ (q @ w)
        beta = torch.linalg.vector_norm(w)
        alphas.append(float(alpha))
        b = float(beta)
        if k is not None and j + 1 >= k and _ritz_converged(alphas, betas, b, k, tol):
            return _Lanczos(basis[: j + 1], alphas, betas, True)
        scale = max(abs(a) for a in alphas) + max(betas, default=0.0)
        exhausted = b <= 1e-10 * max(scale, 1e-30)
        if exhausted and restart is not None and j + 1 < m:
            w = obj.rademacher(restart)
            for _ in range(2):
                w = w - q.T @ (q @ w)
            beta = torch.linalg.vector_norm(w)
            b = 0.0  # the tridiagonal matrix splits into blocks
            exhausted = float(beta) <= 1e-6 * math.sqrt(n)
        if j + 1 == m or exhausted or not math.isfinite(b):
            converged = j + 1 == n or exhausted
            return _Lanczos(basis[: j + 1], alphas, betas, converged)
        betas.append(b)
        basis[j + 1] = w / beta
    return _Lanczos(basis, alphas, betas, converged)  # pragma: no cover (loop always returns)


# --------------------------------------------------------------------------------------------------
# top eigenvalues
# --------------------------------------------------------------------------------------------------
@dataclass
class EigenResult:
    """The top eigenpairs of the Hessian.

    Attributes:
        eigenvalues: The `k` largest eigenvalues, descending, shape `(k,)`, float64 on the CPU.
        eigenvectors: `k` unit eigenvectors (over all selected parameters together), each a list of
            tensors shaped like the selected parameters.
        n_iter: Iterations (Lanczos steps, or power iterations over all eigenvalues).
        n_hvp: Hessian-vector products computed.
        converged: Whether the stopping rule was met before `max_iter`.
    """

    eigenvalues: Tensor
    eigenvectors: list[list[Tensor]]
    n_iter: int
    n_hvp: int
    converged: bool


def top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    k: int = 1,
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    method: str = "lanczos",
    hvp_method: str = "auto",
    include: Patterns = None,
    exclude: Patterns = None,
    train_mode: bool = False,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> EigenResult:
    """The `k` largest eigenvalues of the Hessian of the mean loss, and their eigenvectors.

    - `"lanczos"` (default): the Lanczos iteration (Lanczos 1950) with full reorthogonalization from a
      random Rademacher start; stops when the a-posteriori error bound of every one of the top `k` Ritz
      values $\\theta_i$ is below `tol` relatively, $\\min(r_i, r_i^2/\\delta_i) \\le tol\\,|\\theta_i|$, with
      $r_i = \\beta_m |s_{m,i}|$ the Ritz vector's residual norm (last off-diagonal entry times the last
      coordinate of the Ritz vector in the Krylov basis) and $\\delta_i$ the gap to the other Ritz values
      (Kato-Temple; Parlett 1998, §11.7): no extra step confirms convergence, as the relative change
      between two steps would need. It keeps `max_iter` vectors of the size of the selected parameters
      in memory. Returns the largest eigenvalues in the algebraic order.
    - `"power"`: power iteration with deflation, as PyHessian (Yao et al. 2020) does: each eigenvector in
      turn, orthogonalized against the previous ones, stopped when the Rayleigh quotient changes by less
      than `tol` relatively; `max_iter` per eigenvalue. It finds the eigenvalues of largest *magnitude*,
      which differ from the largest ones when the Hessian has large negative eigenvalues.

    On the benchmark models Lanczos reaches the same accuracy with several times fewer Hessian-vector
    products (see the documentation's benchmark table).

    Args:
        model: The model.
        loss_fn: `loss_fn(model, batch) -> scalar Tensor`.
        batches: An iterable of batches; the loss is the mean over them.
        k: How many eigenvalues, at least 1.
        max_iter: Most Lanczos steps (or power iterations per eigenvalue).
        tol: Relative accuracy of the eigenvalues: Lanczos stops when their error bounds are below
            `tol` times their magnitude; power iteration when the Rayleigh quotient changes by less than
            `tol` relatively.
        method: `"lanczos"` or `"power"`.
        hvp_method: How Hessian-vector products are computed (see [`hvp`][reglight.landscape.hvp]).
        include: Parameters to differentiate with respect to (default: every one with `requires_grad`).
        exclude: Parameters to leave out.
        train_mode: Batch norm uses batch statistics (running statistics untouched); dropout stays off.
        generator: Source of the random start (the global RNG is not touched when given); under data
            parallelism it must be seeded alike on every process.
        reduce: Sums a tensor over processes (data parallelism); `None` for one process.

    Returns:
        An [`EigenResult`][reglight.landscape.EigenResult].

    Raises:
        ValueError: If `k` is not a positive integer or exceeds the number of selected parameters, or
            another argument is out of range.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(3, 1, bias=False)
        >>> x = torch.diag(torch.tensor([1.0, 2.0, 3.0]))
        >>> loss_fn = lambda m, b: 0.5 * m(b).pow(2).sum()  # H = x^T x = diag(1, 4, 9)
        >>> res = top_eigenvalues(model, loss_fn, [x], k=2, generator=torch.Generator().manual_seed(0))
        >>> [round(float(v), 4) for v in res.eigenvalues]
        [9.0, 4.0]
    """
    check_positive_int("k", k)
    check_positive_int("max_iter", max_iter)
    check_positive("tol", tol)
    check_choice("method", method, ("lanczos", "power"))
    named, batch_list = prepare(
        model, loss_fn, batches, include, exclude, generator, reduce, hvp_method
    )
    dim = sum(p.numel() for _, p in named)
    if k > dim:
        raise ValueError(f"`k` must be at most the number of selected parameters ({dim}), got {k}")
    with preserved(model, train_mode=train_mode):
        obj = Objective(model, loss_fn, batch_list, named, reduce, hvp_method)
        gen = obj.common_generator(generator)
        if method == "lanczos":
            lz = _lanczos(obj, obj.rademacher(gen), max(max_iter, k + 1), k=k, tol=tol, restart=gen)
            t = _tridiagonal(lz.alphas, lz.betas)
            evals, evecs = torch.linalg.eigh(t)
            order = torch.argsort(evals, descending=True)[:k]
            values = evals[order]
            vectors = (evecs[:, order].T.to(obj.dtype).to(obj.device)) @ lz.basis
            n_iter = len(lz.alphas)
            converged = lz.converged
        else:
            values_list: list[float] = []
            found: list[Tensor] = []
            n_iter, converged = 0, True
            for _ in range(k):
                v = obj.rademacher(gen)
                lam_old: float | None = None
                lam = 0.0
                done = False
                for _ in range(max_iter):
                    for u in found:
                        v = v - torch.dot(v, u) * u
                    v = v / torch.linalg.vector_norm(v)
                    hv = obj.matvec(v)
                    n_iter += 1
                    lam = float(torch.dot(hv, v))
                    v = hv
                    if lam_old is not None and abs(lam - lam_old) / (abs(lam_old) + 1e-6) < tol:
                        done = True
                        break
                    lam_old = lam
                for u in found:
                    v = v - torch.dot(v, u) * u
                found.append(v / torch.linalg.vector_norm(v))
                values_list.append(lam)
                converged = converged and done
            values = torch.tensor(values_list, dtype=torch.float64)
            order = torch.argsort(values, descending=True)
            values = values[order]
            vectors = torch.stack([found[int(i)] for i in order])
        return EigenResult(
            eigenvalues=values.to(torch.float64).cpu(),
            eigenvectors=[[t.clone() for t in obj.split(v)] for v in vectors],
            n_iter=n_iter,
            n_hvp=obj.n_hvp,
            converged=converged,
        )


# --------------------------------------------------------------------------------------------------
# trace
# --------------------------------------------------------------------------------------------------
@dataclass
class TraceResult:
    """Hutchinson's estimate of the Hessian's trace.

    Attributes:
        trace: The estimate: the mean of $v^\\top H v$ over the samples (plus `low_rank` with a sketch).
        std_error: Its standard error, $s/\\sqrt{n}$ with $s$ the samples' standard deviation.
        n_samples: Rademacher vectors used.
        samples: The values $v_i^\\top H v_i$, float64 on the CPU.
        low_rank: $\\operatorname{tr}(Q^\\top H Q)$ of the Hutch++ sketch (0 without one).
        n_hvp: Hessian-vector products computed.
    """

    trace: float
    std_error: float
    n_samples: int
    samples: Tensor
    low_rank: float = 0.0
    n_hvp: int = 0


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    n_samples: int = 100,
    *,
    tol: float = 1e-2,
    min_samples: int = 10,
    sketch: int = 0,
    hvp_method: str = "auto",
    include: Patterns = None,
    exclude: Patterns = None,
    train_mode: bool = False,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> TraceResult:
    """Hutchinson's estimate of the trace of the Hessian of the mean loss (Hutchinson 1990).

    $\\operatorname{tr} H = \\mathbb E[v^\\top H v]$ for Rademacher $v$ (independent $\\pm 1$ entries);
    the estimate is the mean of $v_i^\\top H v_i$ over $n$ samples and its standard error is
    $s / \\sqrt n$. Sampling stops after `n_samples` vectors, or earlier, once at least `min_samples` were
    drawn, when the standard error falls below `tol` times the estimate's magnitude.

    With `sketch=s > 0` the estimator is Hutch++ (Meyer, Musco, Musco & Woodruff 2021): $2s$ products give
    an orthonormal basis $Q$ of $H S$ ($S$: $s$ Rademacher vectors) and the exact $\\operatorname{tr}(Q^\\top
    H Q)$; Hutchinson then only estimates the trace of the deflated $(I - QQ^\\top) H (I - QQ^\\top)$,
    whose variance is much smaller when a few eigenvalues dominate $\\lVert H\\rVert_F$, as they usually do
    for trained networks. `samples` and `std_error` are those of the deflated part.

    Args:
        model: The model.
        loss_fn: `loss_fn(model, batch) -> scalar Tensor`.
        batches: An iterable of batches; the loss is the mean over them.
        n_samples: Most Rademacher vectors.
        tol: Relative standard error that stops sampling early (`0` never stops early).
        min_samples: Vectors drawn before the early stop is considered (at least 2).
        sketch: Rank $s$ of the Hutch++ deflation; `0` (default) is plain Hutchinson.
        hvp_method: How Hessian-vector products are computed (see [`hvp`][reglight.landscape.hvp]).
        include: Parameters to differentiate with respect to (default: every one with `requires_grad`).
        exclude: Parameters to leave out.
        train_mode: Batch norm uses batch statistics (running statistics untouched); dropout stays off.
        generator: Source of the random vectors (the global RNG is not touched when given); under data
            parallelism it must be seeded alike on every process.
        reduce: Sums a tensor over processes (data parallelism); `None` for one process.

    Returns:
        A [`TraceResult`][reglight.landscape.TraceResult].

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(3, 1, bias=False)
        >>> x = torch.diag(torch.tensor([1.0, 2.0, 3.0]))
        >>> loss_fn = lambda m, b: 0.5 * m(b).pow(2).sum()  # diagonal H: every sample is exact
        >>> res = hessian_trace(model, loss_fn, [x], n_samples=5, generator=torch.Generator().manual_seed(0))
        >>> res.trace, res.std_error, res.n_samples
        (14.0, 0.0, 5)
    """
    check_positive_int("n_samples", n_samples)
    check_positive_int("min_samples", min_samples, minimum=2)
    check_positive_int("sketch", sketch, minimum=0)
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol >= 0:
        raise ValueError(f"`tol` must be a number >= 0, got {tol!r}")
    named, batch_list = prepare(
        model, loss_fn, batches, include, exclude, generator, reduce, hvp_method
    )
    with preserved(model, train_mode=train_mode):
        obj = Objective(model, loss_fn, batch_list, named, reduce, hvp_method)
        gen = obj.common_generator(generator)
        low_rank = 0.0
        basis: Tensor | None = None
        if sketch:
            rank = min(sketch, obj.dim)
            sketched = torch.stack([obj.matvec(obj.rademacher(gen)) for _ in range(rank)], dim=1)
            basis = torch.linalg.qr(sketched.double(), mode="reduced")[0].to(obj.dtype)
            low_rank = sum(float(torch.dot(q, obj.matvec(q))) for q in basis.T.contiguous())
        samples: list[float] = []
        for i in range(n_samples):
            v = obj.rademacher(gen)
            if basis is not None:
                v = v - basis @ (basis.T @ v)
            samples.append(float(torch.dot(v, obj.matvec(v))))
            if tol > 0 and i + 1 >= min_samples:
                t = torch.tensor(samples, dtype=torch.float64)
                se = float(t.std() / math.sqrt(len(samples)))
                if se <= tol * abs(low_rank + float(t.mean())):
                    break
        n_hvp = obj.n_hvp
    t = torch.tensor(samples, dtype=torch.float64)
    std_error = float(t.std() / math.sqrt(len(samples))) if len(samples) > 1 else math.nan
    return TraceResult(
        trace=low_rank + float(t.mean()),
        std_error=std_error,
        n_samples=len(samples),
        samples=t,
        low_rank=low_rank,
        n_hvp=n_hvp,
    )


# --------------------------------------------------------------------------------------------------
# spectral density
# --------------------------------------------------------------------------------------------------
@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian's eigenvalue density.

    Attributes:
        nodes: Ritz values, shape `(n_probes, n_iter)` (rows shorter than `n_iter` padded with the last
            node, weight 0).
        weights: Quadrature weights, same shape; each row sums to 1.
        grid: Points where the density is evaluated.
        density: The Gaussian-smoothed density on `grid` (integrates to about 1).
        sigma: The Gaussian kernel's standard deviation.
    """

    nodes: Tensor
    weights: Tensor
    grid: Tensor
    density: Tensor
    sigma: float


def spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    n_probes: int = 1,
    n_iter: int = 100,
    *,
    grid: int | Tensor = 1000,
    sigma: float | None = None,
    hvp_method: str = "auto",
    include: Patterns = None,
    exclude: Patterns = None,
    train_mode: bool = False,
    generator: torch.Generator | None = None,
    reduce: Reduce | None = None,
) -> SpectralDensity:
    """The eigenvalue density of the Hessian by stochastic Lanczos quadrature.

    For each of `n_probes` random unit vectors $v$, `n_iter` Lanczos steps give a tridiagonal $T$ with
    eigenpairs $(\\theta_j, s_j)$; the Gauss quadrature nodes $\\theta_j$ with weights $\\tau_j = s_{1j}^2$
    approximate the spectral measure $\\frac1n \\sum_i \\delta_{\\lambda_i}$ (Lin, Saad & Yang 2016;
    Ghorbani, Krishnan & Xiao 2019), which is smoothed with a Gaussian kernel:

    $$\\phi(t) = \\frac{1}{n_{probes}} \\sum_{probes} \\sum_j \\tau_j\\,
    \\frac{1}{\\sigma\\sqrt{2\\pi}} e^{-(t-\\theta_j)^2 / 2\\sigma^2}.$$

    Args:
        model: The model.
        loss_fn: `loss_fn(model, batch) -> scalar Tensor`.
        batches: An iterable of batches; the loss is the mean over them.
        n_probes: Random start vectors.
        n_iter: Lanczos steps per probe (at most the number of selected parameters).
        grid: The points where the density is evaluated, or their number (evenly spaced over the nodes'
            range, padded by 1 % and $3\\sigma$ on both sides).
        sigma: Kernel width; default $\\sqrt{10^{-5} \\max(1, \\lambda_{max} - \\lambda_{min})}$ as in
            PyHessian.
        hvp_method: How Hessian-vector products are computed (see [`hvp`][reglight.landscape.hvp]).
        include: Parameters to differentiate with respect to (default: every one with `requires_grad`).
        exclude: Parameters to leave out.
        train_mode: Batch norm uses batch statistics (running statistics untouched); dropout stays off.
        generator: Source of the random vectors (the global RNG is not touched when given); under data
            parallelism it must be seeded alike on every process.
        reduce: Sums a tensor over processes (data parallelism); `None` for one process.

    Returns:
        A [`SpectralDensity`][reglight.landscape.SpectralDensity].

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 1, bias=False)
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> loss_fn = lambda m, b: 0.5 * m(b).pow(2).sum()  # eigenvalues 1 and 4
        >>> sd = spectral_density(model, loss_fn, [x], n_iter=2, generator=torch.Generator().manual_seed(0))
        >>> [round(float(t), 4) for t in sd.nodes[0]], round(float(sd.weights.sum()), 4)
        ([1.0, 4.0], 1.0)
    """
    check_positive_int("n_probes", n_probes)
    check_positive_int("n_iter", n_iter)
    if sigma is not None:
        check_positive("sigma", sigma)
    if isinstance(grid, int) and not isinstance(grid, bool):
        check_positive_int("grid", grid, minimum=2)
    elif not (isinstance(grid, Tensor) and grid.dim() == 1 and grid.numel() >= 1):
        raise ValueError(f"`grid` must be an int >= 2 or a 1-D tensor of points, got {grid!r}")
    named, batch_list = prepare(
        model, loss_fn, batches, include, exclude, generator, reduce, hvp_method
    )
    nodes_rows: list[Tensor] = []
    weight_rows: list[Tensor] = []
    with preserved(model, train_mode=train_mode):
        obj = Objective(model, loss_fn, batch_list, named, reduce, hvp_method)
        gen = obj.common_generator(generator)
        steps = min(n_iter, obj.dim)
        for _ in range(n_probes):
            lz = _lanczos(obj, obj.gaussian(gen), steps)
            evals, evecs = torch.linalg.eigh(_tridiagonal(lz.alphas, lz.betas))
            w = evecs[0] ** 2
            pad = steps - evals.numel()
            if pad:
                evals = torch.cat([evals, evals[-1:].expand(pad)])
                w = torch.cat([w, torch.zeros(pad, dtype=w.dtype)])
            nodes_rows.append(evals)
            weight_rows.append(w)
    nodes = torch.stack(nodes_rows)
    weights = torch.stack(weight_rows)
    lo, hi = float(nodes.min()), float(nodes.max())
    width = hi - lo
    s = sigma if sigma is not None else math.sqrt(1e-5 * max(1.0, width))
    if isinstance(grid, Tensor):
        points = grid.detach().to(torch.float64).cpu()
    else:
        margin = 0.01 * width + 3 * s
        points = torch.linspace(lo - margin, hi + margin, grid, dtype=torch.float64)
    kernel = torch.exp(-((points[:, None] - nodes.reshape(1, -1)) ** 2) / (2 * s * s))
    kernel = kernel / (s * math.sqrt(2 * math.pi))
    density = kernel @ weights.reshape(-1) / n_probes
    return SpectralDensity(nodes=nodes, weights=weights, grid=points, density=density, sigma=s)
