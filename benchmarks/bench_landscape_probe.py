"""What `LossLandscapeProbe` costs on `reglight run medical_cnn`: a fit with and without it.

The recipe `medical_cnn` (BreastMNIST, the recipe's model, data, augmentation and callbacks; no logger, one
thread) is fitted for `--epochs` epochs three times in one process, interleaved as A B C:

- A, without the probe;
- B, with `LossLandscapeProbe()` at its defaults (top eigenvalue on one batch, time budget 5 %);
- C, with `LossLandscapeProbe(max_overhead=None, every_n_epochs=--every)`: no budget, to show what one
  probe costs next to one epoch.

Reported: each fit's wall time, the probes' own time (their `seconds`, summed), the probes' share of the
training time (probe seconds over fit seconds minus probe seconds, both measured in the same fit, so the
machine's load cancels), the wall-time ratio to A (noisy on a shared machine), the probed epochs, and the
mean seconds of one probe and of one training epoch.

    nice -n 10 python benchmarks/bench_landscape_probe.py --epochs 60 --json probe_cost.json

`--quick` is a smoke run (2 epochs). The data folder is `--root`, else `$REGLIGHT_DATA`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from _report import Report, add_json_argument

# `python benchmarks/bench_landscape_probe.py` puts this folder first on sys.path, where `medmnist.py`
# would shadow the `medmnist` package that the recipe imports: drop it (the recipe is imported where used).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def fit(epochs: int, root: Path, save_dir: Path, probe: Any | None) -> dict[str, Any]:
    """One `reglight run medical_cnn` fit (no test, no logger); its wall time and the probe's history."""
    from reglight.cli import ReglightCLI, find_recipe

    cli = ReglightCLI(
        [
            "--config",
            str(find_recipe("medical_cnn").path),
            f"--trainer.max_epochs={epochs}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={save_dir}",
            f"--data.root={root}",
        ],
        run=False,
    )
    if probe is not None:
        cli.trainer.callbacks.append(probe)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    wall = time.perf_counter() - start
    history = list(probe.history) if probe is not None else []
    return {
        "wall": wall,
        "epochs": int(cli.trainer.current_epoch),
        "probe_seconds": sum(h["seconds"] for h in history),
        "probed_epochs": [h["epoch"] for h in history],
        "history": history,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--epochs", type=int, default=60, help="epochs of each fit (the recipe's: 60)"
    )
    parser.add_argument(
        "--every", type=int, default=10, help="every_n_epochs of the unbudgeted probe"
    )
    parser.add_argument("--root", type=Path, default=None, help="folder of breastmnist.npz")
    parser.add_argument("--save-dir", type=Path, default=Path("/tmp/bench_landscape_probe"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.every = 2, 1
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = args.root or (
        Path(os.environ["REGLIGHT_DATA"]) if os.environ.get("REGLIGHT_DATA") else None
    )
    if root is None or not (root / "breastmnist.npz").is_file():
        print("breastmnist.npz not found: pass --root or set REGLIGHT_DATA", file=sys.stderr)
        return 2
    from reglight.callbacks import LossLandscapeProbe

    report = Report("bench_landscape_probe", vars(args))
    print(
        f"reglight run medical_cnn, {args.epochs} epochs, {torch.get_num_threads()} thread(s), CPU"
    )
    runs = {
        "without the probe": fit(args.epochs, root, args.save_dir, None),
        "LossLandscapeProbe() (defaults)": fit(
            args.epochs, root, args.save_dir, LossLandscapeProbe()
        ),
        f"max_overhead=None, every_n_epochs={args.every}": fit(
            args.epochs,
            root,
            args.save_dir,
            LossLandscapeProbe(max_overhead=None, every_n_epochs=args.every),
        ),
    }
    base = runs["without the probe"]["wall"]
    table = report.table(
        "",
        [
            "fit",
            "wall (s)",
            "probes (s)",
            "probe share of training",
            "wall / without",
            "probed epochs",
            "s per probe",
            "s per epoch",
        ],
        "lrrrrlrr",
    )
    for name, r in runs.items():
        train = r["wall"] - r["probe_seconds"]
        share = r["probe_seconds"] / train
        n_probes = len(r["probed_epochs"])
        per_probe = r["probe_seconds"] / n_probes if n_probes else float("nan")
        per_epoch = train / max(r["epochs"], 1)
        table.row(
            [
                name,
                f"{r['wall']:.1f}",
                f"{r['probe_seconds']:.1f}",
                f"{100 * share:.1f} %",
                f"{r['wall'] / base:.3f}",
                ", ".join(map(str, r["probed_epochs"])) or "none",
                f"{per_probe:.1f}",
                f"{per_epoch:.2f}",
            ],
            labels={"fit": name},
            medians={"wall_s": r["wall"], "probe_s": r["probe_seconds"]},
            ratios={"probe_share": share, "wall_vs_without": r["wall"] / base},
            extra={"history": r["history"], "epochs": r["epochs"]},
        )
    report.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
