"""Sharpness against a brute-force maximum; slices against direct loss evaluations; filter normalization
against the weights' filter norms; figures."""

from __future__ import annotations

import copy
import math

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.nn import functional as F

from reglight import landscape as ls


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logistic_problem() -> tuple[nn.Module, list[tuple[Tensor, Tensor]]]:
    """Logistic regression with 2 weights: a convex loss, so the box maximum is at a vertex."""
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.8, -1.5]]))
    g = _gen(2)
    x = torch.randn(20, 2, generator=g, dtype=torch.float64)
    y = (torch.rand(20, generator=g) < 0.5).double()
    return model, [(x, y)]


def _bce(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    return F.binary_cross_entropy_with_logits(model(batch[0]).squeeze(1), batch[1])


def _loss_at(model: nn.Module, batch: tuple[Tensor, Tensor], w: Tensor) -> Tensor:
    """The loss at weights `w` of shape (..., 2), computed directly."""
    x, y = batch
    logits = torch.einsum("...j,nj->...n", w, x)
    return F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none").mean(
        -1
    )


def test_keskar_sharpness_equals_brute_force_box_maximum():
    model, batches = _logistic_problem()
    eps = 0.2
    w0 = model.weight.detach()[0]
    half = eps * (w0.abs() + 1)
    t = torch.linspace(-1, 1, 201, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1) * half + w0
    losses = _loss_at(model, batches[0], grid)
    base = float(_loss_at(model, batches[0], w0))
    brute = float(losses.max())
    res = ls.sharpness(model, _bce, batches, epsilon=eps, generator=_gen())
    assert math.isclose(res.loss, base, rel_tol=1e-12)
    assert math.isclose(res.max_loss, brute, rel_tol=1e-9)
    assert math.isclose(res.sharpness, 100 * (brute - base) / (1 + base), rel_tol=1e-9)
    delta = res.perturbation[0][0]
    assert bool((delta.abs() <= half * (1 + 1e-12)).all())
    assert math.isclose(float(_loss_at(model, batches[0], w0 + delta)), res.max_loss, rel_tol=1e-12)


def test_adaptive_sharpness_equals_brute_force_maximum_on_the_scaled_ball():
    model, batches = _logistic_problem()
    eps, eta = 0.3, 0.01
    w0 = model.weight.detach()[0]
    scale = w0.abs() + eta
    angle = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)
    # a convex loss: the maximum over the ellipse is on its boundary
    boundary = w0 + eps * scale * torch.stack([angle.cos(), angle.sin()], -1)
    brute = float(_loss_at(model, batches[0], boundary).max())
    res = ls.sharpness(model, _bce, batches, epsilon=eps, adaptive=True, generator=_gen())
    assert res.max_loss <= brute * (1 + 1e-8)  # the boundary grid is fine but finite
    assert math.isclose(res.max_loss, brute, rel_tol=1e-6)
    z = res.perturbation[0][0] / scale
    assert float(z.norm()) <= eps * (1 + 1e-9)


def test_sharpness_is_nonnegative_and_grows_with_epsilon():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    g = _gen(3)
    batches = [
        (
            torch.randn(32, 3, generator=g, dtype=torch.float64),
            torch.randint(0, 2, (32,), generator=g),
        )
    ]

    def loss(m: nn.Module, b: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(m(b[0]), b[1])

    values = [
        ls.sharpness(model, loss, batches, epsilon=e, generator=_gen()).sharpness
        for e in (1e-3, 1e-2, 1e-1)
    ]
    assert all(v >= 0 for v in values)
    assert values[0] < values[1] < values[2]


def _conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)
    ).double()


def test_filter_normalization_matches_the_weights_filter_norms():
    model = _conv_model()
    d = ls.random_directions(model, generator=_gen())
    for name, p in model.named_parameters():
        if p.dim() > 1:
            for i in range(p.shape[0]):  # one filter: an output channel / an output unit
                assert math.isclose(
                    float(d[name][i].norm()), float(p[i].detach().norm()), rel_tol=1e-9
                )
        else:
            assert torch.equal(d[name], torch.zeros_like(p))
    kept = ls.random_directions(model, ignore_bias_and_norm=False, generator=_gen())
    for name, p in model.named_parameters():
        if p.dim() <= 1:
            assert torch.equal(kept[name], p.detach())
    layer = ls.random_directions(model, "layer", generator=_gen())
    assert math.isclose(
        float(layer["0.weight"].norm()), float(model[0].weight.detach().norm()), rel_tol=1e-9
    )
    whole = ls.random_directions(model, "model", generator=_gen())
    w_norm = math.hypot(
        float(model[0].weight.detach().norm()), float(model[4].weight.detach().norm())
    )
    d_norm = math.hypot(float(whole["0.weight"].norm()), float(whole["4.weight"].norm()))
    assert math.isclose(d_norm, w_norm, rel_tol=1e-9)
    state = torch.get_rng_state()
    ls.random_directions(model, generator=_gen())
    assert torch.equal(torch.get_rng_state(), state)


def _direct_loss(model: nn.Module, batches, loss_fn, shift: dict[str, Tensor]) -> float:
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, p in twin.named_parameters():
            if name in shift:
                p.add_(shift[name])
        return float(torch.stack([loss_fn(twin, b) for b in batches]).mean())


def _conv_batches():
    g = _gen(5)
    x = torch.randn(12, 2, 5, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    return [(x[:6], y[:6]), (x[6:], y[6:])]


def _ce(m: nn.Module, b: tuple[Tensor, Tensor]) -> Tensor:
    return F.cross_entropy(m(b[0]), b[1])


def test_slices_equal_direct_loss_evaluations():
    model, batches = _conv_model(), _conv_batches()
    dx = ls.random_directions(model, generator=_gen(1))
    dy = ls.random_directions(model, generator=_gen(2))
    alphas = [-1.0, -0.25, 0.0, 0.5]
    one = ls.slice_1d(model, _ce, batches, dx, alphas)
    for a, value in zip(alphas, one.losses):
        expected = _direct_loss(model, batches, _ce, {n: a * t for n, t in dx.items()})
        assert math.isclose(float(value), expected, rel_tol=1e-12)
    xs, ys = [-0.5, 0.0, 0.75], [0.25, 1.0]
    two = ls.slice_2d(model, _ce, batches, dx, dy, xs, ys)
    assert two.losses.shape == (2, 3)
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            shift = {n: x * dx[n] + y * dy[n] for n in dx}
            assert math.isclose(
                float(two.losses[j, i]), _direct_loss(model, batches, _ce, shift), rel_tol=1e-12
            )


def test_interpolation_between_two_weight_sets():
    model, batches = _conv_model(), _conv_batches()
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5).add_(0.1)
    res = ls.slice_1d(model, _ce, batches, target=other, alphas=[0.0, 0.3, 1.0])
    for a, value in zip([0.0, 0.3, 1.0], res.losses):
        shift = {
            n: a * (q.detach() - p.detach())
            for (n, p), q in zip(model.named_parameters(), other.parameters())
        }
        assert math.isclose(float(value), _direct_loss(model, batches, _ce, shift), rel_tol=1e-12)
    # a state dict works the same; alpha = 1 is the other model's loss (its buffers are the same here)
    res2 = ls.slice_1d(model, _ce, batches, target=other.state_dict(), alphas=[1.0])
    assert math.isclose(float(res2.losses[0]), _direct_loss(other, batches, _ce, {}), rel_tol=1e-12)


def test_figures_are_agg_figures_without_pyplot_state():
    before = plt.get_fignums()
    xs = torch.linspace(-1, 1, 7, dtype=torch.float64)
    s1 = ls.Slice1D(xs, xs**2)
    s2 = ls.Slice2D(xs, xs[:5], xs[None, :] ** 2 + xs[:5, None] ** 2 + 0.1)
    figs = [
        ls.plot_slice_1d(s1, title="1-D"),
        ls.plot_contour(s2, log_scale=True),
        ls.plot_surface(s2),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        assert type(fig.canvas).__name__ == "FigureCanvasAgg"
        fig.canvas.draw()
    assert plt.get_fignums() == before
    line = figs[0].axes[0].lines[0]
    torch.testing.assert_close(torch.as_tensor(line.get_ydata()), s1.losses)
    with pytest.raises(TypeError, match="`result` must be a Slice2D, got Slice1D"):
        ls.plot_contour(s1)  # type: ignore[arg-type]
