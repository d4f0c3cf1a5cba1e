"""Gallery figures made from the recipes' own outputs: the medical ablation, the learning curve, grokking
and LayerNorm vs BatchNorm in the Transformer.

Each maker reads the result file that the recipe's study writes, when one is there (with or without
`quick`: reading it costs nothing), and otherwise runs a tiny version of that study itself, with the study's
own runner:

| figure | result file (`--json` of) | runner of the tiny version |
|---|---|---|
| `medical_ablation` | `reglight ablate medical_cnn --json PATH` | [run_ablation][reglight.ablation.run_ablation] |
| `learning_curve` | `reglight ablate medical_cnn --train_sizes ... --json PATH` | [run_learning_curve][reglight.learning_curve.run_learning_curve] |
| `grokking` | `python benchmarks/grokking.py --json PATH` (its `curves`) | the `grokking` recipe through `ReglightCLI` |
| `transformer_norms` | `python -m reglight.recipes.transformer.norm_study --json PATH` | [run_variant][reglight.recipes.transformer.norm_study.run_variant] |

Result files are looked up as `<folder>/<figure>.json`, the folder being `$REGLIGHT_GALLERY_RESULTS` or
`docs/gallery/data/` of the working directory. The recipes' figure functions draw them where they exist
([ablation_bar_chart][reglight.ablation.ablation_bar_chart],
[learning_curve_figure][reglight.learning_curve.learning_curve_figure],
[norm_study_figure][reglight.recipes.transformer.norm_study.norm_study_figure]).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reglight.figures._base import GalleryFigure, register
from reglight.figures.flat_sharp import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from reglight.ablation import Run

__all__ = [
    "ablation_means",
    "grokking_curves",
    "grokking_figure",
    "learning_curve_runs",
    "load_result",
    "medical_ablation_runs",
    "results_folder",
    "transformer_norm_runs",
]

TINY_MEDICAL = (
    "--trainer.max_epochs=2",
    "--model.width=8",
    "--model.hidden=32",
    "--data.train_size=64",
    "--data.download=false",
)
"""Overrides of the tiny medical studies: 2 epochs of a 4× narrower network on 64 training images."""


def results_folder() -> Path:
    """Where result files are looked up: `$REGLIGHT_GALLERY_RESULTS`, else `docs/gallery/data`."""
    env = os.environ.get("REGLIGHT_GALLERY_RESULTS")
    return Path(env) if env else Path("docs") / "gallery" / "data"


def load_result(name: str) -> Any | None:
    """The parsed `<results_folder>/<name>.json`, or `None` when there is none."""
    path = results_folder() / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def _medmnist_root() -> Iterator[tuple[Path, bool]]:
    """The folder with `breastmnist.npz` (`$REGLIGHT_DATA`) or a temporary one with generated data."""
    env = os.environ.get("REGLIGHT_DATA")
    if env and (Path(env) / "breastmnist.npz").is_file():
        yield Path(env), False
        return
    from reglight.recipes.medical_cnn import write_synthetic_medmnist

    with tempfile.TemporaryDirectory(prefix="reglight-gallery-") as tmp:
        write_synthetic_medmnist(Path(tmp) / "breastmnist.npz", n_samples=(128, 32, 64), seed=0)
        yield Path(tmp), True


def _runs(data: Mapping[str, Any]) -> dict[str, list[Run]]:
    from reglight.ablation import Run

    return {name: [Run(**r) for r in rs] for name, rs in data.items()}


# ------------------------------------------------------------------ medical ablation
def medical_ablation_runs(quick: bool, seed: int) -> tuple[dict[str, list[Run]], str]:
    """The ablation's runs (variant → one Run per seed) and where they come from.

    From `medical_ablation.json` (the payload of `reglight ablate medical_cnn --json`) when present;
    otherwise [run_ablation][reglight.ablation.run_ablation] on the recipe's own variants, one seed,
    with [TINY_MEDICAL][reglight.figures.recipes.TINY_MEDICAL].
    """
    saved = load_result("medical_ablation")
    if saved is not None:
        seeds = saved.get("seeds", [])
        return _runs(
            saved["runs"]
        ), f"`reglight ablate medical_cnn` ({len(seeds)} seeds, saved results)"
    from reglight.ablation import load_ablation, run_ablation
    from reglight.cli import find_recipe

    recipe = find_recipe("medical_cnn")
    ablation = load_ablation(recipe)
    with _medmnist_root() as (root, synthetic):
        runs = run_ablation(
            recipe,
            ablation,
            [seed],
            overrides=[*TINY_MEDICAL, f"--data.root={root}"],
            progress=False,
        )
    data = "generated data (BreastMNIST absent)" if synthetic else "BreastMNIST"
    return runs, f"a tiny run of every variant on {data} (1 seed, 2 epochs, width 8, 64 images)"


def ablation_means(
    runs: Mapping[str, Sequence[Run]], metrics: Mapping[str, str]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per metric label, the mean and the sample standard deviation (0 for one seed) of each variant.

    Examples:
        >>> from reglight.ablation import Run
        >>> runs = {"full": [Run("full", s, {"test/auc": a}, 1, 1.0) for s, a in enumerate([0.8, 0.9])]}
        >>> m, s = ablation_means(runs, {"test/auc": "AUC"})
        >>> round(m["AUC"][0], 3), round(s["AUC"][0], 4)
        (0.85, 0.0707)
    """
    means: dict[str, list[float]] = {}
    stds: dict[str, list[float]] = {}
    for key, label in metrics.items():
        means[label], stds[label] = [], []
        for rs in runs.values():
            values = [r.metrics.get(key, math.nan) for r in rs]
            means[label].append(statistics.fmean(values))
            stds[label].append(statistics.stdev(values) if len(values) > 1 else 0.0)
    return means, stds


@register("medical_ablation", 9)
def make_medical_ablation(quick: bool, seed: int) -> GalleryFigure:
    """Figure 9a: the BreastMNIST ablation of the medical recipe's regularization stack."""
    from reglight.ablation import ablation_bar_chart

    runs, source = medical_ablation_runs(quick, seed)
    metrics = {
        "test/auc": "test AUC",
        "test/acc": "test ACC",
        "test/gap_auc": "gap AUC (train−test)",
    }
    means, stds = ablation_means(runs, metrics)
    names = list(runs)
    fig = ablation_bar_chart(
        names, means, stds, title=f"medical_cnn ablation on BreastMNIST: {source}"
    )
    numbers = {
        f"{n}/{k}": means[label][i] for i, n in enumerate(names) for k, label in metrics.items()
    }
    listed = "; ".join(
        f"{n}: AUC {means['test AUC'][i]:.3f}, ACC {means['test ACC'][i]:.3f}"
        for i, n in enumerate(names)
    )
    caption = (
        "The medical recipe's ablation (`reglight ablate medical_cnn`, the variants declared in "
        "`recipes/medical_cnn.yaml`: the full stack, the stack minus each regularizer, a deeper network, "
        f"no regularization), from {source}, drawn with `reglight.ablation.ablation_bar_chart`: mean ± "
        f"standard deviation over seeds of test AUC, test accuracy and the AUC gap. Measured: {listed}."
    )
    return GalleryFigure(
        "medical_ablation", "Ablation of the medical recipe", fig, caption, numbers
    )


# ------------------------------------------------------------------ learning curve
def learning_curve_runs(quick: bool, seed: int) -> tuple[dict[int, dict[str, list[Run]]], str]:
    """Training size → variant → runs, from `learning_curve.json` or a tiny run of the study."""
    saved = load_result("learning_curve")
    if saved is not None:
        results = {int(n): _runs(by) for n, by in saved["runs"].items()}
        seeds = {r.seed for by in results.values() for rs in by.values() for r in rs}
        return (
            results,
            f"`reglight ablate medical_cnn --train_sizes` ({len(seeds)} seeds, saved results)",
        )
    import yaml

    from reglight.cli import find_recipe
    from reglight.learning_curve import (
        learning_curve_section,
        run_learning_curve,
        variants_of,
    )

    recipe = find_recipe("medical_cnn")
    section = learning_curve_section(
        (yaml.safe_load(recipe.path.read_text(encoding="utf-8")) or {}).get("ablation")
    )
    assert section is not None
    curve, _ = variants_of(section, recipe.name)
    overrides = [o for o in TINY_MEDICAL if not o.startswith("--data.train_size")]
    with _medmnist_root() as (root, synthetic):
        results = run_learning_curve(
            recipe,
            curve,
            [32, 64],
            [seed, seed + 1],
            ["full", "none"],
            [*overrides, f"--data.root={root}"],
            max_epoch_scale=2.0,
            progress=False,
        )
    data = "generated data (BreastMNIST absent)" if synthetic else "BreastMNIST"
    return results, f"a tiny run on {data} (2 seeds, sizes 32 and 64, 2-4 epochs, width 8)"


@register("learning_curve", 10)
def make_learning_curve(quick: bool, seed: int) -> GalleryFigure:
    """Figure 9b: test AUC against the training size, one line per variant of the learning curve."""
    from reglight.learning_curve import learning_curve_figure

    results, source = learning_curve_runs(quick, seed)
    fig = learning_curve_figure(results, "test/auc", "test AUC")
    fig.suptitle(f"medical_cnn learning curve: {source}", fontsize=9)
    numbers = {
        f"n{n}/{v}/test_auc": statistics.fmean(r.metrics.get("test/auc", math.nan) for r in rs)
        for n, by in results.items()
        for v, rs in by.items()
    }
    listed = "; ".join(f"{k}: {v:.3f}" for k, v in numbers.items())
    caption = (
        "The medical recipe's learning curve (`reglight ablate medical_cnn --train_sizes ...`): each variant "
        "of `ablation.learning_curve` in `recipes/medical_cnn.yaml` trained on class-stratified subsets of "
        f"the training images, test AUC with 95 % t-intervals over seeds, from {source}, drawn with "
        f"`reglight.learning_curve.learning_curve_figure`. Mean test AUC: {listed}."
    )
    return GalleryFigure(
        "learning_curve", "Learning curve of the medical recipe", fig, caption, numbers
    )


# ------------------------------------------------------------------ grokking
def grokking_curves(
    quick: bool, seed: int
) -> tuple[dict[str, dict[str, dict[str, list[float]]]], str]:
    """Train/validation accuracy curves of the grokking recipe, from `grokking.json` or a tiny run.

    The tiny run trains the `grokking` recipe (`recipes/grokking.yaml`, built by `ReglightCLI` as
    `reglight run grokking` does) on $(a + b) \\bmod 23$ with $d = 32$ for 100 full-batch steps, with and
    without weight decay, validating every step.
    """
    saved = load_result("grokking")
    if saved is not None and "curves" in saved:
        return saved["curves"], "`benchmarks/grokking.py` (saved results)"
    import lightning.pytorch as pl

    from reglight.cli import ReglightCLI, find_recipe

    class Recorder(pl.Callback):
        def __init__(self) -> None:
            self.curves: dict[str, list[float]] = {
                "steps": [],
                "train_acc": [],
                "val_steps": [],
                "val_acc": [],
            }

        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            self.curves["steps"].append(trainer.global_step)
            self.curves["train_acc"].append(float(trainer.callback_metrics["train/acc"]))

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if not trainer.sanity_checking:
                self.curves["val_steps"].append(trainer.global_step)
                self.curves["val_acc"].append(float(trainer.callback_metrics["val/acc"]))

    steps = 100
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, extra in (("default", []), ("no_weight_decay", ["--model.weight_decay=0"])):
        cli = ReglightCLI(
            [
                "--config",
                str(find_recipe("grokking").path),
                "--data.p=23",
                "--model.d_model=32",
                f"--trainer.max_steps={steps}",
                "--trainer.logger=false",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
                *extra,
                f"--seed_everything={seed}",
                f"--data.seed={seed}",
            ],
            run=False,
            prog="reglight figures",
        )
        rec = Recorder()
        cli.trainer.callbacks.append(rec)  # type: ignore[attr-defined]
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        curves[name] = {str(seed): rec.curves}
    return curves, f"a tiny run of the recipe: (a + b) mod 23, d = 32, {steps} steps"


def grokking_figure(
    curves: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]], title: str
) -> Figure:
    """Training (thin) and validation (thick) accuracy of each variant's first seed, log step axis."""
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    for i, (name, by_seed) in enumerate(curves.items()):
        c = by_seed[min(by_seed, key=int)]
        color = f"C{i}"
        ax.plot(c["steps"], c["train_acc"], color=color, lw=1, alpha=0.5, label=f"{name}: train")
        ax.plot(c["val_steps"], c["val_acc"], color=color, lw=2, label=f"{name}: validation")
    ax.axhline(0.99, color="gray", ls=":", lw=1)
    ax.set(xlabel="optimizer step", ylabel="accuracy", xscale="log", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _first_at(steps: Sequence[float], values: Sequence[float], level: float) -> float:
    return next((float(s) for s, v in zip(steps, values, strict=True) if v >= level), math.nan)


@register("grokking", 11)
def make_grokking(quick: bool, seed: int) -> GalleryFigure:
    """Figure 9c: grokking, training and validation accuracy over the optimizer steps."""
    curves, source = grokking_curves(quick, seed)
    fig = grokking_figure(curves, f"grokking recipe: {source}")
    numbers: dict[str, float] = {}
    parts = []
    for name, by_seed in curves.items():
        c = by_seed[min(by_seed, key=int)]
        train99 = _first_at(c["steps"], c["train_acc"], 0.99)
        val99 = _first_at(c["val_steps"], c["val_acc"], 0.99)
        numbers[f"{name}/train_99_step"] = train99
        numbers[f"{name}/val_99_step"] = val99
        numbers[f"{name}/final_val_acc"] = float(c["val_acc"][-1])
        parts.append(
            f"{name}: training accuracy 99 % at step {train99:.0f}, validation 99 % at step "
            f"{val99:.0f}, final validation accuracy {float(c['val_acc'][-1]):.3f}"
        )
    caption = (
        "Grokking with the `grokking` recipe (a one-layer Transformer on modular addition, full batch, "
        f"AdamW with decoupled weight decay), from {source}: training accuracy (thin) and validation "
        "accuracy (thick) over the optimizer steps, the recipe against the same run without weight decay. "
        "A step of `nan` means 99 % was not reached. Measured: " + "; ".join(parts) + "."
    )
    return GalleryFigure(
        "grokking", "Grokking: memorization, then generalization", fig, caption, numbers
    )


# ------------------------------------------------------------------ LayerNorm vs BatchNorm
def transformer_norm_runs(quick: bool, seed: int) -> tuple[list[dict[str, Any]], str]:
    """The norm study's runs, from `transformer_norms.json` or a tiny grokking-task study."""
    saved = load_result("transformer_norms")
    if saved is not None:
        return list(saved), "`python -m reglight.recipes.transformer.norm_study` (saved results)"
    from reglight.recipes.transformer.norm_study import run_variant

    over = {"model": {"d_model": 32}, "data": {"p": 23, "train_fraction": 0.5}, "steps": 100}
    runs = [
        run_variant("grokking", norm, "pre", seed, bs1_limit=16, overrides=over)
        for norm in ("layer", "batch", "none")
    ]
    return runs, "a tiny study: (a + b) mod 23, half the equations, d = 32, 100 steps, 1 seed"


@register("transformer_norms", 12)
def make_transformer_norms(quick: bool, seed: int) -> GalleryFigure:
    """Figure 9d: LayerNorm vs BatchNorm in the Transformer recipe."""
    from reglight.recipes.transformer.norm_study import norm_study_figure

    runs, source = transformer_norm_runs(quick, seed)
    fig = norm_study_figure(runs)
    fig.suptitle(f"Transformer normalizations: {source}", fontsize=9)
    numbers: dict[str, float] = {}
    for r in runs:
        key = f"{r['task']}/{r['norm_position']}-{r['norm']}"
        numbers[f"{key}/acc"] = float(r["acc"])
    groups: dict[str, list[float]] = {}
    for r in runs:
        groups.setdefault(f"{r['task']} {r['norm_position']}-{r['norm']}", []).append(
            float(r["acc"])
        )
    listed = "; ".join(f"{k}: {statistics.fmean(v):.3f}" for k, v in groups.items())
    caption = (
        "LayerNorm against batch norm (and no normalization) in the Transformer recipe, measured by "
        "`reglight.recipes.transformer.norm_study` in evaluation mode and drawn with its "
        f"`norm_study_figure`, from {source}: test accuracy on every test example, on the first ones at "
        f"the training batch size and one at a time. Mean test accuracy: {listed}."
    )
    return GalleryFigure(
        "transformer_norms", "LayerNorm vs BatchNorm in the Transformer", fig, caption, numbers
    )
