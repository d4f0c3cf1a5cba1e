"""Do regularizers find flatter minima? The curvature of a small CNN on BreastMNIST, trained four ways.

The same small CNN (two convolution stages, ``reglight.recipes.medical_cnn.SmallCNN``) is trained on the
BreastMNIST training images with plain SGD (momentum 0.9), changing one thing at a time from a baseline:

- ``baseline``: batch norm, no dropout, batches of 16;
- ``dropout``: dropout 0.5 before the classifier;
- ``large batch``: batches of 256 (same epochs and learning rate: 16 times fewer steps);
- ``no batch norm``: the baseline without normalization layers.

At the end of training, on a fixed set of 256 training images in evaluation mode, ``reglight.landscape``
measures the largest Hessian eigenvalue (Lanczos), the Hessian trace (Hutchinson, with its standard error),
Keskar et al.'s ε-sharpness (ε = 1e-3) and a 2-D slice of the loss along two filter-normalized random
directions (Li et al. 2018). The table gives the mean over seeds (and the spread) next to the final
training loss and the test accuracy, so that the curvature is read together with how well each network
fits. ``--figure PATH`` draws the slices side by side (seed 0).

Run (one thread; 40 minutes of wall time on a shared, heavily loaded 2-core machine)::

    nice -n 10 python benchmarks/landscape_claims.py --figure landscape_claims.png --json claims.json

The data folder is ``--root``, else ``$REGLIGHT_DATA``; the script exits with a message when
``breastmnist.npz`` is not there. ``--quick`` is a smoke run (tiny sizes, one seed).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _report import Report, add_json_argument
from reglight import landscape as ls

# `python benchmarks/landscape_claims.py` puts this folder first on sys.path, where `medmnist.py` would
# shadow the `medmnist` package that the recipe imports: drop it (the recipe is imported where used).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"dropout": 0.0, "batch_size": 16, "norm": "batch"},
    "dropout": {"dropout": 0.5, "batch_size": 16, "norm": "batch"},
    "large batch": {"dropout": 0.0, "batch_size": 256, "norm": "batch"},
    "no batch norm": {"dropout": 0.0, "batch_size": 16, "norm": "none"},
}


def load_data(root: Path) -> dict[str, tuple[Tensor, Tensor]]:
    """BreastMNIST 28x28 as float tensors standardized with the training images' mean and std."""
    from reglight.recipes.medical_cnn.data import load_medmnist_npz, task_spec

    spec = task_spec("breastmnist")
    splits = load_medmnist_npz(root / "breastmnist.npz", spec)
    train_x = torch.from_numpy(splits["train"][0]).float().div(255)
    mean, std = train_x.mean(), train_x.std()
    out = {}
    for name, (images, labels) in splits.items():
        x = (torch.from_numpy(images).float().div(255) - mean) / std
        out[name] = (x.unsqueeze(1), torch.from_numpy(labels).long().view(-1))
    return out


def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def train(
    variant: dict[str, Any],
    data: dict[str, tuple[Tensor, Tensor]],
    epochs: int,
    seed: int,
    width: int,
) -> tuple[nn.Module, float, float, float]:
    """Train one network; return it, its final training loss, test accuracy and training seconds."""
    from reglight.recipes.medical_cnn import SmallCNN

    torch.manual_seed(seed)
    model = SmallCNN(
        in_channels=1,
        num_classes=2,
        depth=2,
        width=width,
        blocks_per_stage=1,
        hidden=4 * width,
        dropout=variant["dropout"],
        norm=variant["norm"],
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = data["train"]
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), variant["batch_size"]):
            idx = order[i : i + variant["batch_size"]]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            opt.zero_grad(set_to_none=True)
            loss_fn(model, (x[idx], y[idx])).backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        train_loss = float(F.cross_entropy(model(x), y))
        tx, ty = data["test"]
        test_acc = float((model(tx).argmax(1) == ty).float().mean())
    return model, train_loss, test_acc, seconds


def measure(
    model: nn.Module, batches: list[tuple[Tensor, Tensor]], args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """Curvature, sharpness and a 2-D slice at the trained weights (evaluation mode)."""

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(1000 + seed)

    eig = ls.top_eigenvalues(
        model, loss_fn, batches, max_iter=args.lanczos, tol=1e-4, generator=gen()
    )
    trace = ls.hessian_trace(
        model, loss_fn, batches, n_samples=args.trace_samples, tol=0.0, generator=gen()
    )
    sharp = ls.sharpness(model, loss_fn, batches, epsilon=1e-3, generator=gen())
    g = gen()
    dx = ls.random_directions(model, "filter", generator=g)
    dy = ls.random_directions(model, "filter", generator=g)
    points = torch.linspace(-1.0, 1.0, args.grid)
    plane = ls.slice_2d(model, loss_fn, batches, dx, dy, xs=points, ys=points)
    return {
        "top_eigenvalue": float(eig.eigenvalues[0]),
        "trace": trace.trace,
        "trace_std_error": trace.std_error,
        "sharpness": sharp.sharpness,
        "slice": plane,
    }


def _mean_spread(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    spread = (max(values) - min(values)) / 2 if len(values) > 1 else 0.0
    return mean, spread


def _fmt(mean: float, spread: float, digits: int = 3) -> str:
    if spread == 0.0:
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} ± {spread:.2g}"


def draw(slices: dict[str, Any], path: Path) -> None:
    """The 2-D slices side by side, on one colour scale (log10 of the loss)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = {k: torch.log10(s.losses.clamp_min(1e-8)) for k, s in slices.items()}
    lo = min(float(v.min()) for v in logs.values())
    hi = max(float(v.max()) for v in logs.values())
    levels = torch.linspace(lo, hi, 25).tolist()
    fig, axes = plt.subplots(1, len(slices), figsize=(3.2 * len(slices), 3.4), squeeze=False)
    for ax, (name, s) in zip(axes[0], slices.items(), strict=True):
        im = ax.contourf(
            s.xs.numpy(), s.ys.numpy(), logs[name].numpy(), levels=levels, cmap="viridis"
        )
        ax.plot([0], [0], "r+", markersize=10)
        ax.set_title(name)
        ax.set_xlabel("direction 1")
        ax.set_aspect("equal")
    axes[0][0].set_ylabel("direction 2")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="log10 loss")
    fig.suptitle(
        "BreastMNIST training loss around the trained weights (filter-normalized directions)"
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="folder of breastmnist.npz")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--width", type=int, default=16, help="channels of the first stage")
    parser.add_argument("--probe-samples", type=int, default=256, help="training images measured")
    parser.add_argument("--lanczos", type=int, default=40, help="most Lanczos steps")
    parser.add_argument("--trace-samples", type=int, default=50, help="Hutchinson vectors")
    parser.add_argument("--grid", type=int, default=15, help="points per axis of the 2-D slice")
    parser.add_argument("--figure", type=Path, default=None, help="write the slices to this PNG")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one seed")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.width = 1, 1, 4
        args.probe_samples, args.lanczos, args.trace_samples, args.grid = 32, 5, 4, 3
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    root = args.root or (
        Path(os.environ["REGLIGHT_DATA"]) if os.environ.get("REGLIGHT_DATA") else None
    )
    if root is None or not (root / "breastmnist.npz").is_file():
        print("breastmnist.npz not found: pass --root or set REGLIGHT_DATA", file=sys.stderr)
        return 2
    data = load_data(root)
    x, y = data["train"]
    n = min(args.probe_samples, len(x))
    step = max(n // 4, 1)
    batches = [(x[i : i + step], y[i : i + step]) for i in range(0, n, step)]

    report = Report(
        "landscape_claims", {**vars(args), "variants": VARIANTS, "train_images": len(x)}
    )
    print(
        f"BreastMNIST: {len(x)} training images, {len(data['test'][0])} test images; SmallCNN width "
        f"{args.width}; SGD lr 0.05 momentum 0.9, {args.epochs} epochs; {args.seeds} seed(s); "
        f"measured on {n} training images in {len(batches)} batches, evaluation mode"
    )
    table = report.table(
        f"Mean over {args.seeds} seed(s) (± half the range)",
        [
            "variant",
            "train loss",
            "test acc",
            "top eigenvalue",
            "trace",
            "trace s.e.",
            "ε-sharpness (%)",
            "ratio λ_max / baseline",
        ],
        "lrrrrrrr",
    )
    slices: dict[str, Any] = {}
    baseline_eig: float | None = None
    for name, variant in VARIANTS.items():
        runs = []
        for seed in range(args.seeds):
            model, train_loss, test_acc, seconds = train(
                variant, data, args.epochs, seed, args.width
            )
            values = measure(model, batches, args, seed)
            if seed == 0:
                slices[name] = values.pop("slice")
            else:
                values.pop("slice")
            runs.append(
                {"train_loss": train_loss, "test_acc": test_acc, "seconds": seconds, **values}
            )
        stats = {k: _mean_spread([r[k] for r in runs]) for k in runs[0]}
        eig = stats["top_eigenvalue"][0]
        baseline_eig = eig if baseline_eig is None else baseline_eig
        ratio = eig / baseline_eig if baseline_eig else math.nan
        table.row(
            [
                name,
                _fmt(*stats["train_loss"]),
                _fmt(*stats["test_acc"]),
                _fmt(*stats["top_eigenvalue"]),
                _fmt(*stats["trace"]),
                f"{stats['trace_std_error'][0]:.2g}",
                _fmt(*stats["sharpness"]),
                f"{ratio:.2f}",
            ],
            labels={"variant": name, **variant},
            medians={k: v[0] for k, v in stats.items()},
            ratios={"top_eigenvalue_vs_baseline": ratio},
            extra={"runs": runs},
        )
    if args.figure is not None:
        draw(slices, args.figure)
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
