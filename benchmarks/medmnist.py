"""medical_cnn recipe on MedMNIST v2 against the published MedMNIST v2 baselines.

Trains a recipe (``recipes/medical_cnn.yaml`` by default, exactly what ``reglight run medical_cnn`` runs, without
a logger; ``--recipe medical_cnn_ensemble`` for the five-network ensemble) on BreastMNIST and PneumoniaMNIST (28×28) for several seeds and prints a markdown table: test AUC and
ACC per seed (model selected on validation AUC, test split used once at the end), mean ± std over seeds,
wall and CPU time per run (CPU time: all threads of the process, steadier than wall time on a shared
machine), and the published rows of Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D
and 3D biomedical image classification", Scientific Data 10, 41 (2023), Table 3.

The same config runs on both datasets: it was tuned on BreastMNIST's validation split only and is not tuned
for PneumoniaMNIST.

Needs the MedMNIST files in ``$REGLIGHT_DATA`` (or ``--root``): ``breastmnist.npz``, ``pneumoniamnist.npz``.

    python benchmarks/medmnist.py                # 5 seeds on both datasets
    python benchmarks/medmnist.py --quick        # 2 seeds, BreastMNIST only
    python benchmarks/medmnist.py --recipe medical_cnn_ensemble --datasets breastmnist
    python benchmarks/medmnist.py --datasets pneumoniamnist --seeds 3
    python benchmarks/medmnist.py --trainer.max_epochs=30   # any other option: a recipe override
    python benchmarks/medmnist.py --model.calibration=platt  # + test ACC on calibrated probabilities
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from _report import Report, add_json_argument

# `python benchmarks/medmnist.py` puts this folder first on sys.path, where this file would shadow the
# `medmnist` package that the recipe imports: drop it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

# published MedMNIST v2 test results (AUC, ACC), Yang et al. 2023, Table 3
PUBLISHED: dict[str, list[tuple[str, float, float]]] = {
    "breastmnist": [
        ("ResNet-18 (28)", 0.901, 0.863),
        ("ResNet-18 (224)", 0.891, 0.833),
        ("ResNet-50 (28)", 0.857, 0.812),
        ("ResNet-50 (224)", 0.866, 0.842),
        ("auto-sklearn", 0.836, 0.803),
        ("AutoKeras", 0.871, 0.831),
        ("Google AutoML Vision", 0.919, 0.861),
    ],
    "pneumoniamnist": [
        ("ResNet-18 (28)", 0.944, 0.854),
        ("ResNet-18 (224)", 0.956, 0.864),
        ("ResNet-50 (28)", 0.948, 0.854),
        ("ResNet-50 (224)", 0.962, 0.884),
        ("auto-sklearn", 0.942, 0.855),
        ("AutoKeras", 0.947, 0.878),
        ("Google AutoML Vision", 0.991, 0.946),
    ],
}
NAMES = {"breastmnist": "BreastMNIST", "pneumoniamnist": "PneumoniaMNIST"}


def _fmt(values: list[float], digits: int = 3) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds FIRST..FIRST+N-1 (default 0)"
    )
    parser.add_argument(
        "--datasets", type=str, default="breastmnist,pneumoniamnist", help="comma-separated flags"
    )
    parser.add_argument("--root", type=str, default=None, help="folder of the .npz files")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, BreastMNIST only")
    parser.add_argument(
        "--recipe",
        type=str,
        default="medical_cnn",
        help="medical_cnn (default) or medical_cnn_ensemble (5 networks, each at its own best epoch)",
    )
    add_json_argument(parser)
    opts, extra = parser.parse_known_args(argv)
    if opts.root:
        os.environ["REGLIGHT_DATA"] = opts.root
    seeds = list(range(opts.first_seed, opts.first_seed + (2 if opts.quick else opts.seeds)))
    datasets = (
        ["breastmnist"]
        if opts.quick
        else [d.strip() for d in opts.datasets.split(",") if d.strip()]
    )

    import torch

    from reglight.ablation import Variant, run_one
    from reglight.cli import find_recipe

    torch.set_num_threads(opts.threads)
    recipe = find_recipe(opts.recipe)
    report = Report(
        "medmnist",
        {**vars(opts), "seeds": seeds, "datasets": datasets, "recipe_overrides": extra},
    )
    label = f"reglight {recipe.name}" + (f" ({' '.join(extra)})" if extra else "")
    all_results = {}
    for flag in datasets:
        overrides = [f"--data.flag={flag}", *extra]  # anything else is a recipe override
        results = []
        for seed in seeds:
            cpu = time.process_time()
            run = run_one(recipe, Variant("full"), seed, overrides)
            r = {
                **run.metrics,
                "epochs": float(run.epochs),
                "seconds": run.seconds,
                "cpu_seconds": time.process_time() - cpu,
            }
            results.append(r)
            print(
                f"[medmnist] {flag} seed {seed}: AUC {r['test/auc']:.3f} ACC {r['test/acc']:.3f} "
                f"(val AUC {r['test/val_auc']:.3f}"
                + (
                    f", calibrated ACC {r['test/calibrated_acc']:.3f}"
                    if "test/calibrated_acc" in r
                    else ""
                )
                + f") {r['epochs']:.0f} epochs {r['seconds']:.0f}s "
                f"(CPU {r['cpu_seconds']:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
        all_results[flag] = results
    calibrated = any("test/calibrated_acc" in r for rs in all_results.values() for r in rs)
    table = report.table(
        f"{recipe.name} on MedMNIST v2 (28×28), torch threads: {opts.threads}",
        [
            "dataset",
            "run",
            "test AUC",
            "test ACC",
            *(["calibrated test ACC"] if calibrated else []),
            "epochs",
            "time / run (s)",
            "CPU time / run (s)",
        ],
    )

    def cal(values: list[float]) -> list[str]:
        return [_fmt(values) if len(values) > 1 else f"{values[0]:.3f}"] if calibrated else []

    for flag, results in all_results.items():
        name = NAMES.get(flag, flag)
        for seed, r in zip(seeds, results):
            table.row(
                [
                    name,
                    f"{label}, seed {seed}",
                    f"{r['test/auc']:.3f}",
                    f"{r['test/acc']:.3f}",
                    *cal([r.get("test/calibrated_acc", float("nan"))]),
                    f"{r['epochs']:.0f}",
                    f"{r['seconds']:.0f}",
                    f"{r['cpu_seconds']:.0f}",
                ],
                labels={"dataset": flag, "run": label, "seed": seed},
                medians={"seconds": r["seconds"]},
                extra={k: float(v) for k, v in r.items() if isinstance(v, (int, float))},
            )
        aucs = [r["test/auc"] for r in results]
        accs = [r["test/acc"] for r in results]
        secs = [r["seconds"] for r in results]
        # ratios to MedMNIST v2's ResNet-18 at 28×28, the published row of the same input size
        ref = {model: (auc, acc) for model, auc, acc in PUBLISHED.get(flag, [])}
        ref_auc, ref_acc = ref.get("ResNet-18 (28)", (float("nan"), float("nan")))
        table.row(
            [
                name,
                f"**{label}, mean ± std ({len(seeds)} seeds)**",
                f"**{_fmt(aucs)}**",
                f"**{_fmt(accs)}**",
                *cal([r.get("test/calibrated_acc", float("nan")) for r in results]),
                _fmt([r["epochs"] for r in results], 0),
                f"{statistics.median(secs):.0f}",
                f"{statistics.median(r['cpu_seconds'] for r in results):.0f}",
            ],
            labels={"dataset": flag, "run": label, "seeds": seeds},
            medians={"seconds": statistics.median(secs), "test_auc": statistics.median(aucs)},
            ratios={
                "mean AUC / ResNet-18 (28) AUC": statistics.fmean(aucs) / ref_auc,
                "mean ACC / ResNet-18 (28) ACC": statistics.fmean(accs) / ref_acc,
            }
            if flag in PUBLISHED
            else {},
            extra={
                "test_auc_mean": statistics.fmean(aucs),
                "test_acc_mean": statistics.fmean(accs),
                "test_auc_std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
                "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            },
        )
        cal_blank = [""] if calibrated else []
        for model, auc, acc in PUBLISHED.get(flag, []):
            table.row(
                [name, f"MedMNIST v2: {model}", f"{auc:.3f}", f"{acc:.3f}", *cal_blank, "", "", ""],
                labels={"dataset": flag, "run": f"MedMNIST v2: {model}", "published": True},
                extra={"test_auc": auc, "test_acc": acc},
            )
    report.write(opts.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
