"""Two `PenaltyHook`s, and two `RegularizationScheduler`s, side by side in one Trainer under DDP.

2 CPU processes (gloo, `ddp_spawn`): the ranks end with identical weights, equal to plain SGD written out
by hand with each callback's closed-form effect, so each instance applies its own effect and only it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from compat_models import QUIET, Scripted, fit
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from reglight.callbacks import ModuleAttribute, PenaltyHook, RegularizationScheduler, WeightDecay
from reglight.penalties import L1
from reglight.schedules import Linear

LR, EPOCHS, GLOBAL_BATCH = 0.1, 3, 8


class Scale(nn.Module):
    """Multiplies by a plain float attribute `gain` (a knob target with a closed-form effect)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def make_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), Scale(), nn.Tanh(), nn.Linear(4, 1))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=g)
    return x, x.sum(1, keepdim=True) + 0.1 * torch.randn(16, 1, generator=g)


class Net(LightningModule):
    """Rank r of W takes samples r, r + W, ...: each step's W local batches make one contiguous global batch."""

    def __init__(self, out: str, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.net, self.out, self.weight_decay = make_net(), out, weight_decay

    def train_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        dataset = TensorDataset(*data())
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(dataset, batch_size=GLOBAL_BATCH // world, sampler=sampler)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR, weight_decay=self.weight_decay)

    def on_train_end(self) -> None:
        values = [
            dict(cb.values)
            for cb in self.trainer.callbacks
            if isinstance(cb, RegularizationScheduler)
        ]
        torch.save(
            {
                "state": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
                "values": values,
            },
            Path(self.out) / f"rank{self.global_rank}.pt",
        )


def run_ddp(model: Net, callbacks: list, out: Path) -> tuple[dict, dict]:
    trainer = Trainer(
        callbacks=callbacks,
        strategy="ddp_spawn",
        devices=2,
        max_epochs=EPOCHS,
        use_distributed_sampler=False,
        **QUIET,
    )
    trainer.fit(model)
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key  # identical on both ranks
    assert r0["values"] == r1["values"]
    return r0, r1


def sgd_by_hand(step_fn: Any) -> nn.Sequential:
    """Full-batch SGD over the global batches in order; `step_fn(net, step, epoch)` does one update."""
    net = make_net()
    x, y = data()
    step = 0
    for epoch in range(EPOCHS):
        for start in range(0, len(x), GLOBAL_BATCH):
            xb, yb = x[start : start + GLOBAL_BATCH], y[start : start + GLOBAL_BATCH]
            step_fn(net, xb, yb, step, epoch)
            step += 1
    return net


def assert_close(state: dict[str, torch.Tensor], net: nn.Module) -> None:
    for key, value in net.state_dict().items():
        torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.ddp
@pytest.mark.timeout(300)
def test_two_penalty_hooks_under_ddp(tmp_path: Path) -> None:
    """A gradient-mode L1 on the first layer and a proximal L1 on the last, in one Trainer."""
    a1, a2 = 0.05, 1.0
    hooks = [
        PenaltyHook(L1(a1), method="gradient", include="net.0.weight", name="l1_first"),
        PenaltyHook(L1(a2), method="proximal", include="net.3.weight", name="l1_last"),
    ]
    r0, _ = run_ddp(Net(str(tmp_path)), hooks, tmp_path)

    def step(net: nn.Sequential, xb: torch.Tensor, yb: torch.Tensor, *_: int) -> None:
        params = list(net.parameters())
        grads = torch.autograd.grad(F.mse_loss(net(xb), yb), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if p is net[0].weight:
                    g = g + a1 * torch.sign(p)  # subgradient of a1 |w|_1
                p -= LR * g
            w = net[3].weight  # prox of LR a2 |w|_1: soft thresholding
            w.copy_(torch.sign(w) * (w.abs() - LR * a2).clamp_min(0))

    reference = sgd_by_hand(step)
    assert_close(r0["state"], reference)
    assert int((r0["state"]["3.weight"] == 0).sum()) > 0  # the proximal hook made exact zeros
    assert int((r0["state"]["0.weight"] == 0).sum()) == 0  # the gradient hook does not


@pytest.mark.ddp
@pytest.mark.timeout(300)
def test_two_regularization_schedulers_under_ddp(tmp_path: Path) -> None:
    """A weight-decay schedule per epoch and a module-attribute schedule per step, in one Trainer."""
    schedulers = [
        RegularizationScheduler([WeightDecay(Linear(0.1, 0.0, duration=2))]),
        RegularizationScheduler(
            [ModuleAttribute(Linear(1.0, 2.0, duration=4), "gain", include="net.1")],
            interval="step",
        ),
    ]
    r0, _ = run_ddp(Net(str(tmp_path), weight_decay=0.1), schedulers, tmp_path)

    def step(net: nn.Sequential, xb: torch.Tensor, yb: torch.Tensor, step: int, epoch: int) -> None:
        weight_decay = 0.1 * (1 - min(epoch / 2, 1.0))  # 0.1 -> 0 over 2 epochs
        net[1].gain = 1.0 + min(step / 4, 1.0)  # 1 -> 2 over 4 steps
        params = list(net.parameters())
        grads = torch.autograd.grad(F.mse_loss(net(xb), yb), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LR * (g + weight_decay * p)

    assert_close(r0["state"], sgd_by_hand(step))
    # each scheduler holds its own last value (epoch 2, step 5)
    assert r0["values"] == [{"weight_decay": 0.0}, {"gain": 2.0}]


def test_two_penalty_hooks_with_the_same_name_are_refused() -> None:
    # Lightning keeps one value per logged key: two hooks named alike would lose one's logs silently
    hooks = [
        PenaltyHook(L1(0.01), include="net.0.weight"),
        PenaltyHook(L1(0.5), include="net.2.weight"),
    ]
    with pytest.raises(ValueError, match=r"same `name`='penalty'.*give each its own `name`"):
        fit(Scripted([1.0], keys=("val/x",)), hooks, max_epochs=1, log_every_n_steps=1)


def test_two_penalty_hooks_with_their_own_names_keep_both_logs() -> None:
    hooks = [
        PenaltyHook(L1(0.01), include="net.0.weight", name="l1_first"),
        PenaltyHook(L1(0.5), include="net.2.weight", name="l1_last"),
        PenaltyHook(
            L1(0.1), include="net.2.weight", log=False
        ),  # a silent third one does not clash
    ]
    trainer = fit(Scripted([1.0], keys=("val/x",)), hooks, max_epochs=1, log_every_n_steps=1)
    with torch.no_grad():
        for h in hooks[:2]:
            expected = float(h.penalty.value(h.parameters))
            assert float(trainer.callback_metrics[f"{h.name}/value"]) == pytest.approx(expected)
    assert "penalty/value" not in trainer.callback_metrics
