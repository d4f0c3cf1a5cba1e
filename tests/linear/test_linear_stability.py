"""Stability selection (Meinshausen & Bühlmann 2010): recovery and the false-positive bound."""

from __future__ import annotations

import numpy as np
import pytest

from reglight.linear import stability_selection

INFORMATIVE = [0, 5, 11, 30, 47]


def _problem(seed: int, n: int = 100, p: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = X[:, INFORMATIVE] @ np.array([2.0, -2.0, 2.0, 2.0, -2.0]) + rng.standard_normal(n)
    return (X - X.mean(0)) / X.std(0), y


def test_recovers_informative_features_within_the_false_positive_bound() -> None:
    """pfer=1 at π=0.75, p=200 gives q = ⌊√((2π-1)p)⌋ = 10 and E[V] <= q²/((2π-1)p) = 1.

    Over 4 independent problems (5 informative features each, 195 noise features): at least 18 of
    the 20 informative features are selected, and the mean number of false positives is at most
    the bound 1 (Meinshausen & Bühlmann's Theorem 1 bounds its expectation).
    """
    false_positives, recovered = [], 0
    for seed in range(4):
        X, y = _problem(seed)
        res = stability_selection(
            X, y, n_subsamples=30, threshold=0.75, pfer=1.0, eps=0.05, seed=seed
        )
        assert res.q == pytest.approx(10.0)
        assert res.expected_false_positives_bound == pytest.approx(1.0)
        chosen = set(res.selected.tolist())
        recovered += len(chosen & set(INFORMATIVE))
        false_positives.append(len(chosen - set(INFORMATIVE)))
    assert recovered >= 18
    assert np.mean(false_positives) <= 1.0


def test_frequencies_and_randomized_lasso() -> None:
    X, y = _problem(7, p=60)
    res = stability_selection(X, y, n_subsamples=20, n_alphas=10, weakness=0.5, threshold=0.9)
    assert res.frequencies.shape == (60, 10)
    assert np.all((res.frequencies >= 0) & (res.frequencies <= 1))
    # frequencies of the plain lasso grow as α decreases (a nested path on each subsample)
    plain = stability_selection(X, y, n_subsamples=20, n_alphas=10, threshold=0.9)
    assert np.all(np.diff(plain.frequencies[INFORMATIVE], axis=1) >= -0.25)
    assert set(INFORMATIVE) <= set(res.selected.tolist())


def test_classification_task() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 40))
    y = (X[:, 2] - X[:, 9] + 0.3 * rng.standard_normal(150) > 0).astype(int)
    res = stability_selection(X, y, task="classification", n_subsamples=15, n_alphas=8, q=4)
    assert {2, 9} <= set(res.selected.tolist())


def test_arguments_are_validated() -> None:
    X, y = _problem(0, p=50)
    with pytest.raises(ValueError, match="threshold"):
        stability_selection(X, y, threshold=0.5)
    with pytest.raises(ValueError, match="not both"):
        stability_selection(X, y, q=3, pfer=1.0)
    with pytest.raises(ValueError, match="task"):
        stability_selection(X, y, task="ranking")
