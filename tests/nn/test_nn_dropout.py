"""Dropout, GaussianDropout, DropConnect, DropPath, LockedDropout: statistics against closed forms.

Every statistical check is seeded (conftest seeds torch) and uses a bound of ``Z`` standard errors of
the binomial (or normal) sampling distribution, so it is neither flaky nor loose.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglight.nn import (
    DROPOUT_TYPES,
    DropBlock2d,
    DropConnect,
    Dropout,
    DropPath,
    GaussianDropout,
    LockedDropout,
    drop_path_rates,
)
from reglight.nn import functional as RF

Z = 5.0  # standard errors allowed: two-sided tail 6e-7 per check


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("scaling", ["inverted", "classic"])
def test_dropout_fraction_and_expectation(p: float, scaling: str) -> None:
    n = 400_000
    x = torch.rand(n) + 0.5
    y = Dropout(p, scaling=scaling)(x)
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - p) <= Z * binomial_se(p, n)
    # E[y_i / x_i] = 1/(1-p) * (1-p) (inverted) or (1-p) (classic) = the eval output / x
    ratio = (y / x).double()
    target = Dropout(p, scaling=scaling).eval()(torch.ones(1)).item()
    se = ratio.std().item() / math.sqrt(n)
    assert abs(ratio.mean().item() - target) <= Z * se
    kept = y[y != 0] / x[y != 0]
    expected_kept = 1 / (1 - p) if scaling == "inverted" else 1.0
    torch.testing.assert_close(kept, torch.full_like(kept, expected_kept))


def test_classic_and_inverted_agree_in_expectation() -> None:
    p, n = 0.3, 200_000
    x = torch.randn(1, 8).expand(n, 8).contiguous()
    classic, inverted = Dropout(p, scaling="classic"), Dropout(p, scaling="inverted")
    for layer in (classic, inverted):
        mean = layer(x).double().mean(0)
        expected = layer.eval()(x[:1]).double()[0]
        layer.train()
        se = x[0].abs().double() * math.sqrt(p / (1 - p) / n) * (1 - p if layer is classic else 1)
        assert ((mean - expected).abs() <= Z * se).all()
    # eval rules: classic multiplies by (1 - p), inverted is the identity; expected values agree
    torch.testing.assert_close(classic.eval()(x[:1]) / (1 - p), inverted.eval()(x[:1]))


def test_dropout_inverted_is_torch_dropout() -> None:
    x = torch.randn(64, 32)
    torch.manual_seed(3)
    ours = Dropout(0.4)(x)
    torch.manual_seed(3)
    torch.testing.assert_close(ours, nn.Dropout(0.4)(x), rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_gaussian_dropout_moments(p: float) -> None:
    n = 400_000
    x = torch.rand(n, dtype=torch.float64) + 0.5
    noise = GaussianDropout(p)(x) / x
    var = p / (1 - p)  # the variance of inverted Bernoulli dropout's multiplier
    assert abs(noise.mean().item() - 1) <= Z * math.sqrt(var / n)
    assert abs(noise.var().item() - var) <= Z * var * math.sqrt(2 / (n - 1))
    bern = Dropout(p)(torch.ones(n, dtype=torch.float64))
    assert abs(bern.var().item() - var) <= Z * bern.var().item() * 0.02  # same second moment


def test_drop_connect_linear_statistics() -> None:
    p, draws = 0.3, 3000
    linear = nn.Linear(6, 5, bias=False)
    layer = DropConnect(linear, p)
    eye = torch.eye(6)
    # with one-hot inputs the output is the (transposed) masked weight of that forward pass
    weights = torch.stack([layer(eye).T for _ in range(draws)]).double()
    w = linear.weight.detach().double()
    dropped = (weights == 0).double().mean().item()
    assert abs(dropped - p) <= Z * binomial_se(p, weights.numel())
    se = w.abs() * math.sqrt(p / (1 - p) / draws)
    assert ((weights.mean(0) - w).abs() <= Z * se + 1e-12).all()
    kept = weights != 0
    torch.testing.assert_close(weights[kept], (w / (1 - p)).expand_as(weights)[kept])


def test_drop_connect_one_mask_per_forward() -> None:
    layer = DropConnect(nn.Linear(4, 3), 0.5)
    x = torch.randn(1, 4).expand(16, 4)
    y = layer(x)
    torch.testing.assert_close(y, y[:1].expand_as(y))  # the mask is shared by the batch


def test_drop_connect_eval_is_exact_module_and_conv_works() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = DropConnect(conv, 0.5)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer.eval()(x), conv(x), rtol=0, atol=0)
    layer.train()
    y = layer(x)
    assert y.shape == (2, 4, 6, 6) and not torch.allclose(y, conv(x))
    y.sum().backward()
    assert conv.weight.grad is not None and (conv.weight.grad == 0).any()  # dropped weights


def test_drop_connect_state_dict_keys_stay_loadable() -> None:
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Conv1d(8, 2, 1, bias=False))
    wrapped = copy.deepcopy(plain)
    wrapped[0] = DropConnect(wrapped[0], 0.2)
    wrapped[2] = DropConnect(wrapped[2], 0.2)
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    assert [n for n, _ in wrapped.named_parameters()] == [n for n, _ in plain.named_parameters()]
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Conv1d(8, 2, 1, bias=False))
    fresh.load_state_dict(wrapped.state_dict())
    wrapped.load_state_dict(plain.state_dict())
    x = torch.randn(3, 4)
    torch.testing.assert_close(wrapped.eval()[0](x), fresh[0](x), rtol=0, atol=0)
    # conversions move the shared tensors and the wrapper uses them
    double = copy.deepcopy(wrapped).double()
    assert double[0](x.double()).dtype == torch.float64


@pytest.mark.parametrize("p", [0.25, 0.7])
def test_drop_path_drops_whole_samples(p: float) -> None:
    n = 60_000
    x = torch.rand(n, 3, 2, 2) + 0.5
    y = DropPath(p)(x) / x
    per_sample = y.flatten(1)
    torch.testing.assert_close(per_sample, per_sample[:, :1].expand_as(per_sample))  # per sample
    dropped = (per_sample[:, 0] == 0).double().mean().item()
    assert abs(dropped - p) <= Z * binomial_se(p, n)
    kept = per_sample[per_sample[:, 0] != 0, 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    no_scale = DropPath(p, scale_by_keep=False)(torch.ones(100, 4))
    assert set(no_scale.unique().tolist()) <= {0.0, 1.0}


def test_drop_path_rates_linear_rule() -> None:
    rates = drop_path_rates(0.3, 6)
    assert len(rates) == 6
    for layer, rate in enumerate(rates, start=1):
        assert rate == pytest.approx(layer / 6 * 0.3, abs=1e-15)
    assert drop_path_rates(0.0, 3) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="depth"):
        drop_path_rates(0.1, 0)
    with pytest.raises(ValueError, match="p_max"):
        drop_path_rates(1.0, 4)


@pytest.mark.parametrize("batch_first", [True, False])
def test_locked_dropout_one_mask_across_time(batch_first: bool) -> None:
    p, n, t, d = 0.4, 2000, 7, 16
    shape = (n, t, d) if batch_first else (t, n, d)
    x = torch.rand(shape) + 0.5
    y = LockedDropout(p, batch_first=batch_first)(x) / x
    time_dim = 1 if batch_first else 0
    first = y.select(time_dim, 0).unsqueeze(time_dim)
    torch.testing.assert_close(y, first.expand_as(y))  # one mask per (sequence, feature)
    dropped = (first == 0).double().mean().item()
    assert abs(dropped - p) <= Z * binomial_se(p, n * d)
    kept = first[first != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))


ALL = [
    lambda p: Dropout(p),
    lambda p: Dropout(p, scaling="classic"),
    lambda p: GaussianDropout(p),
    lambda p: DropConnect(nn.Linear(4, 4), p),
    lambda p: DropBlock2d(p, 3),
    lambda p: DropPath(p),
    lambda p: LockedDropout(p),
]


def _input_for(layer: nn.Module) -> torch.Tensor:
    if isinstance(layer, DropBlock2d):
        return torch.randn(2, 3, 6, 6)
    if isinstance(layer, LockedDropout):
        return torch.randn(2, 5, 4)
    return torch.randn(3, 4)


@pytest.mark.parametrize("make", ALL)
def test_identity_in_eval_and_p_zero(make) -> None:  # type: ignore[no-untyped-def]
    layer = make(0.5)
    x = _input_for(layer)
    if not (isinstance(layer, Dropout) and layer.scaling == "classic"):
        out = layer.eval()(x)
        ref = x if not isinstance(layer, DropConnect) else layer.wrapped(x)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    layer.train()
    layer.p = 0.0  # a schedule may change p between steps, no re-initialisation
    ref = x if not isinstance(layer, DropConnect) else F.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=0)
    assert "p=0.0" in repr(layer)
    assert isinstance(layer, DROPOUT_TYPES)


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), "0.5"])
def test_invalid_p_names_argument_and_value(make, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"`p`.*" + repr(bad).replace("(", r"\(")[:4]):
        make(bad)
    layer = make(0.1)
    with pytest.raises(ValueError, match="`p`"):
        layer.p = bad


def test_other_validation_errors() -> None:
    with pytest.raises(ValueError, match=r"`scaling`.*'scaled'"):
        Dropout(0.1, scaling="scaled")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`block_size`.*0"):
        DropBlock2d(0.1, block_size=0)
    with pytest.raises(ValueError, match="4-dimensional"):
        DropBlock2d(0.1)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="3-dimensional"):
        LockedDropout(0.1)(torch.randn(2, 3))
    with pytest.raises(TypeError, match="weight"):
        DropConnect(nn.ReLU())
    with_child = nn.Linear(2, 2)
    with_child.add_module("act", nn.ReLU())
    with pytest.raises(TypeError, match="submodules"):
        DropConnect(with_child)


def test_gradients_are_mask_times_scale() -> None:
    """gradcheck with the mask fixed by reseeding, then the closed form dy/dx = y/x."""
    fns = [
        lambda x: RF.dropout(x, 0.3, scaling="classic"),
        lambda x: RF.gaussian_dropout(x, 0.3),
        lambda x: RF.drop_path(x, 0.3),
        lambda x: RF.locked_dropout(x, 0.3),
        lambda x: RF.drop_block2d(x.view(1, 2, 3, 4), 0.3, 2).view_as(x),
    ]
    for fn in fns:
        x = torch.rand(2, 3, 4, dtype=torch.float64) + 0.5

        def seeded(t: torch.Tensor, fn=fn) -> torch.Tensor:  # type: ignore[no-untyped-def]
            torch.manual_seed(11)
            return fn(t)

        assert torch.autograd.gradcheck(seeded, (x.requires_grad_(),))
        y = seeded(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        torch.testing.assert_close(grad, (y / x).detach())
