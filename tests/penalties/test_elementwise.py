"""L1 / L2 / ElasticNet against closed forms written out in float64 and against autograd."""

from __future__ import annotations

import pytest
import torch

from reglight.penalties import (
    L1,
    L2,
    DiagonalStep,
    ElasticNet,
    elastic_net_grad_,
    soft_threshold,
    soft_threshold_,
)
from reglight.penalties._blocks import BLOCK_NUMEL, block_numel, iter_blocks


def _tensors(seed: int = 0) -> list[torch.Tensor]:
    """Shapes that exercise every path of the blocked kernels, with some exact zeros."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(3,), (4, 5), (BLOCK_NUMEL // 300 + 7, 300), (64, 3, 30, 30), (6, 3, 3, 3), (1,)]
    ts = [torch.randn(s, generator=g) for s in shapes]
    ts[3] = ts[3].contiguous(memory_format=torch.channels_last)  # not flattenable: own block
    for t in ts:
        t[t.abs() < 0.1] = 0.0
    return ts


def _weights(penalty: L1 | L2 | ElasticNet) -> tuple[float, float]:
    """`(a, c)` of the closed form `a * ||θ||_1 + c/2 * ||θ||²`, written out per class."""
    if isinstance(penalty, ElasticNet):
        return penalty.alpha * penalty.l1_ratio, penalty.alpha * (1 - penalty.l1_ratio)
    if isinstance(penalty, L1):
        return penalty.alpha, 0.0
    return 0.0, penalty.alpha


PENALTIES = [
    L1(0.3),
    L2(0.7),
    ElasticNet(0.4, l1_ratio=0.25),
    ElasticNet(0.5, 1.0),
    ElasticNet(0.5, 0.0),
]


def test_block_size_scales_with_threads() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert block_numel() == 2 * BLOCK_NUMEL
    finally:
        torch.set_num_threads(threads)


def test_blocks_cover_every_element_once() -> None:
    ts = _tensors()
    seen = [torch.zeros_like(t) for t in ts]
    for index, (block, sblock) in iter_blocks(ts, seen, max_numel=BLOCK_NUMEL):
        assert sum(b.numel() for b in block) <= BLOCK_NUMEL or len(block) == 1
        for b, s in zip(block, sblock):
            s.add_(1.0)
            assert b.shape == s.shape
        assert len(index) == len(block)
    assert all(bool((s == 1).all()) for s in seen)


@pytest.mark.parametrize("penalty", PENALTIES, ids=repr)
def test_value_matches_formula(penalty: L1 | L2 | ElasticNet) -> None:
    ts = _tensors()
    a, b = _weights(penalty)
    ref = sum(a * t.double().abs().sum() + b / 2 * t.double().square().sum() for t in ts)
    torch.testing.assert_close(penalty.value(ts).double(), ref, rtol=1e-5, atol=0)
    assert penalty(ts) == penalty.value(ts)


@pytest.mark.parametrize("penalty", PENALTIES, ids=repr)
def test_add_grad_matches_autograd_of_value(penalty: L1 | L2 | ElasticNet) -> None:
    ts = [t.clone().requires_grad_(True) for t in _tensors()]
    a, b = _weights(penalty)
    ref_loss = sum(a * t.abs().sum() + b / 2 * (t * t).sum() for t in ts)
    ref = torch.autograd.grad(ref_loss, ts)
    base = [torch.randn_like(t) for t in ts]
    for t, g in zip(ts, base):
        t.grad = g.clone()
    penalty.add_grad_(ts)
    for t, g, r in zip(ts, base, ref):
        torch.testing.assert_close(t.grad, g + r, rtol=1e-6, atol=1e-6)
        # L1 part: sign(0) = 0, exact zeros are not pushed
        assert bool((t.grad[t.detach() == 0] == g[t.detach() == 0]).all())


def _prox_reference(v: torch.Tensor, t: torch.Tensor | float, a: float, b: float) -> torch.Tensor:
    v = v.double()
    t = t.double() if isinstance(t, torch.Tensor) else t
    shrunk = torch.sign(v) * torch.clamp(v.abs() - t * a, min=0.0)
    return shrunk / (1.0 + t * b)


@pytest.mark.parametrize("penalty", PENALTIES, ids=repr)
def test_prox_scalar_step_closed_form_and_optimality(penalty: L1 | L2 | ElasticNet) -> None:
    ts = _tensors()
    v = [t.clone() for t in ts]
    step = 0.37
    penalty.prox_(ts, step)
    a, b = _weights(penalty)
    for x, v0 in zip(ts, v):
        ref = _prox_reference(v0, step, a, b)
        torch.testing.assert_close(x.double(), ref, rtol=1e-6, atol=1e-7)
        # zeros are exact, and exactly where |v| <= t * a
        if a > 0:
            assert torch.equal(x == 0, v0.abs() <= step * a)
        # optimality: (x - v)/t + a*sign(x) + b x = 0 where x != 0
        nz = x != 0
        resid = (x.double() - v0.double()) / step + a * torch.sign(x.double()) + b * x.double()
        assert float(resid[nz].abs().amax()) < 1e-4


def test_prox_per_tensor_steps_and_tensor_steps() -> None:
    penalty = ElasticNet(0.3, 0.6)
    a, b = _weights(penalty)
    ts = _tensors(1)
    per_tensor = [0.1 * (k + 1) for k in range(len(ts))]
    x = [t.clone() for t in ts]
    penalty.prox_(x, per_tensor)
    for xi, t, s in zip(x, ts, per_tensor):
        torch.testing.assert_close(xi.double(), _prox_reference(t, s, a, b), rtol=1e-6, atol=1e-7)
    steps = [torch.rand_like(t) + 0.05 for t in ts]
    frozen = [s.clone() for s in steps]
    y = [t.clone() for t in ts]
    penalty.prox_(y, steps)
    for yi, t, s in zip(y, ts, steps):
        torch.testing.assert_close(yi.double(), _prox_reference(t, s, a, b), rtol=1e-6, atol=1e-7)
    assert all(torch.equal(s, f) for s, f in zip(steps, frozen))  # steps were not modified


def test_prox_diagonal_step_matches_adam_formula() -> None:
    penalty = L1(0.02)
    ts = _tensors(2)
    v = [torch.rand_like(t) * 1e-2 for t in ts]
    lr, eps, bc = [0.01 * (k + 1) for k in range(len(ts))], [1e-8] * len(ts), [0.3] * len(ts)
    x = [t.clone() for t in ts]
    penalty.prox_(x, DiagonalStep(v, lr, eps, bc))
    for k, (xi, t) in enumerate(zip(x, ts)):
        step = lr[k] / ((v[k].double() / bc[k]).sqrt() + eps[k])
        torch.testing.assert_close(
            xi.double(), _prox_reference(t, step, 0.02, 0.0), rtol=1e-5, atol=1e-7
        )


def test_zero_alpha_is_a_no_op() -> None:
    ts = _tensors()
    before = [t.clone() for t in ts]
    for penalty in (L1(0.0), L2(0.0), ElasticNet(0.0)):
        penalty.prox_(ts, 1.0)
        for t in ts:
            t.grad = torch.ones_like(t)
        penalty.add_grad_(ts)
        assert all(torch.equal(t, b) for t, b in zip(ts, before))
        assert all(bool((t.grad == 1).all()) for t in ts if t.grad is not None)
        assert float(penalty.value(ts)) == 0.0


def test_soft_threshold_functional_forms() -> None:
    x = torch.tensor([-3.0, -1.0, -0.2, 0.0, 0.2, 1.0, 3.0])
    expected = torch.tensor([-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    assert torch.equal(soft_threshold(x, 1.0), expected)
    assert torch.equal(soft_threshold(x, torch.full_like(x, 1.0)), expected)
    y = [x.clone(), x.clone()]
    soft_threshold_(y, [1.0, 0.1])
    assert torch.equal(y[0], expected)
    torch.testing.assert_close(y[1], torch.sign(x) * (x.abs() - 0.1).clamp_min(0))


def test_sparsity_counts_exact_zeros() -> None:
    ts = _tensors()
    expected = sum(int((t == 0).sum()) for t in ts) / sum(t.numel() for t in ts)
    got = L1(0.1).sparsity(ts)["zero_fraction"]
    assert abs(float(got) - expected) < 1e-6


def test_state_dict_roundtrip_and_repr() -> None:
    penalty = ElasticNet(0.1, 0.3)
    state = penalty.state_dict()
    other = ElasticNet(1.0, 1.0)
    other.load_state_dict(state)
    assert other.alpha == 0.1 and other.l1_ratio == 0.3
    assert repr(other) == "ElasticNet(alpha=0.1, l1_ratio=0.3)"
    assert L1(0.2).state_dict() == {"alpha": 0.2} and repr(L2(0.5)) == "L2(alpha=0.5)"
    with pytest.raises(ValueError, match="unknown key 'dim'"):
        other.load_state_dict({"dim": 1})


@pytest.mark.parametrize(
    ("alpha", "l1_ratio"), [(1.0, 1e-3), (0.5, 1 - 2e-4), (1e-2, 1e-23), (0.3, 0.0), (0.3, 1.0)]
)
def test_elastic_net_grad_for_any_ratio_of_the_weights(alpha: float, l1_ratio: float) -> None:
    """αρ·sign(θ) + α(1-ρ)·θ in float64, whether built in one temporary or (ρ ≈ 0) term by term."""
    ts = _tensors()
    base = [torch.randn_like(t) for t in ts]
    grads = [g.clone() for g in base]
    elastic_net_grad_(ts, grads, alpha=alpha, l1_ratio=l1_ratio)
    for t, g0, g in zip(ts, base, grads):
        ref = g0.double() + alpha * l1_ratio * torch.sign(t.double())
        ref = ref + alpha * (1 - l1_ratio) * t.double()
        torch.testing.assert_close(g.double(), ref, rtol=1e-6, atol=2e-6)  # float32 rounding
        assert bool((g[t == 0] == g0[t == 0]).all())


def test_l1_and_l2_are_the_elastic_net_at_l1_ratio_one_and_zero() -> None:
    ts = _tensors()
    assert (L1(0.3).l1_ratio, L2(0.3).l1_ratio) == (1.0, 0.0)
    for single, enet in ((L1(0.3), ElasticNet(0.3, 1.0)), (L2(0.3), ElasticNet(0.3, 0.0))):
        assert torch.equal(single.value(ts), enet.value(ts))
        x, y = [t.clone() for t in ts], [t.clone() for t in ts]
        single.prox_(x, 0.2)
        enet.prox_(y, 0.2)
        assert all(torch.equal(a, b) for a, b in zip(x, y))
