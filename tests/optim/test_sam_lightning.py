"""SAM inside Lightning: the optimizer in `configure_optimizers` and SAMCallback, against float64 references."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from _sam_reference import AdamWRef, SGDRef, sam_reference
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import RegularizationScheduler, SAMCallback, SAMRho
from reglight.optim import SAM
from reglight.schedules import Linear

N, BATCH = 64, 16  # 4 steps per epoch


def data(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(N, 5, generator=g, dtype=dtype)
    y = torch.sin(x[:, :2]) + 0.1 * torch.randn(N, 2, generator=g, dtype=dtype)
    return x, y


class Net(pl.LightningModule):
    def __init__(
        self, optim: str = "sam", dtype: torch.dtype = torch.float64, bn: bool = False, **kw: Any
    ) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)]
        if bn:
            layers.insert(1, nn.BatchNorm1d(8))
        self.net = nn.Sequential(*layers).to(dtype)
        self.optim, self.kw = optim, kw
        self.calls = 0
        self.logged = 0
        self.perturbed: list[bool | None] = []

    def train_dataloader(self) -> DataLoader:
        x, y = data(next(self.parameters()).dtype)
        return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        self.calls += 1
        opt = self.optimizers()
        self.perturbed.append(getattr(opt, "perturbed", None))
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def log(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.logged += 1
        super().log(*args, **kwargs)

    def configure_optimizers(self) -> Any:
        kw = dict(self.kw)
        gamma = kw.pop("gamma", None)
        if self.optim == "sam":
            opt: torch.optim.Optimizer = SAM(self.parameters(), torch.optim.SGD, model=self, **kw)
        elif self.optim == "sam-adamw":
            opt = SAM(self.parameters(), torch.optim.AdamW, model=self, **kw)
        else:
            opt = torch.optim.SGD(self.parameters(), **kw)
        if gamma is None:
            return opt
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def trainer(**kw: Any) -> pl.Trainer:
    opts: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    opts.update(kw)
    return pl.Trainer(**opts)


def loss_fn_for(x: Tensor, y: Tensor):
    def loss_fn(params: list[Tensor], step: int) -> Tensor:
        w1, b1, w2, b2 = params
        i = (step * BATCH) % N
        xb, yb = x[i : i + BATCH], y[i : i + BATCH]
        return F.mse_loss(torch.tanh(xb @ w1.T + b1) @ w2.T + b2, yb)

    return loss_fn


def initial_params() -> list[Tensor]:
    return [p.detach().clone() for p in Net().parameters()]


def assert_params(model: nn.Module, expected: list[Tensor], tol: float = 1e-10) -> None:
    for p, q in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), q, rtol=tol, atol=tol)


def test_fit_with_sam_optimizer_equals_hand_written_loop() -> None:
    steps, gamma = 6, 0.8
    model = Net("sam", rho=0.05, lr=0.1, momentum=0.9, gamma=gamma)
    trainer(max_steps=steps).fit(model)
    x, y = data()
    expected = sam_reference(
        initial_params(),
        loss_fn_for(x, y),
        steps,
        SGDRef(lr=0.1, momentum=0.9),
        0.05,
        lr_at=lambda t: 0.1 * gamma**t,
    )
    assert_params(model, expected)
    # the scheduler stepped once per SAM step, on the base optimizer's groups
    assert model.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * gamma**steps)
    assert model.calls == 2 * steps  # the closure runs twice per step
    # as the module sees it through self.optimizers()
    assert model.perturbed == [False, True] * steps


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_callback_equals_hand_written_loop_and_logs_once(adaptive: bool) -> None:
    steps, rho = 6, (0.5 if adaptive else 0.05)
    model = Net("sgd", lr=0.1, momentum=0.9)
    trainer(max_steps=steps, callbacks=[SAMCallback(rho=rho, adaptive=adaptive, eta=0.01)]).fit(
        model
    )
    x, y = data()
    expected = sam_reference(
        initial_params(),
        loss_fn_for(x, y),
        steps,
        SGDRef(lr=0.1, momentum=0.9),
        rho,
        adaptive,
        0.01,
    )
    assert_params(model, expected)
    assert model.calls == 2 * steps
    assert model.logged == steps  # the second pass is silent


def test_clipping_by_value_with_the_callback_clips_the_descent_gradient_only() -> None:
    steps = 4
    model = Net("sgd", lr=0.1)
    t = trainer(
        max_steps=steps,
        callbacks=[SAMCallback(rho=0.2)],
        gradient_clip_val=0.05,
        gradient_clip_algorithm="value",
    )
    t.fit(model)
    x, y = data()
    expected = sam_reference(
        initial_params(),
        loss_fn_for(x, y),
        steps,
        SGDRef(lr=0.1),
        0.2,
        clip=lambda gs: [g.clamp(-0.05, 0.05) for g in gs],
    )
    assert_params(model, expected)


def test_clipping_by_norm_with_the_optimizer_leaves_the_ascent_unchanged() -> None:
    steps, c = 4, 0.05

    def clip(gs: list[Tensor]) -> list[Tensor]:
        norm = torch.sqrt(sum((g**2).sum() for g in gs))
        return [g * min(1.0, c / (float(norm) + 1e-6)) for g in gs]

    model = Net("sam", rho=0.2, lr=0.1)
    trainer(max_steps=steps, gradient_clip_val=c, gradient_clip_algorithm="norm").fit(model)
    x, y = data()
    expected = sam_reference(
        initial_params(), loss_fn_for(x, y), steps, SGDRef(lr=0.1), 0.2, clip=clip
    )
    assert_params(model, expected)


@pytest.mark.parametrize("form", ["optimizer", "callback"])
def test_batchnorm_statistics_updated_once_per_step(form: str) -> None:
    if form == "optimizer":
        model, callbacks = Net("sam", bn=True, rho=0.1, lr=0.1), []
    else:
        model, callbacks = Net("sgd", bn=True, lr=0.1), [SAMCallback(rho=0.1)]
    reference = copy.deepcopy(model.net).train()
    x, _ = data()
    reference(x[:BATCH])  # one plain forward at the starting weights
    trainer(max_steps=1, callbacks=callbacks).fit(model)
    bn, ref = model.net[1], reference[1]
    torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=0)
    assert int(bn.num_batches_tracked) == 1


def test_accumulation_is_exact_with_the_callback_and_refused_by_the_optimizer() -> None:
    # 2 micro-batches of 16 = SAM on batches of 32 (the loss is a mean over equal-sized micro-batches)
    steps = 4
    model = Net("sgd", lr=0.1, momentum=0.9)
    trainer(max_steps=steps, accumulate_grad_batches=2, callbacks=[SAMCallback(rho=0.1)]).fit(model)
    x, y = data()

    def loss_fn(params: list[Tensor], step: int) -> Tensor:
        w1, b1, w2, b2 = params
        i = (step * 2 * BATCH) % N
        xb, yb = x[i : i + 2 * BATCH], y[i : i + 2 * BATCH]
        return F.mse_loss(torch.tanh(xb @ w1.T + b1) @ w2.T + b2, yb)

    expected = sam_reference(initial_params(), loss_fn, steps, SGDRef(lr=0.1, momentum=0.9), 0.1)
    assert_params(model, expected)
    assert model.calls == 2 * 2 * steps and model.logged == 2 * steps
    with pytest.raises(RuntimeError, match="accumulate_grad_batches"):
        trainer(max_steps=2, accumulate_grad_batches=2).fit(Net("sam", lr=0.1))
    with pytest.raises(ValueError, match="perturb twice"):
        trainer(max_steps=1, callbacks=[SAMCallback()]).fit(Net("sam", lr=0.1))


@pytest.mark.parametrize("form", ["optimizer", "callback"])
def test_fp16_with_a_gradient_scaler_is_refused(form: str) -> None:
    from lightning.pytorch.plugins import MixedPrecision

    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    if form == "optimizer":
        model, callbacks, err = Net("sam", dtype=torch.float32, lr=0.1), [], RuntimeError
    else:
        model, callbacks, err = Net("sgd", dtype=torch.float32, lr=0.1), [SAMCallback()], ValueError
    with pytest.raises(err, match=r"16-mixed.*bf16-mixed"):
        trainer(max_steps=1, callbacks=callbacks, plugins=[plugin]).fit(model)


@pytest.mark.parametrize("form", ["optimizer", "callback"])
def test_bf16_mixed_runs_close_to_float32(form: str) -> None:
    results = []
    for precision in ("32-true", "bf16-mixed"):
        if form == "optimizer":
            model, callbacks = Net("sam", dtype=torch.float32, rho=0.05, lr=0.1), []
        else:
            model, callbacks = Net("sgd", dtype=torch.float32, lr=0.1), [SAMCallback(rho=0.05)]
        trainer(max_steps=4, precision=precision, callbacks=callbacks).fit(model)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.isfinite(results[1]).all()
    start = torch.cat([p.flatten() for p in initial_params()]).float()
    moved = (results[0] - start).norm()
    assert moved > 0
    assert (results[1] - results[0]).norm() < 0.1 * moved


def test_resume_mid_run_equals_uninterrupted(tmp_path: Path) -> None:
    kw = dict(rho=0.1, lr=1e-2, weight_decay=0.01, gamma=0.9)
    full = Net("sam-adamw", **kw)
    trainer(max_epochs=3).fit(full)
    first = Net("sam-adamw", **kw)
    t = trainer(max_epochs=1)
    t.fit(first)
    ckpt = tmp_path / "mid.ckpt"
    t.save_checkpoint(ckpt)
    resumed = Net("sam-adamw", **{**kw, "rho": 0.9, "lr": 5.0})  # the checkpoint's values win
    trainer(max_epochs=3).fit(resumed, ckpt_path=ckpt)
    for p, q in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    x, y = data()
    expected = sam_reference(
        initial_params(),
        loss_fn_for(x, y),
        12,
        AdamWRef(lr=1e-2, weight_decay=0.01),
        0.1,
        lr_at=lambda t: 1e-2 * 0.9**t,
    )
    assert_params(full, expected)


@pytest.mark.parametrize("form", ["optimizer", "callback"])
def test_rho_knob_schedules_rho_and_zero_rho_skips_the_second_pass(form: str) -> None:
    knob = SAMRho(Linear(0.0, 0.2, duration=4))
    if form == "optimizer":
        model, callbacks = Net("sam", rho=0.1, lr=0.1), []
    else:
        sam = SAMCallback(rho=0.1)
        model, callbacks = Net("sgd", lr=0.1), [sam]
    callbacks.append(RegularizationScheduler([knob], interval="step", log=False))
    trainer(max_steps=4, callbacks=callbacks).fit(model)
    # step 0 has rho = 0 (one pass), steps 1-3 have rho > 0 (two passes)
    assert model.calls == 1 + 2 * 3
    rho = sam.rho if form == "callback" else model.trainer.optimizers[0].param_groups[0]["rho"]
    assert math.isclose(rho, 0.15)
    with pytest.raises(ValueError, match="found no SAMCallback"):
        trainer(max_steps=1, callbacks=[RegularizationScheduler([SAMRho(0.1)])]).fit(
            Net("sgd", lr=0.1)
        )


def test_callback_exclude_leaves_biases_unperturbed() -> None:
    steps = 3
    model = Net("sgd", lr=0.1)
    trainer(max_steps=steps, callbacks=[SAMCallback(rho=0.2, exclude="*.bias")]).fit(model)
    x, y = data()
    expected = sam_reference(
        initial_params(), loss_fn_for(x, y), steps, SGDRef(lr=0.1), 0.2,
        perturbed=[True, False, True, False],
    )  # fmt: skip
    assert_params(model, expected)
