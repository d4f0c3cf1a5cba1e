"""GradientFilter (Grokfast EMA) and OrthogonalGradient (⊥Grad) against hand-computed references.

References: the EMA recursion of Lee et al. (2024) written out in float64; pytorch-optimizer's `OrthoGrad`
(the authors' projection); closed-form properties of the projection. Trainer runs record the gradients the
optimizer actually uses.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import GradientFilter, OrthogonalGradient
from reglight.callbacks.gradient_filter import grokfast_ema_, orthogonalize_gradients_

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")


def _trainer(**kwargs: Any) -> pl.Trainer:
    defaults: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


class RecordingSGD(torch.optim.SGD):
    """SGD that records the gradients it is about to use (after every callback)."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.record: list[list[torch.Tensor]] = []

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.record.append([p.grad.clone() for g in self.param_groups for p in g["params"]])
        super().step()
        return loss


class Regressor(pl.LightningModule):
    """A float64 MLP on fixed data, full batch; records the raw gradients after each backward."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
        self.lr = lr
        self.raw: list[list[torch.Tensor]] = []
        self.opt: RecordingSGD | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self(x), y)

    def on_after_backward(self) -> None:
        self.raw.append([p.grad.clone() for p in self.parameters()])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        self.opt = RecordingSGD(self.parameters(), lr=self.lr)
        return self.opt


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    return DataLoader(TensorDataset(x, y), batch_size=32)


def _fit(callbacks: list[Any], steps: int, **kwargs: Any) -> Regressor:
    model = Regressor()
    _trainer(max_steps=steps, callbacks=callbacks, **kwargs).fit(model, _loader())
    return model


# ------------------------------------------------------------------------------------ GradientFilter


def test_filter_matches_hand_written_ema_recursion_in_trainer() -> None:
    m, lam = 0.9, 2.5
    model = _fit([GradientFilter(momentum=m, gain=lam)], steps=5)
    assert model.opt is not None and len(model.opt.record) == 5
    mu: list[torch.Tensor] | None = None
    for raw, used in zip(model.raw, model.opt.record, strict=True):
        if mu is None:
            mu = [g.clone() for g in raw]
        else:
            mu = [m * u + (1.0 - m) * g for u, g in zip(mu, raw, strict=True)]
        for g, u, got in zip(raw, mu, used, strict=True):
            torch.testing.assert_close(got, g + lam * u, rtol=1e-12, atol=1e-14)


def test_filter_functional_recursion_float64() -> None:
    g = torch.Generator().manual_seed(3)
    seq = [torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(4)]
    m, lam = 0.7, 1.5
    ema = None
    expect_mu = seq[0].clone()
    for t, x in enumerate(seq):
        if t:
            expect_mu = m * expect_mu + (1 - m) * x
        grads = [x.clone()]
        ema = grokfast_ema_(grads, ema, momentum=m, gain=lam)
        torch.testing.assert_close(ema[0], expect_mu, rtol=0, atol=1e-15)
        torch.testing.assert_close(grads[0], x + lam * expect_mu, rtol=0, atol=1e-15)


def test_filter_gain_zero_is_bit_exact() -> None:
    plain = _fit([], steps=4)
    filtered = _fit([GradientFilter(momentum=0.98, gain=0.0)], steps=4)
    for a, b in zip(plain.parameters(), filtered.parameters(), strict=True):
        assert torch.equal(a, b)


def test_filter_include_exclude_selects_parameters() -> None:
    lam = 1.0
    model = _fit([GradientFilter(momentum=0.5, gain=lam, exclude="*.bias")], steps=1)
    assert model.opt is not None
    names = [n for n, _ in model.named_parameters()]
    for name, raw, used in zip(names, model.raw[0], model.opt.record[0], strict=True):
        expect = raw if name.endswith("bias") else (1 + lam) * raw  # mu_1 = g_1
        torch.testing.assert_close(used, expect, rtol=1e-12, atol=1e-14)


def test_filter_state_dict_resume_equals_uninterrupted(tmp_path: Any) -> None:
    full = _fit([GradientFilter(momentum=0.8, gain=2.0)], steps=6)

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=3)
    first = Regressor()
    _trainer(
        max_steps=3,
        callbacks=[GradientFilter(momentum=0.8, gain=2.0), ckpt],
        enable_checkpointing=True,
    ).fit(first, _loader())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    states = [v for k, v in saved["callbacks"].items() if k.startswith("GradientFilter")]
    assert len(states) == 1 and states[0]["steps"] == 3 and len(states[0]["ema"]) == 4

    resumed_cb = GradientFilter(momentum=0.8, gain=2.0)
    resumed = Regressor()
    _trainer(max_steps=6, callbacks=[resumed_cb]).fit(
        resumed, _loader(), ckpt_path=tmp_path / "last.ckpt"
    )
    assert resumed_cb.steps == 6
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"momentum": 1.0}, "`momentum` must be a probability in [0, 1), got 1.0"),
        ({"momentum": -0.1}, "`momentum`"),
        ({"gain": -1.0}, "`gain` must be a finite number >= 0, got -1.0"),
        ({"gain": math.inf}, "`gain`"),
        ({"momentum": "0.9"}, "`momentum`"),
    ],
)
def test_filter_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(
        ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        GradientFilter(**kwargs)


def test_filter_unknown_include_fails_at_fit_start() -> None:
    with pytest.raises(ValueError, match="matches no parameter"):
        _fit([GradientFilter(include="encoder.*")], steps=1)


def test_filter_keeps_average_when_scaler_skips_a_step() -> None:
    """With a gradient scaler, a non-finite step leaves the averages as they were."""
    net = nn.Linear(2, 1)
    cb = GradientFilter(momentum=0.5, gain=1.0)
    cb.on_fit_start(None, net)  # type: ignore[arg-type]
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object()))
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    cb.on_before_optimizer_step(trainer, net, opt)  # type: ignore[arg-type]
    before = {n: e.clone() for n, e in cb.ema.items()}
    net.weight.grad = torch.tensor([[math.inf, 1.0]])
    net.bias.grad = torch.ones(1)
    cb.on_before_optimizer_step(trainer, net, opt)  # type: ignore[arg-type]
    for n, e in cb.ema.items():
        assert torch.equal(e, before[n])


# --------------------------------------------------------------------------------- OrthogonalGradient


@pytest.mark.parametrize("renormalize", [True, False])
def test_projection_closed_form(renormalize: bool) -> None:
    g = torch.Generator().manual_seed(0)
    ws = [
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(7, generator=g, dtype=torch.float64),
    ]
    gs = [torch.randn(w.shape, generator=g, dtype=torch.float64) for w in ws]
    grads = [x.clone() for x in gs]
    orthogonalize_gradients_(ws, grads, renormalize=renormalize)
    for w, g0, got in zip(ws, gs, grads, strict=True):
        perp = g0 - (g0 * w).sum() / (w * w).sum() * w
        if renormalize:
            perp = perp * g0.norm() / perp.norm()
        torch.testing.assert_close(got, perp, rtol=1e-12, atol=1e-14)
        assert abs(float((got * w).sum())) < 1e-12


def test_projection_matches_pytorch_optimizer_orthograd() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    net(x).square().sum().backward()
    ours = [p.grad.clone() for p in net.parameters()]
    orthogonalize_gradients_(list(net.parameters()), ours)
    reference = pytorch_optimizer.OrthoGrad(torch.optim.SGD(net.parameters(), lr=0.1))
    reference.apply_orthogonal_gradients(net.parameters())
    for a, p in zip(ours, net.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-10, atol=1e-14)


def test_orthogonal_gradient_callback_in_trainer() -> None:
    model = _fit([OrthogonalGradient(include="Linear")], steps=3)
    assert model.opt is not None
    params_per_step = []  # weights before each step: replay SGD from the initial weights
    replay = Regressor()
    for raw, used in zip(model.raw, model.opt.record, strict=True):
        params_per_step.append([p.detach().clone() for p in replay.parameters()])
        for (name, p), g, u in zip(replay.named_parameters(), raw, used, strict=True):
            if name.endswith("weight"):
                w = p.detach()
                perp = g - (g * w).sum() / (w * w).sum() * w
                expect = perp * g.norm() / perp.norm()
            else:  # biases: not selected by the `Linear` class pattern
                expect = g
            torch.testing.assert_close(u, expect, rtol=1e-10, atol=1e-14)
            with torch.no_grad():
                p.sub_(0.05 * u)
    assert len(params_per_step) == 3
