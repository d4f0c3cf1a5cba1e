"""Property tests of the proximal operators (hypothesis)."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reglight.penalties import L1, L2, ElasticNet, GroupLasso, soft_threshold

FLOATS = st.floats(-100.0, 100.0, width=32, allow_nan=False, allow_infinity=False)
ARRAYS = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=FLOATS
)
STEPS = st.floats(1e-3, 10.0)
ALPHAS = st.floats(0.0, 5.0)
SETTINGS = settings(max_examples=60, deadline=None)


def _penalties(alpha: float) -> list:
    return [L1(alpha), L2(alpha), ElasticNet(alpha, 0.3), GroupLasso(alpha)]


@SETTINGS
@given(ARRAYS, STEPS)
def test_prox_of_zero_alpha_is_identity(x: np.ndarray, step: float) -> None:
    for penalty in _penalties(0.0):
        t = torch.from_numpy(x.copy())
        penalty.prox_([t], step)
        assert torch.equal(t, torch.from_numpy(x))


@SETTINGS
@given(ARRAYS, st.floats(0.0, 50.0))
def test_soft_threshold_is_zero_iff_below_threshold(x: np.ndarray, tau: float) -> None:
    t = torch.from_numpy(x)
    out = soft_threshold(t, tau)
    tau32 = torch.tensor(tau, dtype=torch.float32)
    assert torch.equal(out == 0, t.abs() <= tau32)
    assert bool((out.abs() <= t.abs()).all())  # shrinks
    assert bool((torch.sign(out) * torch.sign(t) >= 0).all())  # never flips a sign


@SETTINGS
@given(st.data(), STEPS, ALPHAS)
def test_prox_operators_are_non_expansive(data: st.DataObject, step: float, alpha: float) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=5))
    x = torch.from_numpy(data.draw(hnp.arrays(np.float32, shape, elements=FLOATS))).double()
    y = torch.from_numpy(data.draw(hnp.arrays(np.float32, shape, elements=FLOATS))).double()
    for penalty in _penalties(alpha):
        px, py = x.clone(), y.clone()
        penalty.prox_([px], step)
        penalty.prox_([py], step)
        # prox of a convex function is firmly non-expansive, hence non-expansive
        assert float((px - py).norm()) <= float((x - y).norm()) * (1 + 1e-9) + 1e-9
    # soft-thresholding is non-expansive coordinate by coordinate
    sx, sy = soft_threshold(x, step * alpha), soft_threshold(y, step * alpha)
    assert bool(((sx - sy).abs() <= (x - y).abs() + 1e-12).all())


@SETTINGS
@given(hnp.arrays(np.float32, (4, 3), elements=FLOATS), STEPS, ALPHAS)
def test_group_prox_zero_iff_group_norm_below_threshold(
    x: np.ndarray, step: float, s: float
) -> None:
    t = torch.from_numpy(x.copy()).double()
    GroupLasso(s).prox_([t], step)
    norms = torch.from_numpy(x).double().norm(dim=1)
    tau = step * s * 3**0.5
    dead = (t == 0).all(dim=1)
    clear = (norms - tau).abs() > 1e-9 * (1 + tau)  # away from the boundary
    assert torch.equal(dead[clear], (norms <= tau)[clear])
