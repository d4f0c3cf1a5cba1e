r"""Stability selection (Meinshausen & Bühlmann 2010, "Stability selection", JRSS-B 72(4)).

Fit the lasso / elastic-net (or the penalized logistic model) along a grid `Λ` of `α` on many
random subsamples of half the data, and record for every feature `j` and every `α` the fraction
of subsamples in which `j` is selected (nonzero): `Π̂_j(α)`. The stable set is
`{j : max_{α∈Λ} Π̂_j(α) >= π}` for a threshold `π` in (0.5, 1].

Error control (their Theorem 1): if `q_Λ` is the expected number of features selected on a
subsample over the whole grid (the union over `Λ`), and under exchangeability of the noise
features and a selection procedure not worse than random guessing, the expected number `V` of
falsely selected features satisfies

$$
\mathbb{E}[V] \le \frac{1}{2\pi - 1}\,\frac{q_\Lambda^2}{p}.
$$

The result reports this bound with the empirical `q_Λ` (mean size of the union on the
subsamples). Following the R package `stabs` (Hofner, Boccuto & Göker 2015), `q` may instead be
fixed (or derived from a target bound `pfer` on `E[V]`): on each subsample only the first `q`
features to enter the path count as selected, so `q_Λ = q` exactly and the bound is rigorous
under the theorem's assumptions. The randomized lasso of the same paper (each penalty weight multiplied by a random
factor in `[weakness, 1]`) is available through `weakness < 1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reglight._threads import torch_threads
from reglight._validation import (
    check_choice,
    check_in_range,
    check_positive_int,
)

from ._convergence import collect
from ._tensor import as_grid, as_matrix, as_vector, resolve_dtype
from .logistic import (
    _encode,
    _intercept_only,
    _logistic_alpha_max,
    _logistic_path,
    _problem,
)
from .path import _alpha_max, _check_l1_ratio, _enet_path, _grid

__all__ = ["StabilityResult", "stability_selection"]


@dataclass
class StabilityResult:
    """Outcome of stability selection.

    Attributes:
        alphas: The grid `Λ` (n_alphas,), decreasing.
        frequencies: Selection frequency `Π̂_j(α)` per feature and `α`, (n_features, n_alphas).
        max_frequency: `max_α Π̂_j(α)` per feature, (n_features,).
        selected: Indices of the stable features (`max_frequency >= threshold`), ascending.
        threshold: The threshold `π`.
        q: Mean number of features selected on a subsample over the whole grid (`q_Λ`; equal
            to the requested `q` when that was given and the grid is long enough).
        expected_false_positives_bound: `q² / ((2π - 1) p)`, the bound on `E[V]`.
    """

    alphas: np.ndarray
    frequencies: np.ndarray
    max_frequency: np.ndarray
    selected: np.ndarray
    threshold: float
    q: float
    expected_false_positives_bound: float


def stability_selection(
    X: Any,
    y: Any,
    *,
    task: str = "regression",
    l1_ratio: float = 1.0,
    alphas: Any = None,
    n_alphas: int = 20,
    eps: float = 0.05,
    n_subsamples: int = 100,
    sample_fraction: float = 0.5,
    threshold: float = 0.6,
    weakness: float = 1.0,
    q: int | None = None,
    pfer: float | None = None,
    seed: int | None = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_threads: int | None = 1,
) -> StabilityResult:
    """Stability selection with the lasso / elastic net or the penalized logistic model.

    Every subsample is centred on its own means (an unpenalized intercept); pass standardized
    features so that one `α` means the same for every feature.

    Args:
        X: Design matrix (n_samples, n_features).
        y: Targets (regression) or class labels (classification), (n_samples,).
        task: `"regression"` (squared loss) or `"classification"` (logistic loss).
        l1_ratio: Mixing `ρ` in (0, 1].
        alphas: The grid `Λ`; `None` for `n_alphas` log-spaced values from `α_max` (all
            data) down to `eps·α_max`.
        n_alphas: Size of the automatic grid.
        eps: `α_min / α_max` of the automatic grid; a short grid (few features selected)
            keeps `q_Λ` and thus the error bound small. With `q`/`pfer` the grid only needs to
            reach `q` features.
        n_subsamples: Number of random subsamples.
        sample_fraction: Fraction of the samples drawn (without replacement) per subsample.
        threshold: `π` in (0.5, 1].
        weakness: Randomized lasso: penalty weights drawn uniformly in `[weakness, 1]` per
            feature and subsample (1 = plain lasso).
        q: Count only the first `q` features entering the path on each subsample (ties at one
            `α` broken by coefficient magnitude); `None`: all selected features count.
        pfer: Target bound on the expected number of false positives; sets
            `q = floor(sqrt(pfer (2π - 1) p))`. Give `q` or `pfer`, not both.
        seed: Seed of the subsampling (and the random weights).
        dtype: Computation dtype; default: the input's float dtype.
        device: Computation device; default: the input's device. `X` and `y` are converted once
            and every subsample is an index into them on that device.
        n_threads: torch intra-op threads while the call runs (`torch.set_num_threads`,
            process-wide, restored afterwards); `None` leaves torch's setting alone. The
            default, one thread, is the fastest on the small operations these solvers run.

    Returns:
        A [`StabilityResult`][reglight.linear.StabilityResult].

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((100, 20)); y = 2 * X[:, 3] - 2 * X[:, 7] + rng.standard_normal(100)
        >>> res = stability_selection(X, y, n_subsamples=30, threshold=0.8, pfer=1.0)
        >>> res.selected.tolist(), res.q, round(res.expected_false_positives_bound, 3)
        ([3, 7], 3.0, 0.75)
    """
    check_choice("task", task, ("regression", "classification"))
    rho = _check_l1_ratio(l1_ratio)
    check_positive_int("n_alphas", n_alphas)
    check_in_range("eps", eps, 0.0, 1.0, low_inclusive=False)
    check_positive_int("n_subsamples", n_subsamples)
    check_in_range("sample_fraction", sample_fraction, 0.0, 1.0, low_inclusive=False)
    check_in_range("threshold", threshold, 0.5, 1.0, low_inclusive=False)
    check_in_range("weakness", weakness, 0.0, 1.0, low_inclusive=False)
    Xt = as_matrix("X", X, resolve_dtype(X, dtype), device)
    n, p = Xt.shape
    if q is not None and pfer is not None:
        raise ValueError(f"give `q` or `pfer`, not both (got q={q!r}, pfer={pfer!r})")
    if pfer is not None:
        check_in_range("pfer", pfer, 0.0, float(p), low_inclusive=False)
        q = max(1, int(np.floor(np.sqrt(pfer * (2.0 * threshold - 1.0) * p))))
    if q is not None:
        check_positive_int("q", q)
        q = min(q, p)
    m = round(sample_fraction * n)
    if m < 2:
        raise ValueError(f"`sample_fraction`={sample_fraction} leaves fewer than 2 samples")
    if task == "classification":
        classes, codes = _encode(y, n)
        yt = torch.as_tensor(codes, device=Xt.device)
        full = _problem(Xt, yt, classes.shape[0])
    else:
        yt = as_vector("y", y, n, Xt.dtype, Xt.device)
    if alphas is not None:
        grid = as_grid(alphas, Xt.dtype, Xt.device)
    elif task == "regression":
        grid = _grid(_alpha_max(Xt, yt, rho, True), n_alphas, eps, Xt.dtype, Xt.device)
    else:
        a_max = _logistic_alpha_max(full, _intercept_only(full, True), rho)
        grid = _grid(a_max, n_alphas, eps, Xt.dtype, Xt.device)
    rng = np.random.default_rng(seed)
    counts = np.zeros((p, grid.shape[0]))
    union_sizes = np.zeros(n_subsamples)
    cap = 1000 if task == "regression" else 100
    with torch_threads(n_threads), collect("stability_selection", tol=1e-7, max_iter=cap):
        for s in range(n_subsamples):
            idx = torch.as_tensor(rng.choice(n, size=m, replace=False), device=Xt.device)
            Xs, ys = Xt[idx], yt[idx]
            if weakness < 1.0:
                Xs = Xs * torch.as_tensor(rng.uniform(weakness, 1.0, size=p), dtype=Xt.dtype).to(
                    Xt.device
                )
            if task == "regression":
                _, coefs = _enet_path(Xs - Xs.mean(0), ys - ys.mean(), rho, grid)
                size = coefs.abs()
            else:
                if int(ys.unique().numel()) < full.K + int(full.binary):
                    raise ValueError("a subsample misses a class; raise `sample_fraction`")
                prob = _problem(Xs, ys, classes.shape[0])
                _, W, _ = _logistic_path(prob, rho, grid, n_alphas, eps, True, 1e-7, 100)
                size = W.abs().sum(0)
            size_n = size.cpu().numpy()
            chosen: np.ndarray = size_n > 0
            if q is not None:
                chosen &= _first_entering(chosen, size_n, q)[:, None]
            counts += chosen
            union_sizes[s] = chosen.any(1).sum()
    grid_n = grid.cpu().numpy().astype(np.float64)
    freq = counts / n_subsamples
    max_freq = freq.max(1)
    q_mean = float(union_sizes.mean())
    return StabilityResult(
        alphas=grid_n,
        frequencies=freq,
        max_frequency=max_freq,
        selected=np.flatnonzero(max_freq >= threshold),
        threshold=float(threshold),
        q=q_mean,
        expected_false_positives_bound=q_mean * q_mean / ((2.0 * threshold - 1.0) * p),
    )


def _first_entering(chosen: np.ndarray, magnitude: np.ndarray, q: int) -> np.ndarray:
    """Mask of the first `q` features to become nonzero along the path (ties: larger first)."""
    ever = np.asarray(chosen.any(1), dtype=bool)
    entry = np.where(ever, chosen.argmax(1), chosen.shape[1])
    size_at_entry = magnitude[np.arange(chosen.shape[0]), np.minimum(entry, chosen.shape[1] - 1)]
    order = np.lexsort((-size_at_entry, entry))
    keep = np.zeros(chosen.shape[0], dtype=bool)
    first = order[:q]
    keep[first[ever[first]]] = True
    return keep
