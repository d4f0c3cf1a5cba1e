"""Cross-validation of medical_cnn settings on BreastMNIST's training + validation images (no test image).

How the recipe's settings are chosen without looking at the test split: the 624 training + validation
images of BreastMNIST are split into 4 class-stratified folds of 156 images (the size of the test split).
For each fold, the other 468 images are split again, class-stratified, into 390 training and 78 validation
images (the official ratio), and the recipe runs on them exactly as ``reglight run medical_cnn`` does
(augmentation, early stopping on the validation AUC with the best weights restored); the held-out fold plays
the test split. Each setting is a list of recipe overrides, run for several seeds per fold.

Besides the mean AUC / ACC of single runs, the script keeps every run's predicted probabilities on its
held-out fold, with and without mirror test-time augmentation, and reports the AUC / ACC of the *ensemble*
of a setting's seeds on each fold (the average of their probabilities), so that a deep ensemble of ``k``
networks is compared with single networks on the same folds.

    python benchmarks/medmnist_cv.py --seeds 3 --setting base --setting "sam:--trainer.callbacks+=reglight.callbacks.SAMCallback"
    python benchmarks/medmnist_cv.py --folds 0,1 --seeds 1 --setting base --json cv.json

A setting is ``NAME`` or ``NAME:OVERRIDE OVERRIDE ...`` (overrides separated by spaces, as on the command
line of ``reglight run``). ``--save DIR`` writes each run's held-out probabilities to ``DIR/NAME/fold{k}_seed{s}.npz``
and reuses runs found there.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from _report import Report, add_json_argument

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

if TYPE_CHECKING:
    from reglight.cli import Recipe

N_FOLDS = 4
N_VAL = 78


def fold_splits(labels: np.ndarray, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Index arrays `train`, `val`, `test` (into the pooled images) of each of the 4 folds."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    y = labels.reshape(-1)
    out = []
    folds = StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed)
    for k, (rest, held) in enumerate(folds.split(np.zeros(len(y)), y)):
        train, val = train_test_split(
            rest, test_size=N_VAL, stratify=y[rest], random_state=seed + k
        )
        out.append({"train": np.sort(train), "val": np.sort(val), "test": np.sort(held)})
    return out


def write_fold_files(source: Path, folder: Path) -> list[Path]:
    """Write one MedMNIST-format `breastmnist.npz` per fold under `folder/fold{k}/`."""
    with np.load(source) as npz:
        images = np.concatenate([npz["train_images"], npz["val_images"]])
        labels = np.concatenate([npz["train_labels"], npz["val_labels"]])
    roots = []
    for k, split in enumerate(fold_splits(labels)):
        root = folder / f"fold{k}"
        root.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for name, index in split.items():
            arrays[f"{name}_images"] = images[index]
            arrays[f"{name}_labels"] = labels[index]
        np.savez(root / "breastmnist.npz", **arrays)
        roots.append(root)
    return roots


def run_fold(
    recipe: Recipe, overrides: list[str], root: Path, seed: int
) -> dict[str, np.ndarray | float]:
    """Train the recipe on one fold; the held-out fold's labels and probabilities (plain and mirrored)."""
    import torch

    from reglight.ablation import Variant, run_one

    trainers: list[Any] = []
    cpu = time.process_time()
    run = run_one(
        recipe,
        Variant("cv"),
        seed,
        [f"--data.root={root}", "--data.download=false", *overrides],
        configure=trainers.append,
    )
    cpu_seconds = time.process_time() - cpu
    (trainer,) = trainers
    model, datamodule = trainer.lightning_module.eval(), trainer.datamodule
    probs, mirrored, targets = [], [], []
    with torch.no_grad():
        for x, y in datamodule.test_dataloader()[0]:
            probs.append(model(x).softmax(-1)[:, 1])
            mirrored.append(model(x.flip(-1)).softmax(-1)[:, 1])
            targets.append(y.view(-1))
    return {
        "target": torch.cat(targets).numpy(),
        "prob": torch.cat(probs).numpy(),
        "prob_mirror": torch.cat(mirrored).numpy(),
        "epochs": float(run.epochs),
        "seconds": run.seconds,
        "cpu_seconds": cpu_seconds,
    }


def auc_acc(target: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(target, prob)), float(np.mean((prob > 0.5) == target))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setting", action="append", default=[], help="NAME[:OVERRIDES] (repeat)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per fold (default 3)")
    parser.add_argument("--folds", type=str, default="0,1,2,3", help="comma-separated folds")
    parser.add_argument("--root", type=str, default=None, help="folder of breastmnist.npz")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--save", type=str, default=None, help="folder of the per-run probabilities"
    )
    add_json_argument(parser)
    opts = parser.parse_args(argv)
    root = Path(opts.root or os.environ.get("REGLIGHT_DATA") or Path.home() / ".medmnist")
    source = root / "breastmnist.npz"
    if not source.is_file():
        parser.error(f"--root: {source} not found")
    settings: dict[str, list[str]] = {}
    for spec in opts.setting or ["base"]:
        name, _, rest = spec.partition(":")
        settings[name.strip()] = shlex.split(rest)
    folds = [int(f) for f in opts.folds.split(",")]
    seeds = list(range(opts.seeds))

    import torch

    from reglight.cli import find_recipe

    torch.set_num_threads(opts.threads)
    recipe = find_recipe("medical_cnn")
    save = Path(opts.save) if opts.save else None
    report = Report("medmnist_cv", {**vars(opts), "settings": settings})
    runs: dict[str, dict[tuple[int, int], dict[str, np.ndarray | float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        roots = write_fold_files(source, Path(tmp))
        for name, overrides in settings.items():
            runs[name] = {}
            for fold in folds:
                for seed in seeds:
                    path = save / name / f"fold{fold}_seed{seed}.npz" if save else None
                    if path is not None and path.is_file():
                        with np.load(path) as npz:
                            run = {k: npz[k] for k in npz.files}
                    else:
                        run = run_fold(recipe, overrides, roots[fold], seed)
                        if path is not None:
                            path.parent.mkdir(parents=True, exist_ok=True)
                            np.savez(path, **run)
                    runs[name][fold, seed] = run
                    auc, acc = auc_acc(run["target"], run["prob"])  # type: ignore[arg-type]
                    print(
                        f"[cv] {name} fold {fold} seed {seed}: AUC {auc:.3f} ACC {acc:.3f} "
                        f"{float(run['epochs']):.0f} epochs {float(run['seconds']):.0f}s "
                        f"(cpu {float(run['cpu_seconds']):.0f}s)",
                        file=sys.stderr,
                        flush=True,
                    )
    table = report.table(
        f"medical_cnn, {len(folds)}-fold CV on BreastMNIST train+val, {len(seeds)} seed(s) per fold",
        ["setting", "prediction", "CV AUC", "CV ACC", "time / run (s)"],
    )
    for name, by_run in runs.items():
        secs = [float(r["seconds"]) for r in by_run.values()]
        for key, label in (("prob", "single network"), ("prob_mirror_avg", "single, mirror TTA")):
            single = []
            for r in by_run.values():
                p = r["prob"] if key == "prob" else 0.5 * (r["prob"] + r["prob_mirror"])  # type: ignore[operator]
                single.append(auc_acc(r["target"], p))  # type: ignore[arg-type]
            aucs, accs = [s[0] for s in single], [s[1] for s in single]
            table.row(
                [
                    name,
                    label,
                    f"{statistics.fmean(aucs):.3f}",
                    f"{statistics.fmean(accs):.3f}",
                    f"{statistics.median(secs):.0f}",
                ],
                labels={"setting": name, "prediction": label},
                medians={"seconds": statistics.median(secs)},
                extra={
                    "auc": statistics.fmean(aucs),
                    "acc": statistics.fmean(accs),
                    "aucs": aucs,
                    "accs": accs,
                },
            )
        if len(seeds) > 1:
            for tta in (False, True):
                aucs, accs = [], []
                for fold in folds:
                    members = [by_run[fold, s] for s in seeds]
                    p = np.mean(
                        [
                            0.5 * (m["prob"] + m["prob_mirror"]) if tta else m["prob"]
                            for m in members
                        ],  # type: ignore[operator]
                        axis=0,
                    )
                    auc, acc = auc_acc(members[0]["target"], p)  # type: ignore[arg-type]
                    aucs.append(auc)
                    accs.append(acc)
                label = f"ensemble of {len(seeds)}" + (", mirror TTA" if tta else "")
                table.row(
                    [
                        name,
                        label,
                        f"{statistics.fmean(aucs):.3f}",
                        f"{statistics.fmean(accs):.3f}",
                        "",
                    ],
                    labels={"setting": name, "prediction": label},
                    extra={
                        "auc": statistics.fmean(aucs),
                        "acc": statistics.fmean(accs),
                        "aucs": aucs,
                        "accs": accs,
                    },
                )
    report.write(opts.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
