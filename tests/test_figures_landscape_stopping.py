"""Gallery figures 5, 6 and 8: their data functions checked on their numbers against references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from reglight import landscape
from reglight.figures import batchnorm_landscape as bnl
from reglight.figures import early_stopping as es
from reglight.figures import flat_sharp as fs


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# ------------------------------------------------------------------ figure 5: flat vs sharp
def test_filter_normalized_directions_have_the_weights_filter_norms() -> None:
    model = fs.mlp(16, 2)
    d = landscape.random_directions(model, generator=torch.Generator().manual_seed(0))
    for name, p in model.named_parameters():
        if p.dim() > 1:
            torch.testing.assert_close(d[name].norm(dim=1), p.detach().norm(dim=1))
        else:
            assert d[name].abs().sum() == 0


def _arpack_top_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Reference: SciPy's ARPACK (`eigsh`) on Hessian-vector products by plain double backward."""
    import numpy as np
    from scipy.sparse.linalg import LinearOperator, eigsh

    params = list(model.parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])

    def matvec(v: np.ndarray) -> np.ndarray:
        vt = torch.as_tensor(np.asarray(v).reshape(-1), dtype=flat.dtype)
        hv = torch.autograd.grad(flat, params, vt, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).double().numpy()

    n = flat.numel()
    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    return float(eigsh(op, k=1, which="LA", tol=1e-8, v0=np.ones(n))[0][0])


def test_flat_sharp_numbers_match_direct_computations() -> None:
    data = fs.flat_sharp_data(seed=0, epochs=3, grid=3, variants=("plain", "sam"), hidden=12)
    x, y, xt, yt = fs.digits(0)
    assert [v.name for v in data.variants] == ["plain", "sam"]
    for v in data.variants:
        with torch.no_grad():
            loss = float(F.cross_entropy(v.model(x), y))
        # the plane's centre is the weights themselves; the sharpness's L(θ) is the same loss
        assert v.plane.losses[1, 1].item() == pytest.approx(loss, rel=1e-5)
        assert v.train_loss == pytest.approx(loss, rel=1e-5)
        with torch.no_grad():
            acc = float((v.model(xt).argmax(-1) == yt).float().mean())
        assert v.test_acc == pytest.approx(acc)
        assert v.top_eigenvalue == pytest.approx(_arpack_top_eigenvalue(v.model, x, y), rel=1e-3)
        assert v.sharpness >= 0.0
    fig = fs.flat_sharp_figure(data)
    assert len(fig.axes) == 5  # two surfaces, two contour maps, one colour bar


# ------------------------------------------------------------------ figure 6: batch norm
def _dense_gradient(f, theta: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """Central finite differences, one coordinate at a time (float64)."""
    grad = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = h
        grad[i] = (f(theta + e) - f(theta - e)) / (2 * h)
    return grad


def test_gradient_predictiveness_matches_dense_finite_differences() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    def loss_at(theta: torch.Tensor) -> torch.Tensor:
        parts = [t.reshape(s) for t, s in zip(theta.split(sizes), shapes, strict=True)]
        ps = dict(zip(names, parts, strict=True))
        with (
            torch.no_grad()
        ):  # training-mode batch norm: batch statistics (on copies of the buffers)
            out = functional_call(model, {**ps, **{n: b.clone() for n, b in buffers.items()}}, (x,))
        return F.cross_entropy(out, y)

    model.train()
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    etas = [0.05, 0.2, 0.5]
    result = bnl.gradient_step_profile(
        model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), (x, y), etas
    )
    g = _dense_gradient(loss_at, theta)
    assert result.gradient_norm == pytest.approx(float(g.norm()), rel=1e-6)
    assert result.losses[0].item() == pytest.approx(float(loss_at(theta)), rel=1e-12)
    for i, eta in enumerate(etas, start=1):
        moved = theta - eta * g
        assert result.losses[i].item() == pytest.approx(float(loss_at(moved)), rel=1e-8)
        change = float((_dense_gradient(loss_at, moved) - g).norm())
        assert result.gradient_changes[i].item() == pytest.approx(change, rel=1e-5, abs=1e-9)
    assert result.beta_smoothness == pytest.approx(
        max(
            float(c) / (e * result.gradient_norm)
            for c, e in zip(result.gradient_changes[1:], etas, strict=True)
        )
    )
    # the model is left as found: training mode, running statistics untouched
    assert model.training and torch.equal(model[1].running_mean, buffers["1.running_mean"])


def test_batchnorm_trace_starts_at_the_training_loss() -> None:
    data = bnl.batchnorm_data(seed=0, steps=4, every=2, grid=3, depth=2, hidden=16)
    assert [t.name for t in data.traces] == ["no batch norm", "batch norm"]
    for trace in data.traces:
        assert trace.steps == [0, 2]
        for step, profile in zip(trace.steps, trace.profiles, strict=True):
            # η = 0 of the profile (slice_1d) is the loss the training step computed on that minibatch
            assert profile.losses[0].item() == pytest.approx(trace.train_loss[step], rel=1e-5)
        lo, hi = trace.loss_range()
        assert all(a <= b for a, b in zip(lo, hi, strict=True))
        assert trace.plane is not None and trace.plane.losses.shape == (3, 3)
    assert len(bnl.batchnorm_figure(data).axes) == 4


# ------------------------------------------------------------------ figure 8: early stopping
def test_early_stopping_curves_follow_prechelts_formulas(tmp_path) -> None:
    from reglight.recipes.medical_cnn import write_synthetic_medmnist

    write_synthetic_medmnist(tmp_path / "breastmnist.npz", n_samples=(64, 32, 32), seed=0)
    data = es.early_stopping_data(
        True,
        0,
        root=tmp_path,
        max_epochs=6,
        threshold=0.05,
        strip_length=2,
        overrides=("--data.batch_size=32",),
    )
    assert not data.synthetic and len(data.epochs) == len(data.gl) == len(data.val_loss)
    e_opt = math.inf
    gl_ref = []
    for e_va in data.val_loss:
        e_opt = min(e_opt, e_va)
        gl_ref.append(100.0 * (e_va / e_opt - 1.0))
    assert data.gl == pytest.approx(gl_ref, rel=1e-5, abs=1e-6)
    # the restored epoch is the one with the lowest validation loss
    best = min(range(len(data.val_loss)), key=data.val_loss.__getitem__)
    assert data.best_epoch == data.epochs[best] and data.restored
    # P_k over each strip of k training losses; training stops at the first strip end with GL / P_k > α
    k = data.strip_length
    pk_ref, pq_ref = [], []
    for end in range(k, len(data.train_loss) + 1, k):
        strip = data.train_loss[end - k : end]
        pk_ref.append(1000.0 * (sum(strip) / (k * min(strip)) - 1.0))
        pq_ref.append((data.epochs[end - 1], gl_ref[end - 1] / pk_ref[-1]))
    assert data.pk == pytest.approx(pk_ref, rel=1e-5)
    above = [e for e, pq in pq_ref if pq > data.threshold]
    assert data.stopped_epoch == (above[0] if above else None)
    assert data.epochs[-1] == (above[0] if above else 5)
    assert 0.0 <= data.test_auc <= 1.0
