"""Per-step time of SAM / ASAM (reglight.optim.SAM) against the base optimizer, pytorch_optimizer and a hand-written SAM.

Two models, CPU float32, batch 32:

- CNN: the medical-image recipe's network (`reglight.recipes.medical_cnn.SmallCNN`, 3 stages of 2
  convolutions with batch norm, 0.3 M parameters) on 28 x 28 images;
- MLP: 784 -> 3 x 1024 -> 10 (2.9 M parameters).

Variants (each with its own copy of the model and optimizer), for the base optimizers SGD (momentum 0.9) and
AdamW:

- ``base``: the base optimizer alone, one forward/backward pass (the baseline, ratio 1);
- ``reglight SAM`` / ``reglight ASAM``: `reglight.optim.SAM(..., model=net)` (batch-norm statistics kept
  from the second pass) stepped with a closure, as Lightning does;
- ``pytorch_optimizer SAM`` / ``ASAM``: `pytorch_optimizer.SAM(adaptive=...)`, used as its documentation
  shows (``closure(); opt.step(closure)``), no batch-norm handling;
- ``hand-written SAM``: the textbook loop over parameters (norm, ``p.add_(e)``, second pass, ``p.sub_(e)``,
  base step), as many training scripts write it.

A step is everything from ``zero_grad`` to the parameter update, timed with ``perf_counter``. The variants
are interleaved step by step (round robin, rotating order), so bursts of load on a shared machine hit all of
them alike; the table reports medians after two warm-up rounds, and the ratio of the minima (contention only
ever adds time, so the fastest step of each variant is the least disturbed measurement). SAM's lower bound is two forward/backward
passes, so its ratio to the base step is at least about 2; the target is at most 2.05.

    python benchmarks/bench_optim.py            # 30 rounds
    python benchmarks/bench_optim.py --quick    # 3 rounds, smoke run
    python benchmarks/bench_optim.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _report import Report, add_json_argument

# this folder holds `medmnist.py`, which would shadow the `medmnist` package the recipe imports: drop it
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from reglight.optim import SAM  # noqa: E402
from reglight.recipes.medical_cnn import SmallCNN  # noqa: E402

BATCH = 32
RHO, ARHO = 0.05, 0.5
TARGET = 2.05


def mlp(hidden: int = 1024) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def cnn(width: int = 32) -> nn.Module:
    return SmallCNN(in_channels=1, num_classes=10, width=width, dropout=0.0)


BASES: dict[str, tuple[type[torch.optim.Optimizer], dict[str, float]]] = {
    "SGD": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    "AdamW": (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
}


class Step:
    """One model + optimizer and how it takes a training step."""

    def __init__(self, net: nn.Module, kind: str, base: str) -> None:
        self.net = net
        cls, kw = BASES[base]
        self.kind = kind
        if kind == "base":
            self.opt: torch.optim.Optimizer = cls(net.parameters(), **kw)
        elif kind.startswith("reglight"):
            adaptive = "ASAM" in kind
            self.opt = SAM(
                net.parameters(), cls, rho=ARHO if adaptive else RHO, adaptive=adaptive, eta=0.0,
                model=net, **kw,
            )  # fmt: skip
        elif kind.startswith("pytorch_optimizer"):
            import pytorch_optimizer

            adaptive = "ASAM" in kind
            self.opt = pytorch_optimizer.SAM(
                net.parameters(), cls, rho=ARHO if adaptive else RHO, adaptive=adaptive, **kw
            )
        else:  # hand-written
            self.opt = cls(net.parameters(), **kw)

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        loss = F.cross_entropy(self.net(x), y)
        loss.backward()
        return loss

    def closure(self, x: Tensor, y: Tensor) -> Callable[[], Tensor]:
        def closure() -> Tensor:
            self.opt.zero_grad(set_to_none=True)
            return self.loss(x, y)

        return closure

    def __call__(self, x: Tensor, y: Tensor) -> None:
        if self.kind == "base":
            self.opt.zero_grad(set_to_none=True)
            self.loss(x, y)
            self.opt.step()
        elif self.kind.startswith("reglight"):
            self.opt.step(self.closure(x, y))
        elif self.kind.startswith("pytorch_optimizer"):
            closure = self.closure(x, y)
            closure()
            self.opt.step(closure)
        else:
            self.hand_written(x, y)

    def hand_written(self, x: Tensor, y: Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss(x, y)
        params = [p for p in self.net.parameters() if p.grad is not None]
        with torch.no_grad():
            norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)  # type: ignore[union-attr]
            eps = []
            for p in params:
                e = p.grad * (RHO / (norm + 1e-12))  # type: ignore[operator]
                p.add_(e)
                eps.append(e)
        self.opt.zero_grad(set_to_none=True)
        self.loss(x, y)
        with torch.no_grad():
            for p, e in zip(params, eps):
                p.sub_(e)
        self.opt.step()


def variants(build: Callable[[], nn.Module], base: str, anchor: bool) -> dict[str, Step]:
    template = build()
    kinds = ["base", "reglight SAM", "reglight ASAM"]
    if anchor:
        kinds += ["pytorch_optimizer SAM", "pytorch_optimizer ASAM"]
    kinds.append("hand-written SAM")
    out = {}
    for kind in kinds:
        net = build()
        net.load_state_dict(template.state_dict())
        net.train()
        out[kind] = Step(net, kind, base)
    return out


def time_steps(
    runs: dict[str, Step], x: Tensor, y: Tensor, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds + 2):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            runs[name](x, y)
            if r >= 2:  # two warm-up rounds: allocator, optimizer state, SAM's buffers
                times[name].append(time.perf_counter() - t0)
    return (
        {name: statistics.median(t) for name, t in times.items()},
        {name: min(t) for name, t in times.items()},
    )


def breakdown(
    build: Callable[[], nn.Module], base: str, x: Tensor, y: Tensor, rounds: int
) -> dict[str, float]:
    """Median milliseconds of the parts of a step, timed one by one (interleaved, round robin).

    `forward+backward` is one pass (zero_grad, forward, backward); `base update` the base optimizer's
    `step()` alone; `SAM ascent` / `ASAM ascent` reglight's `first_step` (save $w$, compute and add
    $\\epsilon$); `restore` putting $w$ back from the saved copy.
    """
    net = build()
    net.train()
    cls, kw = BASES[base]
    sam = SAM(net.parameters(), cls, rho=RHO, eta=0.0, model=net, **kw)
    asam = SAM(net.parameters(), cls, rho=ARHO, adaptive=True, eta=0.0, model=net, **kw)

    def fb() -> None:
        sam.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()

    parts: dict[str, Callable[[], None]] = {
        "forward+backward": fb,
        "base update": sam.base_optimizer.step,
        "SAM ascent": sam.first_step,
        "ASAM ascent": asam.first_step,
    }
    times: dict[str, list[float]] = {name: [] for name in [*parts, "restore"]}
    for r in range(rounds + 2):
        for name, part in parts.items():
            if name != "forward+backward" and sam.param_groups[0]["params"][0].grad is None:
                fb()
            t0 = time.perf_counter()
            part()
            elapsed = time.perf_counter() - t0
            if r >= 2:
                times[name].append(elapsed)
            opt = {"SAM ascent": sam, "ASAM ascent": asam}.get(name)
            if opt is not None:
                t0 = time.perf_counter()
                opt.restore()
                if r >= 2:
                    times["restore"].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads (default: torch's); 1 is steadier on an oversubscribed machine",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 30)")
    parser.add_argument(
        "--models",
        default="cnn,mlp",
        help="comma-separated models to time: cnn, mlp (default both)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the parts of a step (forward+backward, base update, ascent, restore) one by one",
    )
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (1 if args.quick else 30)
    # --quick: a smoke run with tiny sizes (the timings mean nothing)
    batch, width, hidden = (4, 4, 32) if args.quick else (BATCH, 32, 1024)
    warnings.filterwarnings("ignore")
    try:
        import pytorch_optimizer  # noqa: F401

        anchor = True
    except ImportError:
        anchor = False
    report = Report(
        "bench_optim",
        {
            **vars(args),
            "rounds": rounds,
            "batch": batch,
            "cnn_width": width,
            "mlp_hidden": hidden,
            "rho": RHO,
            "asam_rho": ARHO,
            "dtype": "float32",
        },
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32, batch {batch}"
    )
    print(f"{rounds} rounds of one step per variant, interleaved step by step; medians\n")
    table = report.table(
        "",
        [
            "model",
            "base optimizer",
            "variant",
            "step (ms)",
            "/ base step",
            "/ base step (min)",
            "/ pytorch_optimizer",
        ],
        "---rrrr",
    )
    torch.manual_seed(0)
    builders: dict[str, tuple[str, Callable[[], nn.Module]]] = {
        "cnn": ("medical CNN", lambda: cnn(width)),
        "mlp": (f"MLP 3x{hidden}", lambda: mlp(hidden)),
    }
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in builders]
    if unknown or not chosen:
        parser.error(f"--models {args.models}: choose among {', '.join(builders)}")
    models = [builders[m] for m in chosen]
    for label, build in models:
        x = torch.randn(batch, 1, 28, 28)
        y = torch.randint(0, 10, (batch,))
        for base in BASES:
            med, low = time_steps(variants(build, base, anchor), x, y, rounds)
            for name, t in med.items():
                ratio = t / med["base"]
                ratio_min = low[name] / low["base"]
                their = name.replace("reglight", "pytorch_optimizer")
                vs = med.get(their) if name.startswith("reglight") else None
                table.row(
                    [
                        label,
                        base,
                        name,
                        f"{t * 1e3:.1f}",
                        f"{ratio:.2f}x",
                        f"{ratio_min:.2f}x",
                        f"{t / vs:.2f}x" if vs else "",
                    ],
                    labels={"model": label, "base": base, "variant": name},
                    medians={"step_ms": t * 1e3},
                    ratios={
                        "step / base step": ratio,
                        "min step / min base step": ratio_min,
                        **({"step / pytorch_optimizer": t / vs} if vs else {}),
                    },
                    extra={"target": TARGET if name.startswith("reglight") else None},
                )
    if args.breakdown:
        parts = report.table(
            "Parts of a step (medians, ms) and the SAM / ASAM ratio they predict",
            [
                "model",
                "base optimizer",
                "forward+backward",
                "base update",
                "SAM ascent",
                "ASAM ascent",
                "restore",
                "SAM / base (predicted)",
                "ASAM / base (predicted)",
            ],
            "--rrrrrrr",
        )
        for label, build in models:
            x = torch.randn(batch, 1, 28, 28)
            y = torch.randint(0, 10, (batch,))
            for base in BASES:
                ms = breakdown(build, base, x, y, rounds)
                one = ms["forward+backward"] + ms["base update"]
                two = 2 * ms["forward+backward"] + ms["base update"] + ms["restore"]
                sam, asam = (two + ms["SAM ascent"]) / one, (two + ms["ASAM ascent"]) / one
                parts.row(
                    [
                        label,
                        base,
                        *(f"{ms[k]:.2f}" for k in ("forward+backward", "base update")),
                        *(f"{ms[k]:.2f}" for k in ("SAM ascent", "ASAM ascent", "restore")),
                        f"{sam:.2f}x",
                        f"{asam:.2f}x",
                    ],
                    labels={"model": label, "base": base},
                    medians={k.replace(" ", "_"): v for k, v in ms.items()},
                    ratios={"SAM / base (predicted)": sam, "ASAM / base (predicted)": asam},
                )
    report.write(args.json)


if __name__ == "__main__":
    main()
