"""Temperature and Platt scaling against scikit-learn and dense 1-D searches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from reglight.calibration import (
    PlattScaling,
    TemperatureScaling,
    fit_platt,
    fit_temperature,
    make_calibrator,
    platt_scale,
    temperature_scale,
)


def _overconfident(n: int = 400, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits 4x too sharp for their labels (labels drawn from softmax(z / 4))."""
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(z / 4, 1), 1, generator=g)[:, 0]
    return z, y


def _nll(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    return float(torch.nn.functional.cross_entropy(z / t, y))


@pytest.mark.parametrize("k", [2, 5])
def test_temperature_is_the_minimizer_of_a_dense_search(k: int) -> None:
    z, y = _overconfident(k=k)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    nll = [_nll(z, y, t) for t in grid]
    best = grid[int(np.argmin(nll))]
    t = fit_temperature(z, y)
    step = grid[1] / grid[0]
    assert best / step <= t <= best * step
    assert _nll(z, y, t) <= min(nll) + 1e-12
    assert 2.5 < t < 6  # the labels were drawn at temperature 4


def test_binary_logits_temperature_equals_the_two_class_softmax() -> None:
    z, y = _overconfident(k=2)
    margin = (z[:, 1] - z[:, 0]).float()
    assert fit_temperature(margin, y) == pytest.approx(fit_temperature(z, y), rel=1e-6)


def test_temperature_bounds_and_argmax() -> None:
    z = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(z, torch.tensor([0, 1]), bounds=(0.1, 10.0)) == 0.1  # separable: T -> 0
    assert (
        fit_temperature(z, torch.tensor([1, 0]), bounds=(0.1, 10.0)) == 10.0
    )  # all wrong: T -> inf
    zz, _ = _overconfident(k=4)
    scaled = temperature_scale(zz, 3.0)
    assert torch.equal(scaled.argmax(1), zz.argmax(1))
    assert torch.allclose(scaled, zz / 3.0)


def _sklearn_platt(s: np.ndarray, y: np.ndarray) -> CalibratedClassifierCV:
    """Platt's method in scikit-learn: a frozen classifier whose decision function is `s` itself."""
    identity = LogisticRegression().fit(np.array([[-1.0], [1.0]]), np.array([0, 1]))
    identity.coef_[:] = 1.0
    identity.intercept_[:] = 0.0
    return CalibratedClassifierCV(FrozenEstimator(identity), method="sigmoid").fit(s[:, None], y)


def _binary(n: int = 300, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = 2.5 * torch.randn(n, generator=g, dtype=torch.float64)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(0.6 * s - 0.8)).long()
    return s, y


def test_platt_matches_calibrated_classifier_cv_sigmoid() -> None:
    s, y = _binary()
    a, b = fit_platt(s, y)
    ref = _sklearn_platt(s.numpy(), y.numpy())
    grid = np.linspace(-6, 6, 25)
    expected = ref.predict_proba(grid[:, None])[:, 1]
    ours = torch.sigmoid(platt_scale(torch.from_numpy(grid), a, b)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_platt_hard_targets_match_an_unpenalized_logistic_regression() -> None:
    s, y = _binary()
    a, b = fit_platt(s, y, targets="hard")
    ref = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(s.numpy()[:, None], y.numpy())
    assert a == pytest.approx(float(ref.coef_[0, 0]), rel=1e-5)
    assert b == pytest.approx(float(ref.intercept_[0]), rel=1e-5, abs=1e-6)


def test_platt_on_two_class_logits_uses_the_log_odds() -> None:
    s, y = _binary()
    z = torch.stack([-0.5 * s + 1.0, 0.5 * s + 1.0], 1)  # log-odds z1 - z0 = s
    assert fit_platt(z, y) == pytest.approx(fit_platt(s, y), rel=1e-8)
    a, b = fit_platt(s, y)
    probs = torch.softmax(platt_scale(z, a, b), 1)[:, 1]
    assert torch.allclose(probs, torch.sigmoid(a * s + b))


def test_modules_store_the_fit_as_buffers_and_start_as_the_identity() -> None:
    z, y = _overconfident(k=3)
    scaler = TemperatureScaling()
    assert torch.equal(scaler(z), z)
    scaler.fit(z, y)
    assert float(scaler.temperature) == pytest.approx(fit_temperature(z, y))
    assert "temperature" in scaler.state_dict()
    s, yb = _binary()
    platt = PlattScaling()
    z2 = torch.stack([torch.zeros_like(s), s], 1)
    assert torch.allclose(torch.softmax(platt(z2), 1), torch.softmax(z2, 1))
    platt.fit(s, yb)
    assert (float(platt.a), float(platt.b)) == pytest.approx(fit_platt(s, yb))
    assert set(platt.state_dict()) == {"a", "b"}
    assert make_calibrator("none") is None
    assert isinstance(make_calibrator("platt"), PlattScaling)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: fit_temperature(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long)),
            ValueError,
            "target",
        ),
        (
            lambda: fit_temperature(torch.zeros(3, 2), torch.tensor([0, 1, 2])),
            ValueError,
            r"\[0, 1\]",
        ),
        (lambda: fit_temperature(torch.zeros(2, 2, 2), torch.zeros(2)), ValueError, "shape"),
        (
            lambda: fit_temperature(torch.tensor([[0.0, float("nan")]]), torch.tensor([0])),
            ValueError,
            "finite",
        ),
        (
            lambda: fit_temperature(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2)),
            TypeError,
            "floating",
        ),
        (
            lambda: fit_temperature(torch.zeros(2, 2), torch.zeros(2), bounds=(2.0, 1.0)),
            ValueError,
            "bounds",
        ),
        (
            lambda: fit_temperature(torch.zeros(2, 2), torch.zeros(2), bounds=(0.0, 1.0)),
            ValueError,
            "bounds",
        ),
        (lambda: fit_platt(torch.zeros(3, 3), torch.zeros(3)), ValueError, "binary"),
        (lambda: fit_platt(torch.zeros(3), torch.zeros(3), targets="soft"), ValueError, "targets"),  # type: ignore[arg-type]
        (lambda: temperature_scale(torch.zeros(2), -1.0), ValueError, "temperature"),
        (lambda: TemperatureScaling(bounds=(1.0,)), ValueError, "bounds"),  # type: ignore[arg-type]
        (lambda: make_calibrator("isotonic"), ValueError, "calibration"),
    ],
)
def test_bad_arguments_are_named(call, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        call()
