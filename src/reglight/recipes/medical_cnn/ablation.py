"""Ablation of the medical-image CNN recipe: the full regularization stack, minus each piece, over seeds.

``reglight ablate medical_cnn --seeds 5`` trains the recipe (``recipes/medical_cnn.yaml``, or ``--config``)
once per variant and seed, and reports mean ± standard deviation over seeds of the test AUC and ACC and of
the generalization gap (train − test AUC, and test − train loss, both measured without augmentation on the
restored model):

=====================  =================================================================================
variant                what changes
=====================  =================================================================================
``full``               the recipe as configured
``no_weight_decay``    ``model.weight_decay = 0`` (and no ``PenaltyHook``)
``no_dropout``         ``model.dropout = 0`` and ``model.dropblock = 0``
``no_augmentation``    ``data.augment = false`` (and no ``AugmentationScheduler``)
``no_early_stopping``  no ``EarlyStopping``: all ``max_epochs`` epochs, the last weights are tested
``deeper_network``     the full stack on a deeper, wider network (:data:`DEEPER`)
``none``               all of the above removed at once: no regularizer, deeper network
=====================  =================================================================================

Every run goes through the same LightningCLI parser as ``reglight run`` (so any recipe override can be
passed on, e.g. ``--data.flag pneumoniamnist``), runs in this process on its own Trainer without a logger
or checkpoints; the final tables and a bar chart go to one logger (``--logger``, W&B by default).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEEPER", "VARIANTS", "Variant", "main", "run_ablation", "run_one", "summarize"]

DEEPER: tuple[str, ...] = (
    "--model.depth=4",
    "--model.blocks_per_stage=3",
    "--model.hidden=256",
)
"""Overrides of the ``deeper_network`` variant: 4 stages of 3 convolutions (12 convolution layers, up to 256
channels, instead of the recipe's 3 stages of 2) and a fully connected layer of 256 units."""


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation.

    Attributes:
        name: Short name (a column of the table).
        description: What is removed or changed.
        overrides: LightningCLI overrides applied on top of the recipe.
        drop_callbacks: Names of callback classes removed from the Trainer (``"EarlyStopping"``, ...).
    """

    name: str
    description: str
    overrides: tuple[str, ...] = ()
    drop_callbacks: tuple[str, ...] = field(default_factory=tuple)


_NO_WD = ("--model.weight_decay=0",)
_NO_DROPOUT = ("--model.dropout=0", "--model.dropblock=0")
_NO_AUG = ("--data.augment=false",)

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("full", "full regularization stack"),
        Variant("no_weight_decay", "without L2 weight decay", _NO_WD, ("PenaltyHook",)),
        Variant("no_dropout", "without dropout", _NO_DROPOUT),
        Variant("no_augmentation", "without augmentation", _NO_AUG, ("AugmentationScheduler",)),
        Variant("no_early_stopping", "without early stopping", (), ("EarlyStopping",)),
        Variant("deeper_network", "full stack, deeper network", DEEPER),
        Variant(
            "none",
            "no regularization at all (deeper network)",
            (*_NO_WD, *_NO_DROPOUT, *_NO_AUG, *DEEPER, "--model.label_smoothing=0"),
            ("PenaltyHook", "AugmentationScheduler", "EarlyStopping"),
        ),
    )
}
"""The ablation's variants, in table order."""

_QUIET = (
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
)
_METRICS = ("test/auc", "test/acc", "test/gap_auc", "test/gap_loss", "test/val_auc")


def _default_config() -> Path:
    from reglight.cli import find_recipe

    return find_recipe("medical_cnn").path


def run_one(
    config: str | Path, variant: Variant, seed: int, overrides: Sequence[str] = ()
) -> dict[str, float]:
    """Train and test one variant with one seed; return its final metrics.

    Args:
        config: The recipe YAML.
        variant: What to remove.
        seed: Passed as ``seed_everything``.
        overrides: Extra LightningCLI overrides for every run (e.g. ``["--trainer.max_epochs=5"]``).

    Returns:
        ``test/auc``, ``test/acc``, ``test/gap_auc``, ``test/gap_loss``, ``test/val_auc``, ``epochs`` and
        ``seconds``, and the settings that were trained: ``weight_decay``, ``dropout``, ``conv_layers``,
        ``augment`` (1 or 0) and ``early_stopping`` (1 or 0).
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    from reglight.cli import ReglightCLI

    args = [
        "--config",
        str(config),
        *overrides,
        *variant.overrides,
        f"--seed_everything={seed}",
        *_QUIET,
    ]
    cli = ReglightCLI(args, run=False, prog="reglight ablate medical_cnn")
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    # checkpoints are not needed (early stopping restores the best weights in memory)
    callbacks: list[Any] = trainer.callbacks  # type: ignore[attr-defined]
    callbacks[:] = [
        cb
        for cb in callbacks
        if not isinstance(cb, ModelCheckpoint) and type(cb).__name__ not in variant.drop_callbacks
    ]
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    out = {k: float(results[0][k]) for k in _METRICS}
    out["epochs"] = float(trainer.current_epoch)
    out["seconds"] = time.perf_counter() - start
    # what was actually trained, so that a reader (and the tests) can check each variant's setting
    hp = model.hparams
    out["weight_decay"] = float(hp.get("weight_decay", math.nan))
    out["dropout"] = float(hp.get("dropout", math.nan))
    out["conv_layers"] = float(hp.get("depth", 0) * hp.get("blocks_per_stage", 0))
    out["augment"] = float(getattr(datamodule, "augmentation", None) is not None)
    out["early_stopping"] = float(any(type(cb).__name__ == "EarlyStopping" for cb in callbacks))
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def summarize(runs: dict[str, list[dict[str, float]]]) -> Any:
    """Mean ± standard deviation over seeds of each variant's metrics, as a ``reglight.logging.Table``.

    Args:
        runs: Variant name → the result of :func:`run_one` for each seed.

    Returns:
        A table with one row per variant: test AUC, test ACC, the AUC gap (train − test), the loss gap
        (test − train), epochs trained, and the number of seeds. Cells read ``mean ± std``.

    Example:
        >>> r = {"test/auc": 0.9, "test/acc": 0.8, "test/gap_auc": 0.05, "test/gap_loss": 0.1, "epochs": 9.0}
        >>> row = summarize({"full": [r, r]}).rows[0]
        >>> row[1], row[2]
        ('0.900 ± 0.000', '0.800 ± 0.000')
    """
    from reglight.logging import Table

    rows = []
    for name, results in runs.items():
        cells: list[Any] = [name]
        for key in ("test/auc", "test/acc", "test/gap_auc", "test/gap_loss", "epochs"):
            mean, std = _mean_std([r[key] for r in results])
            cells.append(
                f"{mean:.0f} ± {std:.0f}" if key == "epochs" else f"{mean:.3f} ± {std:.3f}"
            )
        cells.append(len(results))
        rows.append(cells)
    columns = [
        "variant",
        "test AUC",
        "test ACC",
        "gap AUC (train−test)",
        "gap loss (test−train)",
        "epochs",
        "seeds",
    ]
    return Table(
        "Ablation of the medical_cnn regularization stack (mean ± std over seeds)", columns, rows
    )


def _per_run_table(runs: dict[str, list[dict[str, float]]], seeds: Sequence[int]) -> Any:
    from reglight.logging import Table

    rows = [
        [
            name,
            seed,
            r["test/auc"],
            r["test/acc"],
            r["test/gap_auc"],
            r["test/gap_loss"],
            r["test/val_auc"],
            int(r["epochs"]),
            r["seconds"],
        ]
        for name, results in runs.items()
        for seed, r in zip(seeds, results)
    ]
    columns = [
        "variant",
        "seed",
        "test AUC",
        "test ACC",
        "gap AUC",
        "gap loss",
        "val AUC",
        "epochs",
        "seconds",
    ]
    return Table("Ablation runs", columns, rows)


def _bar_chart(runs: dict[str, list[dict[str, float]]]) -> Any:
    from .figures import ablation_bar_chart

    metrics = {
        "test AUC": "test/auc",
        "test ACC": "test/acc",
        "gap AUC (train−test)": "test/gap_auc",
        "gap loss (test−train)": "test/gap_loss",
    }
    means = {
        label: [_mean_std([r[k] for r in res])[0] for res in runs.values()]
        for label, k in metrics.items()
    }
    stds = {
        label: [_mean_std([r[k] for r in res])[1] for res in runs.values()]
        for label, k in metrics.items()
    }
    return ablation_bar_chart(list(runs), means, stds)


def _make_logger(kind: str, save_dir: str) -> Any:
    if kind == "none":
        return None
    if kind == "wandb":
        from reglight.logging import WandbLogger

        return WandbLogger(project="reglight", name="medical_cnn-ablation", save_dir=save_dir)
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir, name="medical_cnn-ablation")
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir, name="medical_cnn-ablation")


def run_ablation(
    seeds: Sequence[int],
    variants: Sequence[str] = tuple(VARIANTS),
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, list[dict[str, float]]]:
    """Run every variant with every seed.

    Args:
        seeds: The seeds.
        variants: Names from :data:`VARIANTS`, in table order.
        config: The recipe YAML (default: the installed ``medical_cnn`` recipe).
        overrides: LightningCLI overrides applied to every run.
        progress: Print one line per finished run to stderr.

    Returns:
        Variant name → one result dict (see :func:`run_one`) per seed.

    Raises:
        ValueError: For an unknown variant name or an empty list of seeds.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if not seeds:
        raise ValueError("`seeds` must not be empty")
    path = Path(config) if config is not None else _default_config()
    runs: dict[str, list[dict[str, float]]] = {}
    for name in variants:
        runs[name] = []
        for seed in seeds:
            r = run_one(path, VARIANTS[name], seed, overrides)
            runs[name].append(r)
            if progress:
                print(
                    f"[ablate] {name:<18} seed {seed}: test AUC {r['test/auc']:.3f}  ACC {r['test/acc']:.3f}  "
                    f"gap AUC {r['test/gap_auc']:+.3f}  epochs {r['epochs']:.0f}  {r['seconds']:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reglight ablate medical_cnn",
        description=(
            "Train the medical_cnn recipe with its full regularization stack and without each regularizer, "
            "over several seeds; print and log mean ± std of test AUC/ACC and the generalization gap. "
            "Other options (e.g. --data.flag pneumoniamnist, --trainer.max_epochs 30) are passed to every "
            "run as recipe overrides."
        ),
    )
    p.add_argument("--seeds", type=int, default=5, help="number of seeds 0..N-1 (default 5)")
    p.add_argument("--seed-list", type=str, default=None, help="explicit comma-separated seeds")
    p.add_argument(
        "--variants",
        type=str,
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {', '.join(VARIANTS)}",
    )
    p.add_argument("--config", type=str, default=None, help="recipe YAML (default: medical_cnn)")
    p.add_argument("--logger", choices=("wandb", "csv", "tensorboard", "none"), default="wandb")
    p.add_argument(
        "--save-dir", type=str, default="reglight_logs", help="folder of the logger's files"
    )
    p.add_argument("--output", type=str, default=None, help="write all results to this JSON file")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the runs")
    return p


def main(argv: list[str]) -> int:
    """``reglight ablate medical_cnn [options] [recipe overrides]``; returns the exit code.

    Args:
        argv: Command-line arguments after ``reglight ablate medical_cnn``.

    Returns:
        0 on success, 2 on bad arguments.
    """
    parser = _parser()
    try:
        opts, overrides = parser.parse_known_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if opts.seed_list:
        try:
            seeds = [int(s) for s in opts.seed_list.split(",") if s.strip()]
        except ValueError:
            print(f"reglight ablate: error: bad --seed-list {opts.seed_list!r}", file=sys.stderr)
            return 2
    else:
        seeds = list(range(opts.seeds))
    variants = [v.strip() for v in opts.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not seeds or opts.seeds < 1:
        what = (
            f"unknown variant(s) {bad}; choose from {list(VARIANTS)}"
            if bad
            else "need at least one seed"
        )
        print(f"reglight ablate: error: {what}", file=sys.stderr)
        return 2
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    runs = run_ablation(seeds, variants, opts.config, overrides)

    from reglight.logging import log_figure, log_table

    summary = summarize(runs)
    per_run = _per_run_table(runs, seeds)
    print(f"\n## {summary.title}\n\n{summary.to_markdown()}\n")
    print(f"## {per_run.title}\n\n{per_run.to_markdown(float_format='{:.3f}')}\n")
    logger = _make_logger(opts.logger, opts.save_dir)
    if logger is not None:
        for name, results in runs.items():
            for key in ("test/auc", "test/acc", "test/gap_auc"):
                mean, std = _mean_std([r[key] for r in results])
                logger.log_metrics(
                    {f"ablation/{name}/{key}_mean": mean, f"ablation/{name}/{key}_std": std}
                )
        log_table(logger, "ablation/summary", summary.columns, summary.rows)
        log_table(logger, "ablation/runs", per_run.columns, per_run.rows)
        log_figure(logger, "ablation/bar_chart", _bar_chart(runs))
        logger.finalize("success")
        if hasattr(logger, "experiment") and opts.logger == "wandb":
            logger.experiment.finish()
        print(f"logged to {opts.logger}: {getattr(logger, 'log_dir', None) or opts.save_dir}")
    if opts.output:
        payload = {"seeds": seeds, "overrides": overrides, "runs": runs}
        Path(opts.output).write_text(json.dumps(payload, indent=2))
    return 0
