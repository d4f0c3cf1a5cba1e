"""PenaltyHook against references: the penalty in the loss, hand-written ISTA / proximal Adam, sklearn."""

from __future__ import annotations

import copy
import csv
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from sklearn.linear_model import Lasso
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import PenaltyHook
from reglight.penalties import L1, ElasticNet, GroupLasso, penalty_loss


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
    """SGD that records the gradients it is about to use (after hooks and clipping)."""

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
    def __init__(self, penalty_in_loss: Any = None, lr: float = 0.05) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
        self.penalty_in_loss = penalty_in_loss
        self.lr = lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        if self.penalty_in_loss is not None:
            loss = loss + penalty_loss(self, self.penalty_in_loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        self.opt = RecordingSGD(self.parameters(), lr=self.lr)
        return self.opt


def _regression_data(n: int = 64, batch_size: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    y = x[:, :2].sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


@pytest.mark.parametrize(
    "trainer_kwargs",
    [
        {},
        {"accumulate_grad_batches": 4, "gradient_clip_val": 0.05},
        {"precision": "bf16-mixed", "gradient_clip_val": 0.05, "gradient_clip_algorithm": "value"},
    ],
    ids=["plain", "accumulate4-clip", "bf16-clip"],
)
def test_gradient_method_equals_penalty_in_loss(trainer_kwargs: dict[str, Any]) -> None:
    # bf16 autocast rounds the forward pass: keep the weights fixed (lr=0) so both runs see the
    # same bf16 weights and only the gradient is compared
    lr = 0.0 if "precision" in trainer_kwargs else 0.05
    hooked = Regressor(lr=lr)
    _trainer(max_epochs=2, callbacks=[PenaltyHook(ElasticNet(0.05, 0.5))], **trainer_kwargs).fit(
        hooked, _regression_data()
    )
    reference = Regressor(penalty_in_loss=ElasticNet(0.05, 0.5), lr=lr)
    _trainer(max_epochs=2, **trainer_kwargs).fit(reference, _regression_data())

    n_steps = 16 // trainer_kwargs.get("accumulate_grad_batches", 1)
    assert len(hooked.opt.record) == len(reference.opt.record) == n_steps
    for step, (got, ref) in enumerate(zip(hooked.opt.record, reference.opt.record)):
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r, rtol=0, atol=1e-6, msg=f"step {step}")
    for p, q in zip(hooked.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    if "gradient_clip_val" in trainer_kwargs:  # clipping really acted, on penalized gradients
        unclipped = Regressor(lr=lr)
        kwargs = {k: v for k, v in trainer_kwargs.items() if not k.startswith("gradient_clip")}
        _trainer(max_epochs=2, callbacks=[PenaltyHook(ElasticNet(0.05, 0.5))], **kwargs).fit(
            unclipped, _regression_data()
        )
        assert not torch.allclose(unclipped.opt.record[0][0], hooked.opt.record[0][0])


class LeastSquares(pl.LightningModule):
    """0.5 * mean((Xw + b - y)^2), full batch; weight and intercept in separate parameter groups."""

    def __init__(self, d: int, optimizer: str, lr: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(d, 1)
        self.optimizer, self.lr = optimizer, lr
        self.trajectory: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return 0.5 * (self.linear(x).squeeze(1) - y).square().mean()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.trajectory.append(
            (self.linear.weight.detach()[0].clone(), self.linear.bias.detach().clone())
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = [
            {"params": [self.linear.weight], "lr": self.lr},
            {"params": [self.linear.bias], "lr": self.lr / 2},
        ]
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups)
        return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-8)


def _lasso_problem(n: int = 100, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, d, generator=g)
    coef = torch.tensor([2.0, -1.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.05])
    y = x @ coef + 3.0 + 0.3 * torch.randn(n, generator=g)
    return x, y


def test_proximal_sgd_is_ista_step_for_step_and_converges_to_sklearn_lasso() -> None:
    x, y = _lasso_problem()
    lam, lr, steps = 0.1, 0.4, 150
    model = LeastSquares(8, "sgd", lr)
    w, b = model.linear.weight.detach()[0].clone(), model.linear.bias.detach().clone()
    hook = PenaltyHook(L1(lam), method="proximal")
    _trainer(max_epochs=steps, callbacks=[hook]).fit(
        model, DataLoader(TensorDataset(x, y), batch_size=len(x))
    )
    assert hook.parameters == [model.linear.weight]  # the intercept is not penalized

    n = len(x)
    for k, (w_got, b_got) in enumerate(model.trajectory):  # hand-written ISTA
        r = x @ w + b - y
        z = w - lr * (x.T @ r) / n
        w = torch.sign(z) * torch.clamp(z.abs() - lr * lam, min=0.0)
        b = b - lr / 2 * r.mean()
        torch.testing.assert_close(w_got, w, rtol=1e-5, atol=1e-6, msg=f"step {k}")
        torch.testing.assert_close(b_got, b, rtol=1e-5, atol=1e-6, msg=f"step {k}")
        assert torch.equal(w_got == 0, w == 0), f"step {k}"
    assert len(model.trajectory) == steps
    final = model.linear.weight.detach()[0]
    assert int((final == 0).sum()) >= 3  # exact zeros

    sk = Lasso(alpha=lam, tol=1e-12, max_iter=100_000).fit(x.numpy().astype(np.float64), y.numpy())
    np.testing.assert_allclose(final.numpy(), sk.coef_, atol=1e-4)
    np.testing.assert_allclose(model.linear.bias.item(), sk.intercept_, atol=1e-4)
    assert np.array_equal(final.numpy() == 0, sk.coef_ == 0)


def test_proximal_adam_uses_per_coordinate_steps() -> None:
    x, y = _lasso_problem()
    lam, lr, steps = 0.1, 0.05, 40
    model = LeastSquares(8, "adam", lr)
    w = model.linear.weight.detach()[0].double().clone()
    b = model.linear.bias.detach().double().clone()
    _trainer(max_epochs=steps, callbacks=[PenaltyHook(L1(lam), method="proximal")]).fit(
        model, DataLoader(TensorDataset(x, y), batch_size=len(x))
    )
    xd, yd, n = x.double(), y.double(), len(x)
    state = {"w": [torch.zeros_like(w)] * 2, "b": [torch.zeros_like(b)] * 2}
    for t, (w_got, b_got) in enumerate(model.trajectory, start=1):  # hand-written proximal Adam
        r = xd @ w + b - yd
        new = {}
        for key, p, g, step_lr in (
            ("w", w, xd.T @ r / n, lr),
            ("b", b, r.mean(0, keepdim=True), lr / 2),
        ):
            m, v = state[key]
            m, v = 0.9 * m + 0.1 * g, 0.99 * v + 0.01 * g * g
            state[key] = [m, v]
            denom = (v / (1 - 0.99**t)).sqrt() + 1e-8
            p = p - step_lr * (m / (1 - 0.9**t)) / denom
            if key == "w":  # prox in Adam's metric: threshold lr * lam / (sqrt(v_hat) + eps)
                p = torch.sign(p) * torch.clamp(p.abs() - step_lr * lam / denom, min=0.0)
            new[key] = p
        w, b = new["w"], new["b"]
        torch.testing.assert_close(w_got.double(), w, rtol=1e-4, atol=1e-5, msg=f"step {t}")
        torch.testing.assert_close(b_got.double(), b, rtol=1e-4, atol=1e-5, msg=f"step {t}")
    assert int((model.trajectory[-1][0] == 0).sum()) >= 1


class TwoOptimizers(pl.LightningModule):
    """Manual optimization with one optimizer per layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 1)
        self.automatic_optimization = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_a, opt_b = self.optimizers()  # type: ignore[misc]
        x, y = batch
        loss = F.mse_loss(self(x), y)
        opt_a.zero_grad()
        opt_b.zero_grad()
        self.manual_backward(loss)
        opt_a.step()
        opt_b.step()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.SGD(self.a.parameters(), lr=0.1),
            torch.optim.SGD(self.b.parameters(), lr=0.02),
        ]


@pytest.mark.parametrize("method", ["gradient", "proximal"])
def test_several_optimizers(method: str) -> None:
    model = TwoOptimizers()
    reference = copy.deepcopy(model)
    lam = 0.05
    _trainer(max_epochs=1, callbacks=[PenaltyHook(L1(lam), method=method)]).fit(
        model, _regression_data()
    )
    opts = [(reference.a, 0.1), (reference.b, 0.02)]
    for x, y in _regression_data():
        for layer, _ in opts:
            layer.zero_grad()
        F.mse_loss(reference(x), y).backward()
        with torch.no_grad():
            for layer, lr in opts:
                g_w = layer.weight.grad + (
                    lam * layer.weight.sign() if method == "gradient" else 0.0
                )
                z = layer.weight - lr * g_w
                if method == "proximal":
                    z = torch.sign(z) * torch.clamp(z.abs() - lr * lam, min=0.0)
                layer.weight.copy_(z)
                layer.bias -= lr * layer.bias.grad
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


class StrengthAt(pl.Callback):
    """Sets the penalty's alpha at the end of one epoch (as a schedule would)."""

    def __init__(self, hook: PenaltyHook, epoch: int, value: float) -> None:
        self.hook, self.epoch, self.value = hook, epoch, value

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            self.hook.penalty.alpha = self.value


def test_alpha_change_is_used_and_resume_restores_it(tmp_path: Any) -> None:
    def hook() -> PenaltyHook:
        return PenaltyHook(ElasticNet(0.01, 0.7), method="proximal")

    full_hook = hook()
    full = Regressor()
    _trainer(max_epochs=3, callbacks=[full_hook, StrengthAt(full_hook, 0, 0.2)]).fit(
        full, _regression_data()
    )
    assert full_hook.penalty.alpha == 0.2

    first_hook = hook()
    first = Regressor()
    trainer = _trainer(max_epochs=1, callbacks=[first_hook, StrengthAt(first_hook, 0, 0.2)])
    trainer.fit(first, _regression_data())
    ckpt = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(ckpt)

    resumed_hook = hook()  # starts at 0.01; the checkpoint says 0.2
    resumed = Regressor()
    _trainer(max_epochs=3, callbacks=[resumed_hook]).fit(
        resumed, _regression_data(), ckpt_path=ckpt
    )
    assert resumed_hook.penalty.alpha == 0.2 and resumed_hook.penalty.l1_ratio == 0.7
    for p, q in zip(resumed.parameters(), full.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)
    # without the restored alpha the result would differ
    unrestored = Regressor()
    _trainer(max_epochs=3, callbacks=[hook()]).fit(unrestored, _regression_data())
    assert not torch.allclose(unrestored.net[0].weight, full.net[0].weight)


def test_logging_at_log_interval_only(tmp_path: Any) -> None:
    class Counting(GroupLasso):
        calls = 0

        def value(self, params: Any) -> torch.Tensor:
            Counting.calls += 1
            return super().value(params)

    model = Regressor(lr=0.2)
    hook = PenaltyHook(Counting(0.3), method="proximal", include="net.0.weight")
    logger = CSVLogger(tmp_path, name="", version="")
    trainer = _trainer(max_epochs=3, log_every_n_steps=4, callbacks=[hook], logger=logger)
    trainer.fit(model, _regression_data())  # 24 steps
    assert Counting.calls == 6  # steps 4, 8, ..., 24
    # every value computed is one the Trainer writes to its logger (Lightning's own log-step rule)
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("penalty/value")]
    assert [int(r["step"]) for r in rows] == [3, 7, 11, 15, 19, 23]
    metrics = trainer.callback_metrics
    w = model.net[0].weight.detach()
    torch.testing.assert_close(metrics["penalty/value"], hook.penalty.value([w]))
    assert float(metrics["penalty/alpha"]) == pytest.approx(0.3)
    assert float(metrics["penalty/zero_fraction"]) == pytest.approx(float((w == 0).float().mean()))
    dead = float((w.norm(dim=1) == 0).float().mean())
    assert dead > 0  # some hidden units were switched off entirely
    assert float(metrics["penalty/dead_group_fraction"]) == pytest.approx(dead)


@pytest.mark.usefixtures("needs_torch_compile")
def test_fused_gradient_method_equals_penalty_in_loss() -> None:
    hooked = Regressor()
    hook = PenaltyHook(ElasticNet(0.05, 0.5), fused=True)
    _trainer(max_epochs=2, callbacks=[hook]).fit(hooked, _regression_data())
    reference = Regressor(penalty_in_loss=ElasticNet(0.05, 0.5))
    _trainer(max_epochs=2).fit(reference, _regression_data())
    assert hook._fused is not None and hook._fused.failure is None  # the compiled kernel ran
    assert len(hooked.opt.record) == len(reference.opt.record) == 16
    for step, (got, ref) in enumerate(zip(hooked.opt.record, reference.opt.record)):
        for g, r in zip(got, ref):
            torch.testing.assert_close(g, r, rtol=0, atol=1e-6, msg=f"step {step}")


def test_bad_arguments() -> None:
    with pytest.raises(
        ValueError, match="`method` must be one of 'gradient', 'proximal', got 'prox'"
    ):
        PenaltyHook(L1(0.1), method="prox")
    with pytest.raises(TypeError, match="`penalty`"):
        PenaltyHook(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`include`"):
        PenaltyHook(L1(0.1), include=[1.0])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="`name`"):
        PenaltyHook(L1(0.1), name="")
    with pytest.raises(ValueError, match="`fused=True` needs method='gradient'"):
        PenaltyHook(L1(0.1), method="proximal", fused=True)
    with pytest.raises(ValueError, match="GroupLasso"):
        PenaltyHook(GroupLasso(0.1), fused=True)
    with pytest.raises(ValueError, match=r"`include` entry 'encoder\.\*' matches no parameter"):
        _trainer(max_epochs=1, callbacks=[PenaltyHook(L1(0.1), include="encoder.*")]).fit(
            Regressor(), _regression_data()
        )


def test_two_hooks_have_distinct_state_keys() -> None:
    a = PenaltyHook(L1(0.1), include="net.0.weight", name="first")
    b = PenaltyHook(L1(0.2), include="net.2.weight", name="second")
    assert a.state_key != b.state_key
    b.load_state_dict(a.state_dict())
    assert b.penalty.alpha == 0.1
