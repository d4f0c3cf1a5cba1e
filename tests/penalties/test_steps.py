"""optimizer_step_sizes against hand-written optimizer formulas (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reglight.penalties import DiagonalStep, optimizer_step_sizes


def _run(opt_cls: type[torch.optim.Optimizer], steps: int = 3, **kwargs: object):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    b = nn.Parameter(torch.randn(4))
    opt = opt_cls([w, b], **kwargs)
    grads = [torch.randn(steps, 4, 3), torch.randn(steps, 4)]
    for s in range(steps):
        w.grad, b.grad = grads[0][s].clone(), grads[1][s].clone()
        opt.step()
    return opt, w, b, grads


def test_sgd_returns_lr_per_group_and_skips_frozen_or_gradless() -> None:
    w, b, c = (nn.Parameter(torch.ones(2)) for _ in range(3))
    frozen = nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD(
        [
            {"params": [w, b], "lr": 0.1},
            {"params": [c], "lr": 0.02},
            {"params": [frozen], "lr": 0.0},
        ],
        momentum=0.9,
    )
    for p in (w, c, frozen):
        p.grad = torch.ones(2)
    opt.step()
    params, steps = optimizer_step_sizes(opt, [w, b, c, frozen])
    assert params == [w, c] and steps == [0.1, 0.02]
    assert optimizer_step_sizes(opt, [c])[1] == [0.02]
    assert optimizer_step_sizes(opt, [nn.Parameter(torch.ones(1))]) == ([], [])


@pytest.mark.parametrize(
    ("opt_cls", "amsgrad"),
    [
        (torch.optim.Adam, False),
        (torch.optim.Adam, True),
        (torch.optim.AdamW, True),
        (torch.optim.NAdam, False),
    ],
)
def test_adam_family_per_coordinate_steps(
    opt_cls: type[torch.optim.Optimizer], amsgrad: bool
) -> None:
    kwargs = {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6}
    if amsgrad:
        kwargs["amsgrad"] = True
    opt, w, b, grads = _run(opt_cls, **kwargs)
    params, steps = optimizer_step_sizes(opt, [w, b])
    assert params == [w, b] and isinstance(steps, DiagonalStep)
    for k, g in enumerate(grads):
        v = torch.zeros_like(g[0], dtype=torch.float64)
        vmax = torch.zeros_like(v)
        for s in range(g.shape[0]):
            v = 0.95 * v + 0.05 * g[s].double() ** 2
            vmax = torch.maximum(vmax, v)
        v_hat = (vmax if amsgrad else v) / (1 - 0.95**3)
        expected = 0.01 / (v_hat.sqrt() + 1e-6)
        torch.testing.assert_close(steps.tensor(k).double(), expected, rtol=1e-5, atol=0)
    # adaptive=False: the plain learning rate
    assert optimizer_step_sizes(opt, [w, b], adaptive=False)[1] == [0.01, 0.01]


def test_adagrad_and_rmsprop() -> None:
    opt, w, _, grads = _run(torch.optim.Adagrad, lr=0.1, lr_decay=0.05, eps=1e-8)
    _, steps = optimizer_step_sizes(opt, [w])
    assert isinstance(steps, DiagonalStep)
    acc = (grads[0].double() ** 2).sum(0)
    expected = 0.1 / (1 + 2 * 0.05) / (acc.sqrt() + 1e-8)
    torch.testing.assert_close(steps.tensor(0).double(), expected, rtol=1e-5, atol=0)

    opt, w, _, grads = _run(torch.optim.RMSprop, lr=0.01, alpha=0.9, eps=1e-8)
    _, steps = optimizer_step_sizes(opt, [w])
    assert isinstance(steps, DiagonalStep)
    sq = torch.zeros(4, 3, dtype=torch.float64)
    for s in range(3):
        sq = 0.9 * sq + 0.1 * grads[0][s].double() ** 2
    torch.testing.assert_close(
        steps.tensor(0).double(), 0.01 / (sq.sqrt() + 1e-8), rtol=1e-5, atol=0
    )


def test_mixed_scalar_and_adaptive_groups_give_one_diagonal_step() -> None:
    w = nn.Parameter(torch.randn(3))
    c = nn.Parameter(torch.randn(3))
    opt = torch.optim.RMSprop([{"params": [w]}, {"params": [c], "centered": True}], lr=0.05)
    w.grad, c.grad = torch.randn(3), torch.randn(3)
    opt.step()
    with pytest.warns(UserWarning, match="centered RMSprop"):
        params, steps = optimizer_step_sizes(opt, [w, c])
    assert params == [w, c] and isinstance(steps, DiagonalStep)
    torch.testing.assert_close(steps.tensor(1), torch.full((3,), 0.05))
    sq = 0.01 * w.grad.double() ** 2
    torch.testing.assert_close(
        steps.tensor(0).double(), 0.05 / (sq.sqrt() + 1e-8), rtol=1e-5, atol=0
    )


def test_diagonal_step_validates_lengths() -> None:
    with pytest.raises(ValueError, match="`lr`"):
        DiagonalStep([torch.ones(2)], lr=[0.1, 0.2], eps=[1e-8])
