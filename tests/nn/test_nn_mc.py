"""mc_dropout and mc_predict against closed forms for a linear model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reglight.nn import DropPath, mc_dropout, mc_predict


def test_mc_dropout_keeps_batchnorm_frozen_and_restores_modes() -> None:
    net = nn.Sequential(
        nn.Linear(5, 8),
        nn.BatchNorm1d(8),
        nn.Dropout(0.5),
        nn.Sequential(nn.Linear(8, 8), DropPath(0.3)),
    )
    net.train()
    net[3][0].eval()  # a mixed state must come back exactly
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    x = torch.randn(16, 5)
    with mc_dropout(net) as model:
        assert model is net
        assert not net[1].training and not net[3][0].training and not net.training
        assert net[2].training and net[3][1].training
        outs = torch.stack([net(x) for _ in range(5)])
    assert not torch.allclose(outs[0], outs[1])  # the masks are sampled
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)  # BN statistics untouched
    assert [m.training for m in net.modules()] == modes
    with pytest.raises(RuntimeError, match="boom"), mc_dropout(net):
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == modes


def test_mc_predict_converges_to_eval_output_of_linear_model() -> None:
    p = 0.4
    torch.manual_seed(0)
    net = nn.Sequential(nn.Dropout(p), nn.Linear(10, 3))
    x = torch.randn(4, 10)
    expected = net.eval()(x).detach().double()
    # closed form: Var[y_j] = sum_i W_ji^2 x_i^2 p / (1 - p) for inverted dropout
    var = (x.double() ** 2) @ (net[1].weight.detach().double() ** 2).T * p / (1 - p)
    errors = {}
    for samples in (50, 5000):
        mean, std = mc_predict(net, x, samples=samples)
        assert mean.shape == std.shape == (4, 3) and mean.dtype == torch.float32
        se = (var / samples).sqrt()
        assert ((mean.double() - expected).abs() <= 5 * se).all()
        errors[samples] = (mean.double() - expected).abs().mean().item()
        if samples == 5000:  # sample std of a near-normal variable: relative SE sqrt(1/(2(S-1)))
            torch.testing.assert_close(
                std.double(), var.sqrt(), rtol=5 * math.sqrt(0.5 / 4999), atol=0
            )
    assert errors[5000] < errors[50]
    assert not net.training and not net[0].training  # modes restored (eval before the call)


def test_mc_predict_transform_validation_and_warning() -> None:
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    mean, std = mc_predict(net, torch.randn(5, 4), samples=10, transform=lambda y: y.softmax(-1))
    torch.testing.assert_close(mean.sum(-1), torch.ones(5))
    with pytest.raises(ValueError, match=r"`samples`.*1"):
        mc_predict(net, torch.randn(5, 4), samples=1)
    with pytest.warns(UserWarning, match="no dropout-family layer"):
        _, std = mc_predict(nn.Linear(4, 2), torch.randn(3, 4), samples=3)
    torch.testing.assert_close(std, torch.zeros(3, 2))
