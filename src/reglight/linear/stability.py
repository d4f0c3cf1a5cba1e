r"""Stability selection (Meinshausen & Bühlmann 2010, "Stability selection", JRSS-B 72(4)).

Fit the lasso / elastic-net (or the penalized logistic model) along a grid ``Λ`` of ``α`` on many
random subsamples of half the data, and record for every feature ``j`` and every ``α`` the fraction
of subsamples in which ``j`` is selected (nonzero): ``Π̂_j(α)``. The stable set is
``{j : max_{α∈Λ} Π̂_j(α) >= π}`` for a threshold ``π`` in (0.5, 1].

Error control (their Theorem 1): if ``q_Λ`` is the expected number of features selected on a
subsample over the whole grid (the union over ``Λ``), and under exchangeability of the noise
features and a selection procedure not worse than random guessing, the expected number ``V`` of
falsely selected features satisfies

$$
\mathbb{E}[V] \le \frac{1}{2\pi - 1}\,\frac{q_\Lambda^2}{p}.
$$

The result reports this bound with the empirical ``q_Λ`` (mean size of the union on the
subsamples). Following the R package ``stabs`` (Hofner, Boccuto & Göker 2015), ``q`` may instead be
fixed (or derived from a target bound ``pfer`` on ``E[V]``): on each subsample only the first ``q``
features to enter the path count as selected, so ``q_Λ = q`` exactly and the bound is rigorous
under the theorem's assumptions. The randomized lasso of the same paper (each penalty weight multiplied by a random
factor in ``[weakness, 1]``) is available through ``weakness < 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reglight._validation import (
    check_choice,
    check_in_range,
    check_positive_int,
)

from .logistic import logistic_alpha_max, logistic_path
from .path import _check_l1_ratio, alpha_grid, enet_path

__all__ = ["StabilityResult", "stability_selection"]


@dataclass
class StabilityResult:
    """Outcome of stability selection.

    Attributes:
        alphas: The grid ``Λ`` (n_alphas,), decreasing.
        frequencies: Selection frequency ``Π̂_j(α)`` per feature and ``α``, (n_features, n_alphas).
        max_frequency: ``max_α Π̂_j(α)`` per feature, (n_features,).
        selected: Indices of the stable features (``max_frequency >= threshold``), ascending.
        threshold: The threshold ``π``.
        q: Mean number of features selected on a subsample over the whole grid (``q_Λ``; equal
            to the requested ``q`` when that was given and the grid is long enough).
        expected_false_positives_bound: ``q² / ((2π - 1) p)``, the bound on ``E[V]``.
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
) -> StabilityResult:
    """Stability selection with the lasso / elastic net or the penalized logistic model.

    Every subsample is centred on its own means (an unpenalized intercept); pass standardized
    features so that one ``α`` means the same for every feature.

    Args:
        X: Design matrix (n_samples, n_features).
        y: Targets (regression) or class labels (classification), (n_samples,).
        task: ``"regression"`` (squared loss) or ``"classification"`` (logistic loss).
        l1_ratio: Mixing ``ρ`` in (0, 1].
        alphas: The grid ``Λ``; ``None`` for ``n_alphas`` log-spaced values from ``α_max`` (all
            data) down to ``eps·α_max``.
        n_alphas: Size of the automatic grid.
        eps: ``α_min / α_max`` of the automatic grid; a short grid (few features selected)
            keeps ``q_Λ`` and thus the error bound small. With ``q``/``pfer`` the grid only needs to
            reach ``q`` features.
        n_subsamples: Number of random subsamples.
        sample_fraction: Fraction of the samples drawn (without replacement) per subsample.
        threshold: ``π`` in (0.5, 1].
        weakness: Randomized lasso: penalty weights drawn uniformly in ``[weakness, 1]`` per
            feature and subsample (1 = plain lasso).
        q: Count only the first ``q`` features entering the path on each subsample (ties at one
            ``α`` broken by coefficient magnitude); ``None``: all selected features count.
        pfer: Target bound on the expected number of false positives; sets
            ``q = floor(sqrt(pfer (2π - 1) p))``. Give ``q`` or ``pfer``, not both.
        seed: Seed of the subsampling (and the random weights).

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
    Xn = (X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)).astype(
        np.float64
    )
    yn = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    yn = yn.ravel()
    if Xn.ndim != 2 or yn.shape[0] != Xn.shape[0]:
        raise ValueError(f"`X` (n, p) and `y` (n,) must agree, got {Xn.shape} and {yn.shape}")
    n, p = Xn.shape
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
        _, codes = np.unique(yn, return_inverse=True)
        yn = codes
    if alphas is None:
        if task == "regression":
            grid = alpha_grid(Xn, yn, l1_ratio=rho, n_alphas=n_alphas, eps=eps, fit_intercept=True)
        else:
            a_max = logistic_alpha_max(Xn, yn, rho)
            grid = np.geomspace(a_max, a_max * eps, n_alphas)
    else:
        grid = np.sort(np.asarray(alphas, dtype=np.float64).ravel())[::-1]
    rng = np.random.default_rng(seed)
    counts = np.zeros((p, grid.shape[0]))
    union_sizes = np.zeros(n_subsamples)
    for s in range(n_subsamples):
        idx = rng.choice(n, size=m, replace=False)
        Xs, ys = Xn[idx], yn[idx]
        if weakness < 1.0:
            Xs = Xs * rng.uniform(weakness, 1.0, size=p)
        if task == "regression":
            _, coefs = enet_path(Xs - Xs.mean(0), ys - ys.mean(), l1_ratio=rho, alphas=grid)
            size: np.ndarray = np.abs(coefs)
        else:
            if np.unique(ys).shape[0] < 2:
                raise ValueError("a subsample holds a single class; raise `sample_fraction`")
            _, coefs, _ = logistic_path(Xs, ys, l1_ratio=rho, alphas=grid, tol=1e-7)
            size = np.abs(coefs) if coefs.ndim == 2 else np.abs(coefs).sum(0)
        chosen: np.ndarray = size > 0
        if q is not None:
            chosen &= _first_entering(chosen, size, q)[:, None]
        counts += chosen
        union_sizes[s] = chosen.any(1).sum()
    freq = counts / n_subsamples
    max_freq = freq.max(1)
    q_mean = float(union_sizes.mean())
    return StabilityResult(
        alphas=grid,
        frequencies=freq,
        max_frequency=max_freq,
        selected=np.flatnonzero(max_freq >= threshold),
        threshold=float(threshold),
        q=q_mean,
        expected_false_positives_bound=q_mean * q_mean / ((2.0 * threshold - 1.0) * p),
    )


def _first_entering(chosen: np.ndarray, magnitude: np.ndarray, q: int) -> np.ndarray:
    """Mask of the first ``q`` features to become nonzero along the path (ties: larger first)."""
    ever = np.asarray(chosen.any(1), dtype=bool)
    entry = np.where(ever, chosen.argmax(1), chosen.shape[1])
    size_at_entry = magnitude[np.arange(chosen.shape[0]), np.minimum(entry, chosen.shape[1] - 1)]
    order = np.lexsort((-size_at_entry, entry))
    keep = np.zeros(chosen.shape[0], dtype=bool)
    first = order[:q]
    keep[first[ever[first]]] = True
    return keep
