"""Time forward + backward of the reglight.nn modules against their anchors, in the same run.

Anchors: ``nn.Dropout``, timm's ``DropPath``, ``DropBlock2d`` and ``LayerNorm2d``,
``torchvision.ops.drop_block2d``, ``nn.BatchNorm2d``. Each measurement is one training-mode forward pass
plus the backward pass to the input and the parameters; ours and the anchor alternate within each
repeat so that machine load hits both alike. Prints a markdown table of medians and ratios
(ours / anchor; below 1 is faster). The ratio of the minima is also printed: on a loaded machine it
is the more stable of the two.

    python benchmarks/bench_nn.py            # 64 x 64 x 56 x 56 float32, CPU (and CUDA when present)
    python benchmarks/bench_nn.py --quick    # 16 x 32 x 28 x 28, fewer repeats

timm is a benchmark-only dependency (``pip install reglight[bench]``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from _report import Report, add_json_argument
from reglight import nn as rnn


@dataclass
class Case:
    module: str
    anchor: str
    ours: Callable[[int], nn.Module]
    other: Callable[[int], nn.Module]


def cases(batch: int) -> list[Case]:
    import timm.layers
    import torchvision.ops

    p, block, virtual = 0.1, 7, max(batch // 4, 1)
    return [
        Case("Dropout(0.1)", "nn.Dropout", lambda c: rnn.Dropout(p), lambda c: nn.Dropout(p)),
        Case(
            "DropPath(0.1)",
            "timm DropPath",
            lambda c: rnn.DropPath(p),
            lambda c: timm.layers.DropPath(p),
        ),
        Case(
            "DropBlock2d(0.1, 7, shared_channels=True)",
            "timm DropBlock2d (default, couple_channels=True)",
            lambda c: rnn.DropBlock2d(p, block, shared_channels=True),
            lambda c: timm.layers.DropBlock2d(p, block),
        ),
        Case(
            "DropBlock2d(0.1, 7)",
            "timm DropBlock2d(couple_channels=False)",
            lambda c: rnn.DropBlock2d(p, block),
            lambda c: timm.layers.DropBlock2d(p, block, couple_channels=False),
        ),
        Case(
            "DropBlock2d(0.1, 7)",
            "torchvision.ops.drop_block2d",
            lambda c: rnn.DropBlock2d(p, block),
            lambda c: torchvision.ops.DropBlock2d(p, block),
        ),
        Case(
            f"GhostBatchNorm2d(virtual_batch_size={virtual})",
            "nn.BatchNorm2d",
            lambda c: rnn.GhostBatchNorm2d(c, virtual_batch_size=virtual),
            lambda c: nn.BatchNorm2d(c),
        ),
        Case(
            f"GhostBatchNorm2d(virtual_batch_size={virtual}, fused=True)",
            "nn.BatchNorm2d",
            lambda c: rnn.GhostBatchNorm2d(c, virtual_batch_size=virtual, fused=True),
            lambda c: nn.BatchNorm2d(c),
        ),
        Case(
            "BatchRenorm2d",
            "nn.BatchNorm2d",
            lambda c: rnn.BatchRenorm2d(c),
            lambda c: nn.BatchNorm2d(c),
        ),
        Case(
            "LayerNorm2d",
            "timm LayerNorm2d",
            lambda c: rnn.LayerNorm2d(c),
            lambda c: timm.layers.LayerNorm2d(c),
        ),
    ]


def step(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    out = module(x)
    torch.autograd.grad(out, [x, *module.parameters()], grad)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}


def timed(
    module: nn.Module, x: torch.Tensor, grad: torch.Tensor, device: torch.device, clock: str
) -> float:
    now = CLOCKS[clock]
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = now()
    step(module, x, grad)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (now() - start) * 1e3


def bench(
    case: Case, shape: tuple[int, ...], device: torch.device, repeats: int, warmup: int, clock: str
) -> tuple[list[float], list[float]]:
    channels = shape[1]
    ours = case.ours(channels).to(device).train()
    other = case.other(channels).to(device).train()
    x = torch.randn(shape, device=device, requires_grad=True)
    grad = torch.randn(shape, device=device)
    for _ in range(warmup):
        step(ours, x, grad)
        step(other, x, grad)
    ours_ms, other_ms = [], []
    for i in range(repeats):  # alternate the order so that drifting load hits both alike
        pair = [(ours, ours_ms), (other, other_ms)]
        for module, sink in pair if i % 2 == 0 else pair[::-1]:
            sink.append(timed(module, x, grad, device, clock))
    return ours_ms, other_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="16x32x28x28 and fewer repeats")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per module")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time, or the process's CPU time (robust on a loaded machine with --threads 1; CPU only)",
    )
    parser.add_argument("--only", default=None, help="run the cases whose name contains this text")
    add_json_argument(parser)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (16, 32, 28, 28) if args.quick else (64, 64, 56, 56)
    repeats = args.repeats or (7 if args.quick else 15)
    warmup = 2 if args.quick else 3
    if args.device == "auto":
        devices = [torch.device("cpu")] + (
            [torch.device("cuda")] if torch.cuda.is_available() else []
        )
    else:
        devices = [torch.device(args.device)]

    report = Report(
        "bench_nn",
        {
            **vars(args),
            "shape": list(shape),
            "repeats": repeats,
            "warmup": warmup,
            "dtype": "float32",
        },
    )
    report.devices = [str(d) for d in devices]
    torch.manual_seed(0)
    for device in devices:
        clock = args.clock if device.type == "cpu" else "wall"
        name = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads"
        )
        table = report.table(
            f"forward + backward, {'x'.join(map(str, shape))} float32, {name}, {clock} clock, "
            f"median of {repeats}",
            ["module", "anchor", "ours (ms)", "anchor (ms)", "ratio", "ratio of minima"],
            "--rrrr",
        )
        for case in cases(shape[0]):
            if args.only and args.only not in case.module + case.anchor:
                continue
            ours_ms, other_ms = bench(case, shape, device, repeats, warmup, clock)
            ours_med, other_med = statistics.median(ours_ms), statistics.median(other_ms)
            ratio, ratio_min = ours_med / other_med, min(ours_ms) / min(other_ms)
            table.row(
                [
                    case.module,
                    case.anchor,
                    f"{ours_med:.1f}",
                    f"{other_med:.1f}",
                    f"{ratio:.2f}",
                    f"{ratio_min:.2f}",
                ],
                labels={"module": case.module, "anchor": case.anchor, "device": str(device)},
                medians={"ours_ms": ours_med, "anchor_ms": other_med},
                ratios={"ours/anchor": ratio, "ours/anchor of minima": ratio_min},
                extra={"clock": clock, "ours_ms": ours_ms, "anchor_ms": other_ms},
            )
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
