"""GroupLasso against per-group loops in float64, autograd, and a bisection solution of the prox."""

from __future__ import annotations

import math

import pytest
import torch

from reglight.penalties import DiagonalStep, GroupLasso, group_norms


def _params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ts = [
        torch.randn(6, 5, generator=g),
        torch.randn(4, 3, 3, 3, generator=g),
        torch.randn(7, generator=g),
    ]
    ts[0][2] = 0.0  # a dead row
    ts[1][1] *= 0.01  # a nearly dead channel
    return ts


def _groups(t: torch.Tensor, dim: int) -> list[torch.Tensor]:
    return [t.select(dim, i) for i in range(t.shape[dim])] if t.dim() > 1 else list(t.unbind(0))


def _loop_value(ts: list[torch.Tensor], alpha: float, dim: int) -> float:
    total = 0.0
    for t in ts:
        for grp in _groups(t, dim if t.dim() > 1 else 0):
            total += math.sqrt(grp.numel()) * float(grp.double().norm())
    return alpha * total


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_value_matches_loop(dim: int) -> None:
    ts = _params()[:2]
    got = GroupLasso(0.3, dim=dim).value(ts)
    assert abs(float(got) - _loop_value(ts, 0.3, dim)) < 1e-4
    torch.testing.assert_close(group_norms(ts[0], 0), ts[0].norm(dim=1))


def test_one_dimensional_tensor_is_l1() -> None:
    t = torch.tensor([1.0, -2.0, 0.5])
    assert float(GroupLasso(0.5).value([t])) == pytest.approx(1.75)


def test_add_grad_matches_autograd_and_is_zero_on_dead_group() -> None:
    ts = [t.clone().requires_grad_(True) for t in _params()]
    penalty = GroupLasso(0.2)
    ref = torch.autograd.grad(penalty.value(ts), ts)
    # autograd of an independent expression too
    manual = torch.autograd.grad(
        sum(
            0.2 * math.sqrt(t[0].numel()) * torch.stack([g.norm() for g in t.unbind(0)]).sum()
            if t.dim() > 1
            else 0.2 * t.abs().sum()
            for t in ts
        ),
        ts,
    )
    for t in ts:
        t.grad = torch.zeros_like(t)
    penalty.add_grad_(ts)
    for t, r, m in zip(ts, ref, manual):
        torch.testing.assert_close(t.grad, r)
        torch.testing.assert_close(t.grad, torch.nan_to_num(m))
    assert bool((ts[0].grad[2] == 0).all())


def _closed_form(v: torch.Tensor, step: float, alpha: float, dim: int) -> torch.Tensor:
    v = v.double()
    if v.dim() <= 1:
        return torch.sign(v) * torch.clamp(v.abs() - step * alpha, min=0)
    out = v.clone()
    for i in range(v.shape[dim]):
        grp = v.select(dim, i)
        tau = step * alpha * math.sqrt(grp.numel())
        n = float(grp.norm())
        out.select(dim, i).copy_(grp * max(0.0, 1.0 - tau / n) if n > 0 else grp)
    return out


@pytest.mark.parametrize("dim", [0, 1])
def test_prox_matches_group_soft_thresholding(dim: int) -> None:
    ts = _params(1)
    ts[0][:, 1] *= 0.01  # a nearly dead column for dim=1
    before = [t.clone() for t in ts]
    penalty = GroupLasso(0.15, dim=dim)
    if dim == 1:
        ts, before = ts[:2], before[:2]  # a 1-D tensor has no dim 1
    penalty.prox_(ts, 0.8)
    dead = 0
    for x, v in zip(ts, before):
        torch.testing.assert_close(
            x.double(), _closed_form(v, 0.8, 0.15, dim), rtol=1e-6, atol=1e-7
        )
        dead += int((group_norms(x, dim) == 0).sum())
    assert dead >= (2 if dim == 0 else 1)  # the near-dead row/channel (dim 0), column (dim 1)


def test_prox_errors_name_dim() -> None:
    with pytest.raises(ValueError, match="`dim`"):
        GroupLasso(0.1, dim=1).prox_([torch.ones(3)], 1.0)
    with pytest.raises(TypeError, match="`dim`"):
        GroupLasso(0.1, dim=1.5)  # type: ignore[arg-type]


def _bisection_prox(v: torch.Tensor, t: torch.Tensor, c: float) -> torch.Tensor:
    """Reference prox of c * ||x|| in the metric diag(1/t) for one group, by bisection in float64."""
    v, t = v.double().flatten(), t.double().flatten()
    if float((v / t).norm()) <= c:
        return torch.zeros_like(v)
    lo, hi = 0.0, float(v.norm())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(((v / (mid + c * t)) ** 2).sum()) > 1.0:
            lo = mid
        else:
            hi = mid
    r = 0.5 * (lo + hi)
    return v * r / (r + c * t)


@pytest.mark.parametrize("spread", [0.0, 1.0, 3.0])
def test_per_coordinate_prox_solves_the_weighted_problem(spread: float) -> None:
    g = torch.Generator().manual_seed(3)
    v = torch.randn(40, 12, generator=g)
    t = 10 ** (spread * torch.rand(40, 12, generator=g)) * 0.01
    alpha = float(((v / t).norm(dim=1)).median()) / math.sqrt(12) * 0.8  # about half dead
    x = v.clone()
    GroupLasso(alpha).prox_([x], [t])
    c = alpha * math.sqrt(12)
    dead = 0
    for i in range(40):
        ref = _bisection_prox(v[i], t[i], c)
        torch.testing.assert_close(x[i].double(), ref, rtol=2e-5, atol=1e-6)
        dead += int(bool((x[i] == 0).all()))
        if bool((x[i] != 0).any()):  # optimality of a live group: (x - v)/t + c x/||x|| = 0
            xi = x[i].double()
            resid = (xi - v[i].double()) / t[i].double() + c * xi / xi.norm()
            assert float(resid.abs().max()) < 1e-3 * c
    assert 5 < dead < 35
    if spread == 0.0:  # uniform steps: same as the scalar prox
        y = v.clone()
        GroupLasso(alpha).prox_([y], float(t[0, 0]))
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)


def test_diagonal_step_with_conv_weights_and_dim1() -> None:
    g = torch.Generator().manual_seed(4)
    w = torch.randn(5, 4, 3, 3, generator=g)
    v2 = torch.rand(5, 4, 3, 3, generator=g) * 1e-3
    step = DiagonalStep([v2], lr=[0.05], eps=[1e-8], bias_correction=[0.5])
    t = step.tensor(0)
    x = w.clone()
    GroupLasso(0.2, dim=1).prox_([x], step)
    c = 0.2 * math.sqrt(5 * 9)
    for j in range(4):
        ref = _bisection_prox(w[:, j], t[:, j], c)
        torch.testing.assert_close(x[:, j].flatten().double(), ref, rtol=2e-5, atol=1e-6)


def test_sparsity_reports_dead_groups() -> None:
    ts = _params()[:2]
    stats = GroupLasso(0.1).sparsity(ts)
    assert float(stats["dead_group_fraction"]) == pytest.approx(1 / 10)
    zeros = sum(int((t == 0).sum()) for t in ts) / sum(t.numel() for t in ts)
    assert float(stats["zero_fraction"]) == pytest.approx(zeros)
