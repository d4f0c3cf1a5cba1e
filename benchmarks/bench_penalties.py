"""Step-time overhead of PenaltyHook against no penalty, a naive loss term and the memory-bound floor.

Two models, CPU float32, batch 128, SGD with momentum:

- MLP: 784 -> 4 x 2048 -> 10 (14.2 M penalized weights; the penalty pass is memory-bound),
- CNN: a small convolutional network for 28 x 28 images (0.4 M penalized weights).

Variants (each with its own copy of the model and optimizer):

- ``none``: no penalty (the baseline);
- ``naive``: ``λ * sum(p.abs().sum() for p in params)`` (elastic net: plus the ``sum((p * p).sum())``
  term) added to the loss, differentiated by autograd;
- ``floor``: ``grad.add_(param.sign(), alpha=λ)`` over the penalized tensors before the optimizer step:
  one read-modify-write pass, the memory-bound floor of a penalty;
- ``hook gradient`` / ``hook proximal``: a `reglight.callbacks.PenaltyHook` with either method (and
  `method="gradient"` with ``fused=True``: one ``torch.compile``'d pass per tensor, compiled in the warm-up). The
  hook object is driven the way a ``Trainer`` drives it: ``on_fit_start`` (selects the parameters and,
  with `method="proximal"`, registers its optimizer step post-hook), ``on_before_optimizer_step`` before every
  step, and the prox runs inside ``optimizer.step()``.

A step is ``zero_grad`` + forward + backward + penalty + ``optimizer.step()``, timed with
``perf_counter``. The variants are interleaved *step by step* (round robin, rotating order), so bursts of
load on a shared machine hit all of them alike; the table reports medians over the rounds after two
warm-up rounds. The Lightning loop around a step costs the same for every variant and is left out.
A second table times the penalty update alone on the MLP's weights, also interleaved.

    python benchmarks/bench_penalties.py           # 40 rounds
    python benchmarks/bench_penalties.py --quick   # 6 rounds, smoke run
    python benchmarks/bench_penalties.py --threads 1   # on a machine shared with other jobs

On an oversubscribed machine (more runnable threads than cores) every parallel region of a
multi-threaded op may wait a whole scheduler time slice for a descheduled thread; that penalizes
whatever runs more (smaller) parallel regions and says nothing about a quiet machine. ``--threads 1``
avoids it.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _report import Report, add_json_argument
from reglight.callbacks import PenaltyHook
from reglight.penalties import L1, ElasticNet, FusedElasticNetGrad, Penalty, select_parameters

LAMBDA = 1e-5
L1_RATIO = 0.5
LR = 1e-3
BATCH = 128
FLOOR = "floor (grad += λ·sign)"


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
    return LAMBDA * (L1_RATIO * l1 + (1 - L1_RATIO) / 2 * l2)  # type: ignore[return-value]


class Floor:
    """The memory-bound floor: ``grad.add_(param.sign(), alpha=λ)`` over the penalized tensors."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params

    @torch.no_grad()
    def __call__(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.grad.add_(p.sign(), alpha=LAMBDA)


class Variant:
    """One model + optimizer trained with one way of applying the penalty."""

    def __init__(
        self,
        net: nn.Module,
        naive: Callable[[list[Tensor]], Tensor] | None = None,
        floor: bool = False,
        hook: PenaltyHook | None = None,
    ) -> None:
        self.net = net
        self.opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
        self.penalized = select_parameters(net)
        self.naive = naive
        self.floor = Floor(self.penalized) if floor else None
        self.hook = hook
        if hook is not None:  # what Trainer.fit does at its start
            hook.on_fit_start(SimpleNamespace(optimizers=[self.opt]), net)  # type: ignore[arg-type]

    def step(self, x: Tensor, y: Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.net(x), y)
        if self.naive is not None:
            loss = loss + self.naive(self.penalized)
        loss.backward()
        if self.floor is not None:
            self.floor()
        if self.hook is not None:
            self.hook.on_before_optimizer_step(None, self.net, self.opt)  # type: ignore[arg-type]
        self.opt.step()  # a proximal hook runs here, as a step post-hook


def variants(build: Callable[[], nn.Module]) -> dict[str, Variant]:
    template = build()

    def net() -> nn.Module:
        copy = build()
        copy.load_state_dict(template.state_dict())
        return copy

    return {
        "none": Variant(net()),
        FLOOR: Variant(net(), floor=True),
        "L1 naive loss term": Variant(net(), naive=naive_l1),
        "L1 hook gradient": Variant(net(), hook=PenaltyHook(L1(LAMBDA))),
        "L1 hook proximal": Variant(net(), hook=PenaltyHook(L1(LAMBDA), method="proximal")),
        "L1 hook gradient, fused": Variant(net(), hook=PenaltyHook(L1(LAMBDA), fused=True)),
        "ElasticNet naive loss term": Variant(net(), naive=naive_enet),
        "ElasticNet hook gradient": Variant(net(), hook=PenaltyHook(ElasticNet(LAMBDA, L1_RATIO))),
        "ElasticNet hook proximal": Variant(
            net(), hook=PenaltyHook(ElasticNet(LAMBDA, L1_RATIO), method="proximal")
        ),
        "ElasticNet hook gradient, fused": Variant(
            net(), hook=PenaltyHook(ElasticNet(LAMBDA, L1_RATIO), fused=True)
        ),
    }


def time_training(
    build: Callable[[], nn.Module], shape: tuple[int, ...], rounds: int
) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(BATCH, *shape)
    y = torch.randint(0, 10, (BATCH,))
    runs = variants(build)
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds + 2):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            runs[name].step(x, y)
            if r >= 2:  # two warm-up rounds: allocator, momentum buffers
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def time_updates(reps: int) -> dict[str, list[float]]:
    """The penalty update alone on the MLP's weights, interleaved."""
    torch.manual_seed(0)
    params = [p.detach().requires_grad_(True) for p in select_parameters(mlp())]
    for p in params:
        p.grad = torch.randn_like(p)
    l1 = L1(LAMBDA)
    enet = ElasticNet(LAMBDA, L1_RATIO)
    fused = FusedElasticNetGrad()
    grads = [p.grad for p in params if p.grad is not None]

    def floor() -> None:
        with torch.no_grad():
            for p in params:
                p.grad.add_(p.sign(), alpha=LAMBDA)  # type: ignore[union-attr]

    def naive(term: Callable[[list[Tensor]], Tensor]) -> Callable[[], None]:
        return lambda: term(params).backward()

    def prox(penalty: Penalty) -> Callable[[], None]:
        return lambda: penalty.prox_(params, LR)

    cases: dict[str, Callable[[], None]] = {
        FLOOR: floor,
        "L1 naive loss term": naive(naive_l1),
        "L1 hook gradient": lambda: l1.add_grad_(params),
        "L1 hook proximal": prox(l1),
        "L1 hook gradient, fused": lambda: fused(params, grads, l1.alpha, l1.l1_ratio),
        "ElasticNet naive loss term": naive(naive_enet),
        "ElasticNet hook gradient": lambda: enet.add_grad_(params),
        "ElasticNet hook proximal": prox(enet),
        "ElasticNet hook gradient, fused": lambda: fused(params, grads, enet.alpha, enet.l1_ratio),
    }
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps + 1):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            cases[name]()
            if r:
                times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads (default: torch's); 1 is steadier on an oversubscribed machine",
    )
    parser.add_argument("--rounds", type=int, default=None, help="training rounds (default 40)")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, reps = (6, 5) if args.quick else (40, 30)
    if args.rounds:
        rounds, reps = args.rounds, max(5, args.rounds * 3 // 4)
    warnings.filterwarnings("ignore")
    report = Report(
        "bench_penalties",
        {
            **vars(args),
            "training_rounds": rounds,
            "update_reps": reps,
            "batch": BATCH,
            "lambda": LAMBDA,
            "l1_ratio": L1_RATIO,
            "lr": LR,
            "dtype": "float32",
        },
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32, batch {BATCH}"
    )
    print(f"{rounds} rounds of one step per variant, interleaved step by step; medians\n")
    table = report.table(
        "",
        ["model", "variant", "step (ms)", "overhead vs none", "overhead / floor overhead"],
        "--rrr",
    )
    for label, build, shape in (
        ("MLP 4x2048", mlp, (1, 28, 28)),
        ("CNN 28x28", cnn, (1, 28, 28)),
    ):
        med = time_training(build, shape, rounds)
        base, floor = med["none"], med[FLOOR] - med["none"]
        for name, t in med.items():
            over = (t - base) / base
            rel = "" if name == "none" else f"{(t - base) / floor:.2f}x" if floor > 0 else "n/a"
            table.row(
                [label, name, f"{t * 1e3:.1f}", f"{over:+.1%}", rel],
                labels={"model": label, "variant": name},
                medians={"step_ms": t * 1e3},
                ratios={"step / none step": t / base},
                extra={
                    "overhead_vs_none": over,
                    "overhead / floor overhead": (t - base) / floor
                    if name != "none" and floor > 0
                    else None,
                },
            )

    upd = time_updates(reps)
    med = {name: statistics.median(t) for name, t in upd.items()}
    low = {name: min(t) for name, t in upd.items()}
    table = report.table(
        "The penalty update alone, on the MLP's 14.2 M weights:",
        ["variant", "median (ms)", "/ floor", "min (ms)", "/ floor"],
        "-rrrr",
    )
    for name in upd:
        table.row(
            [
                name,
                f"{med[name] * 1e3:.2f}",
                f"{med[name] / med[FLOOR]:.2f}x",
                f"{low[name] * 1e3:.2f}",
                f"{low[name] / low[FLOOR]:.2f}x",
            ],
            labels={"variant": name},
            medians={"update_ms": med[name] * 1e3},
            ratios={
                "median / floor": med[name] / med[FLOOR],
                "min / floor": low[name] / low[FLOOR],
            },
            extra={"min_ms": low[name] * 1e3},
        )
    report.write(args.json)


if __name__ == "__main__":
    main()
