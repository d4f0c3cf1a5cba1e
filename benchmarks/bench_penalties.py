"""Step-time overhead of PenaltyHook against no penalty, a naive loss term and the memory-bound floor.

Two models, CPU float32, batch 128, SGD with momentum:

- MLP: 784 -> 4 x 2048 -> 10 (14.2 M penalized weights; the penalty pass is memory-bound),
- CNN: a small convolutional network for 28 x 28 images (0.4 M penalized weights).

Variants, all trained by a Lightning ``Trainer``:

- ``none``: no penalty (the baseline);
- ``naive``: ``sum(p.abs().sum() for p in params)`` (elastic net: plus ``sum((p * p).sum())``) added to
  the loss, differentiated by autograd;
- ``floor``: a callback doing ``grad.add_(param.sign(), alpha=λ)`` over the penalized tensors in
  ``on_before_optimizer_step``: one read-modify-write pass, the memory-bound floor of a penalty;
- ``hook gradient`` / ``hook proximal``: :class:`reglight.callbacks.PenaltyHook` in either mode.

Per-step times are measured from ``on_train_batch_start`` to ``on_train_batch_end``; the variants run
interleaved in one process (short ``fit`` calls in rotating order, the first step of each dropped),
and the table reports medians. A second table times the penalty update alone (the hook's
``add_grad_`` / ``prox_`` against the floor expression and the naive term's extra forward and
backward) on the MLP's weights, also interleaved: it isolates the ratio from the noise of the
training step.

    python benchmarks/bench_penalties.py           # 8 rounds x 6 steps per variant
    python benchmarks/bench_penalties.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from reglight.callbacks import PenaltyHook
from reglight.penalties import L1, ElasticNet, Penalty, select_parameters

LAMBDA = 1e-5
L1_RATIO = 0.5
LR = 1e-3
BATCH = 128


def mlp() -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for _ in range(4):
        layers += [nn.Linear(width, 2048), nn.ReLU()]
        width = 2048
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def naive_l1(params: list[Tensor]) -> Tensor:
    return LAMBDA * sum(p.abs().sum() for p in params)  # type: ignore[return-value]


def naive_enet(params: list[Tensor]) -> Tensor:
    l1 = sum(p.abs().sum() for p in params)
    l2 = sum((p * p).sum() for p in params)
    return LAMBDA * (L1_RATIO * l1 + (1 - L1_RATIO) * l2)  # type: ignore[return-value]


class Model(pl.LightningModule):
    def __init__(self, net: nn.Module, naive: Callable[[list[Tensor]], Tensor] | None) -> None:
        super().__init__()
        self.net = net
        self.naive = naive
        self.penalized = select_parameters(net)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        if self.naive is not None:
            loss = loss + self.naive(self.penalized)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)


class Floor(pl.Callback):
    """The memory-bound floor: ``grad.add_(param.sign(), alpha=λ)`` over the penalized tensors."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.params = select_parameters(pl_module)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.grad.add_(p.sign(), alpha=LAMBDA)


class StepTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.times.append(time.perf_counter() - self.t0)


def variants() -> dict[str, tuple[Callable[[list[Tensor]], Tensor] | None, Callable[[], list]]]:
    """name -> (naive loss term or None, factory of extra callbacks)."""
    return {
        "none": (None, list),
        "floor (grad += λ·sign)": (None, lambda: [Floor()]),
        "L1 naive loss term": (naive_l1, list),
        "L1 hook gradient": (None, lambda: [PenaltyHook(L1(LAMBDA), log=True)]),
        "L1 hook proximal": (None, lambda: [PenaltyHook(L1(LAMBDA), "proximal")]),
        "ElasticNet naive loss term": (naive_enet, list),
        "ElasticNet hook gradient": (None, lambda: [PenaltyHook(ElasticNet(LAMBDA, L1_RATIO))]),
        "ElasticNet hook proximal": (
            None,
            lambda: [PenaltyHook(ElasticNet(LAMBDA, L1_RATIO), "proximal")],
        ),
    }


def time_training(build: Callable[[], nn.Module], shape: tuple[int, ...], rounds: int, steps: int):
    torch.manual_seed(0)
    x = torch.randn(BATCH * steps, *shape)
    y = torch.randint(0, 10, (BATCH * steps,))
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)
    specs = variants()
    template = build()
    models = {}
    for name, (naive, _) in specs.items():
        net = build()
        net.load_state_dict(template.state_dict())
        models[name] = Model(net, naive)
    times: dict[str, list[float]] = {name: [] for name in specs}
    names = list(specs)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            timer = StepTimer()
            trainer = pl.Trainer(
                accelerator="cpu",
                max_steps=steps,
                callbacks=[*specs[name][1](), timer],
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
            )
            trainer.fit(models[name], loader)
            times[name] += timer.times[1:]  # the first step allocates momentum buffers
    return {name: statistics.median(t) for name, t in times.items()}


def time_updates(reps: int) -> dict[str, float]:
    """The penalty update alone on the MLP's weights, interleaved."""
    torch.manual_seed(0)
    params = [p.detach().requires_grad_(True) for p in select_parameters(mlp())]
    for p in params:
        p.grad = torch.randn_like(p)
    l1: Penalty = L1(LAMBDA)
    enet: Penalty = ElasticNet(LAMBDA, L1_RATIO)

    def floor() -> None:
        with torch.no_grad():
            for p in params:
                p.grad.add_(p.sign(), alpha=LAMBDA)  # type: ignore[union-attr]

    def naive(term: Callable[[list[Tensor]], Tensor]) -> Callable[[], None]:
        return lambda: term(params).backward()

    def prox(penalty: Penalty) -> Callable[[], None]:
        return lambda: penalty.prox_(params, LR)

    cases: dict[str, Callable[[], None]] = {
        "floor (grad += λ·sign)": floor,
        "L1 naive loss term": naive(naive_l1),
        "L1 hook gradient": lambda: l1.add_grad_(params),
        "L1 hook proximal": prox(l1),
        "ElasticNet naive loss term": naive(naive_enet),
        "ElasticNet hook gradient": lambda: enet.add_grad_(params),
        "ElasticNet hook proximal": prox(enet),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    rounds, steps, reps = (2, 3, 5) if args.quick else (8, 6, 30)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32, batch {BATCH}")
    print(f"{rounds} rounds x {steps - 1} timed steps per variant, interleaved; medians\n")
    print("| model | variant | step (ms) | overhead vs none | overhead / floor overhead |")
    print("|---|---|---:|---:|---:|")
    for label, build, shape in (
        ("MLP 4x2048", mlp, (1, 28, 28)),
        ("CNN 28x28", cnn, (1, 28, 28)),
    ):
        med = time_training(build, shape, rounds, steps)
        base, floor = med["none"], med["floor (grad += λ·sign)"] - med["none"]
        for name, t in med.items():
            over = (t - base) / base
            rel = "" if name == "none" else f"{(t - base) / floor:.2f}x" if floor > 0 else "n/a"
            print(f"| {label} | {name} | {t * 1e3:.1f} | {over:+.1%} | {rel} |")

    upd = time_updates(reps)
    print("\nThe penalty update alone, on the MLP's 14.2 M weights (medians):\n")
    print("| variant | time (ms) | / floor |")
    print("|---|---:|---:|")
    for name, t in upd.items():
        print(f"| {name} | {t * 1e3:.2f} | {t / upd['floor (grad += λ·sign)']:.2f}x |")


if __name__ == "__main__":
    main()
