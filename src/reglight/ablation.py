"""`reglight ablate RECIPE`: train a recipe once per variant and seed, report mean ± std per variant.

Part of the command-line layer (next to `reglight.cli`); it works for any recipe whose YAML
declares an ablation as data, in a top-level `ablation:` section:

```yaml
ablation:
  title: Ablation of the tiny recipe          # heading of the results table (optional)
  metrics:                                    # logged key -> column label, in table order (optional;
    test/acc: test ACC                        #   default: every `test/` metric)
  variants:                                   # variant name -> what changes, in table order
    full:
      description: as configured
    no_dropout:
      description: without dropout
      overrides: {model.dropout: 0}           # dotted config keys -> values, as LightningCLI overrides
    no_early_stopping:
      drop_callbacks: [EarlyStopping]         # callback classes (by class name) taken off the Trainer
```

Each run goes through the same LightningCLI parser as `reglight run`: the recipe, then the overrides given
on the command line, then the variant's overrides, then `seed_everything`; it runs in this process on its
own Trainer without a logger, progress bar or checkpoints, is fit and then tested, in its own folder
`<save_dir>/<recipe>-ablation/runs/<variant>/seed<N>/` (a finished run leaves its `run.json` there; Ctrl-C
or SIGTERM leaves `checkpoints/last.ckpt`, and `--ckpt_path last` continues the study from them). The command prints a
markdown table of mean ± standard deviation over seeds (sample standard deviation, $n - 1$) of each
metric and of the epochs trained, and a table of every run; it logs both tables and a bar chart to one
logger (`--logger`), and `--json PATH` writes every run's metrics and resolved settings.

```bash
reglight ablate medical_cnn --seeds 5
reglight ablate medical_cnn --seeds 3 --variants full,no_augmentation --data.flag pneumoniamnist
reglight ablate my_recipe.yaml --seed_list 0,7 --logger csv --json ablation.json --threads 2
```
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from reglight.cli import Recipe, ReglightCLI, _value_error, find_recipe
from reglight.errors import InputError, UsageError
from reglight.learning_curve import learning_curve_section, variants_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from reglight.logging import Table

__all__ = [
    "Ablation",
    "Run",
    "Variant",
    "ablation_bar_chart",
    "load_ablation",
    "main",
    "run_ablation",
    "run_one",
    "runs_table",
    "summarize",
]

_QUIET = (
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
)
_VARIANT_KEYS = frozenset({"description", "overrides", "drop_callbacks"})
_ABLATION_KEYS = frozenset({"title", "metrics", "variants", "learning_curve"})


def _cli_value(value: Any) -> str:
    """A YAML/JSON value as LightningCLI reads it back from the command line."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


@dataclass(frozen=True)
class Variant:
    """One arm of an ablation: the recipe with some settings changed and some callbacks removed.

    Attributes:
        name: Short name (the row of the table).
        description: What is removed or changed.
        overrides: Dotted config keys (`model.dropout`, `data.augment`, `trainer.max_epochs`) to values.
        drop_callbacks: Class names of callbacks taken off the Trainer (`"EarlyStopping"`, ...).

    Examples:
        >>> Variant("no_dropout", overrides={"model.dropout": 0, "data.augment": False}).args()
        ['--model.dropout=0', '--data.augment=false']
    """

    name: str
    description: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    drop_callbacks: tuple[str, ...] = ()

    def args(self) -> list[str]:
        """The overrides as LightningCLI command-line arguments."""
        return [f"--{key}={_cli_value(value)}" for key, value in self.overrides.items()]

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any] | None) -> Variant:
        """Build a variant from its YAML declaration (`description`, `overrides`, `drop_callbacks`).

        Raises:
            ValueError: For an unknown key or a value of the wrong kind, naming the variant.
        """
        data = dict(data or {})
        unknown = sorted(set(data) - _VARIANT_KEYS)
        if unknown:
            raise ValueError(
                f"ablation variant {name!r}: unknown key(s) {unknown}; allowed: {sorted(_VARIANT_KEYS)}"
            )
        overrides = data.get("overrides") or {}
        if not isinstance(overrides, Mapping) or not all(isinstance(k, str) for k in overrides):
            raise ValueError(
                f"ablation variant {name!r}: `overrides` must map dotted keys to values, got {overrides!r}"
            )
        drop = data.get("drop_callbacks") or []
        if isinstance(drop, str) or not all(isinstance(c, str) for c in drop):
            raise ValueError(
                f"ablation variant {name!r}: `drop_callbacks` must be a list of class names, got {drop!r}"
            )
        return cls(name, str(data.get("description", "")), dict(overrides), tuple(drop))


@dataclass(frozen=True)
class Ablation:
    """What a recipe declares in the `ablation:` section of its YAML.

    Attributes:
        variants: The variants by name, in table order.
        metrics: Logged metric key to column label, in table order; empty means every `test/` metric.
        title: Heading of the results table.

    Examples:
        >>> a = Ablation.from_dict({"metrics": {"test/acc": "test ACC"},
        ...                         "variants": {"full": None, "small": {"overrides": {"model.hidden": 4}}}})
        >>> list(a.variants), a.variants["small"].args()
        (['full', 'small'], ['--model.hidden=4'])
    """

    variants: dict[str, Variant]
    metrics: dict[str, str] = field(default_factory=dict)
    title: str = "Ablation"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], recipe: str = "") -> Ablation:
        """Build the ablation from the `ablation:` section of a recipe YAML.

        Args:
            data: The section, with `variants` and optionally `metrics` and `title`.
            recipe: The recipe's name, for the default title and the error messages.

        Raises:
            ValueError: For an unknown key, no variants, or a malformed variant.
        """
        where = f"recipe {recipe!r}: " if recipe else ""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}`ablation` must be a mapping, got {data!r}")
        unknown = sorted(set(data) - _ABLATION_KEYS)
        if unknown:
            raise ValueError(
                f"{where}`ablation` has unknown key(s) {unknown}; allowed: {sorted(_ABLATION_KEYS)}"
            )
        variants = data.get("variants")
        if not isinstance(variants, Mapping) or not variants:
            raise ValueError(f"{where}`ablation.variants` must name at least one variant")
        metrics = data.get("metrics") or {}
        if isinstance(metrics, (list, tuple)):
            metrics = {str(k): str(k) for k in metrics}
        if not isinstance(metrics, Mapping):
            raise ValueError(f"{where}`ablation.metrics` must map metric keys to labels")
        title = data.get("title") or (f"Ablation of {recipe}" if recipe else "Ablation")
        return cls(
            variants={str(n): Variant.from_dict(str(n), v) for n, v in variants.items()},
            metrics={str(k): str(v) for k, v in metrics.items()},
            title=str(title),
        )


def load_ablation(recipe: Recipe) -> Ablation:
    """Read the `ablation:` section of a recipe's YAML.

    Raises:
        LookupError: When the recipe declares no ablation.
        ValueError: When the section is malformed (see
            [Ablation.from_dict][reglight.ablation.Ablation.from_dict]).
    """
    config = yaml.safe_load(recipe.path.read_text(encoding="utf-8")) or {}
    section = config.get("ablation") if isinstance(config, Mapping) else None
    if section is None:
        raise LookupError(
            f"recipe {recipe.name!r} declares no ablation (an `ablation:` section in {recipe.path})"
        )
    return Ablation.from_dict(section, recipe.name)


@dataclass
class Run:
    """The outcome of one variant trained with one seed.

    Attributes:
        variant: The variant's name.
        seed: The `seed_everything` of the run.
        metrics: The test metrics (what `trainer.test` returned), as floats.
        epochs: Epochs trained (`trainer.current_epoch` after fitting).
        seconds: Wall time of fitting and testing.
        config: The resolved init arguments of the model and the datamodule that are plain values, by
            dotted key (`model.dropout`, `data.augment`): what was actually trained.
        callbacks: Class names of the Trainer's callbacks during the run.
        resumed_from: When the run continued from its `last.ckpt`: that checkpoint with its epoch and
            global step; else `None`.
    """

    variant: str
    seed: int
    metrics: dict[str, float]
    epochs: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    callbacks: list[str] = field(default_factory=list)
    resumed_from: str | None = None


def _plain_init_args(section: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(section, Mapping):
        return {}
    args = section.get("init_args", section)
    if not isinstance(args, Mapping):
        return {}
    return {
        f"{prefix}.{k}": v
        for k, v in args.items()
        if isinstance(v, (bool, int, float, str)) or v is None
    }


def run_one(
    recipe: Recipe,
    variant: Variant,
    seed: int,
    overrides: Sequence[str] = (),
    run_dir: Path | None = None,
    resume: bool = False,
    command: Sequence[str] = (),
    configure: Callable[[Any], None] | None = None,
) -> Run:
    """Train and test one variant of a recipe with one seed.

    Args:
        recipe: The recipe (see [find_recipe][reglight.cli.find_recipe]).
        variant: What to change.
        seed: Passed as `seed_everything`.
        overrides: LightningCLI overrides for every run (e.g. `["--trainer.max_epochs=5"]`), applied
            before the variant's.
        run_dir: The run's own folder (`default_root_dir`): on SIGINT/SIGTERM its `checkpoints/last.ckpt`
            is written there (see [Interruptible][reglight.interrupt.Interruptible]).
        resume: Continue from `run_dir/checkpoints/last.ckpt` when it exists.
        command: The study's command line, printed with `--ckpt_path last` when a signal stops the run.
        configure: Called with the Trainer before fitting (e.g. to scale its epochs).

    Returns:
        The run's test metrics, epochs, wall time and resolved settings.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    from reglight.interrupt import Interruptible

    args = [
        "--config",
        str(recipe.path),
        *overrides,
        *variant.args(),
        f"--seed_everything={seed}",
        *_QUIET,
        *([f"--trainer.default_root_dir={run_dir}"] if run_dir is not None else []),
    ]
    cli = ReglightCLI(args, run=False, prog=f"reglight ablate {recipe.name}")
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    callbacks: list[Any] = trainer.callbacks  # type: ignore[attr-defined]
    dropped = set(variant.drop_callbacks)
    # no checkpoints: the tested weights are those in memory, as after `reglight run`
    callbacks[:] = [
        cb
        for cb in callbacks
        if not isinstance(cb, ModelCheckpoint) and type(cb).__name__ not in dropped
    ]
    if configure is not None:
        configure(trainer)
    last = run_dir / "checkpoints" / "last.ckpt" if run_dir is not None else None
    ckpt_path = str(last.resolve()) if resume and last is not None and last.is_file() else None
    start = time.perf_counter()
    try:
        with Interruptible(trainer, command, resume_arg="last") as guard:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
            results = trainer.test(model, datamodule=datamodule, verbose=False)
    except InputError as err:  # a data file or folder the user pointed at: worded with its option
        raise _value_error(err, cli.config) from err
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    resolved = cli.config.as_dict()
    config = {
        **_plain_init_args(resolved.get("model"), "model"),
        **_plain_init_args(resolved.get("data"), "data"),
    }
    return Run(
        variant=variant.name,
        seed=seed,
        metrics=metrics,
        epochs=int(trainer.current_epoch),
        seconds=seconds,
        config=config,
        callbacks=[type(cb).__name__ for cb in callbacks],
        resumed_from=(
            f"{guard.state.resumed_from} (epoch {guard.state.resumed_epoch}, "
            f"global step {guard.state.resumed_step})"
            if guard.state.resumed_from
            else None
        ),
    )


def _metric_labels(ablation: Ablation, runs: Mapping[str, Sequence[Run]]) -> dict[str, str]:
    if ablation.metrics:
        return dict(ablation.metrics)
    keys = sorted(
        {k for rs in runs.values() for r in rs for k in r.metrics if k.startswith("test/")}
    )
    return {k: k for k in keys}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_ablation(
    recipe: Recipe,
    ablation: Ablation,
    seeds: Sequence[int],
    variants: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    run_root: Path | None = None,
    resume: bool = False,
    command: Sequence[str] = (),
) -> dict[str, list[Run]]:
    """Run every variant with every seed.

    Args:
        recipe: The recipe.
        ablation: Its declared variants (see [load_ablation][reglight.ablation.load_ablation]).
        seeds: The seeds.
        variants: Names of the variants to run, in table order (default: all, in declaration order).
        overrides: LightningCLI overrides applied to every run.
        progress: Print one line per finished run to stderr.
        run_root: Folder of the runs' own folders (`<variant>/seed<N>/`: an interrupted run's
            `checkpoints/last.ckpt`, a finished run's `run.json`); `None` for none.
        resume: Continue a study (`--ckpt_path last`): a finished run is read back from its `run.json`, an
            interrupted one continues from its `last.ckpt`, the others start.
        command: The study's command line, for the resume hint printed on SIGINT/SIGTERM.

    Returns:
        Variant name to one [Run][reglight.ablation.Run] per seed.

    Raises:
        ValueError: For an unknown variant name or an empty list of seeds.
    """
    names = list(ablation.variants) if variants is None else list(variants)
    unknown = [v for v in names if v not in ablation.variants]
    if unknown:
        raise ValueError(
            f"unknown variant(s) {unknown}; {recipe.name} declares {list(ablation.variants)}"
        )
    if not seeds:
        raise ValueError("`seeds` must not be empty")
    labels = ablation.metrics
    runs: dict[str, list[Run]] = {}
    for name in names:
        runs[name] = []
        for seed in seeds:
            run_dir = run_root / name / f"seed{seed}" if run_root is not None else None
            done = run_dir / "run.json" if run_dir is not None else None
            if resume and done is not None and done.is_file():
                run = Run(**json.loads(done.read_text(encoding="utf-8")))
            else:
                run = run_one(
                    recipe, ablation.variants[name], seed, overrides, run_dir, resume, command
                )
                if done is not None:
                    done.parent.mkdir(parents=True, exist_ok=True)
                    done.write_text(json.dumps(asdict(run)), encoding="utf-8")
            runs[name].append(run)
            if progress:
                shown = labels or {k: k for k in run.metrics if k.startswith("test/")}
                values = "  ".join(
                    f"{label} {run.metrics.get(k, math.nan):.3f}" for k, label in shown.items()
                )
                note = f"  resumed from {run.resumed_from}" if run.resumed_from else ""
                print(
                    f"[ablate] {name:<18} seed {seed}: {values}  epochs {run.epochs}  "
                    f"{run.seconds:.0f}s{note}",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def summarize(ablation: Ablation, runs: Mapping[str, Sequence[Run]]) -> Table:
    """Mean ± standard deviation over seeds of each variant's metrics and epochs.

    Args:
        ablation: The ablation (its metrics and title).
        runs: Variant name to its runs (see [run_ablation][reglight.ablation.run_ablation]).

    Returns:
        A [Table][reglight.logging.Table] with one row per variant: each metric as `mean ± std` with three
        decimals, the epochs trained, and the number of seeds.

    Examples:
        >>> a = Ablation.from_dict({"metrics": {"test/acc": "test ACC"}, "variants": {"full": {}}})
        >>> runs = {"full": [Run("full", s, {"test/acc": acc}, 9, 1.0) for s, acc in enumerate([0.8, 0.9])]}
        >>> summarize(a, runs).rows
        [['full', '0.850 ± 0.071', '9 ± 0', 2]]
    """
    from reglight.logging import Table

    labels = _metric_labels(ablation, runs)
    rows: list[list[Any]] = []
    for name, results in runs.items():
        cells: list[Any] = [name]
        for key in labels:
            mean, std = _mean_std([r.metrics.get(key, math.nan) for r in results])
            cells.append(f"{mean:.3f} ± {std:.3f}")
        mean, std = _mean_std([float(r.epochs) for r in results])
        cells += [f"{mean:.0f} ± {std:.0f}", len(results)]
        rows.append(cells)
    columns = ["variant", *labels.values(), "epochs", "seeds"]
    return Table(f"{ablation.title} (mean ± std over seeds)", columns, rows)


def runs_table(ablation: Ablation, runs: Mapping[str, Sequence[Run]]) -> Table:
    """Every run: variant, seed, each metric, epochs and seconds.

    Examples:
        >>> a = Ablation.from_dict({"metrics": {"test/acc": "test ACC"}, "variants": {"full": {}}})
        >>> runs_table(a, {"full": [Run("full", 0, {"test/acc": 0.8}, 9, 1.5)]}).rows
        [['full', 0, 0.8, 9, 1.5]]
    """
    from reglight.logging import Table

    labels = _metric_labels(ablation, runs)
    rows = [
        [name, r.seed, *(r.metrics.get(k, math.nan) for k in labels), r.epochs, r.seconds]
        for name, results in runs.items()
        for r in results
    ]
    return Table("Ablation runs", ["variant", "seed", *labels.values(), "epochs", "seconds"], rows)


def ablation_bar_chart(
    names: Sequence[str],
    means: Mapping[str, Sequence[float]],
    stds: Mapping[str, Sequence[float]],
    title: str = "Ablation (mean ± std over seeds)",
) -> Figure:
    """Grouped bar chart of ablation results with standard-deviation error bars (matplotlib, Agg).

    Args:
        names: Variant names (one group of bars each).
        means: Metric label to one mean per variant.
        stds: Metric label to one standard deviation per variant.
        title: Figure title.

    Returns:
        The matplotlib figure.

    Examples:
        >>> fig = ablation_bar_chart(["full", "none"], {"AUC": [0.9, 0.8]}, {"AUC": [0.01, 0.02]})
        >>> len(fig.axes[0].patches)  # one bar per variant and metric
        2
    """
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    n = max(len(means), 1)
    w = 0.8 / n
    for i, metric in enumerate(means):
        ax.bar(
            x + (i - (n - 1) / 2) * w, means[metric], w, yerr=stds[metric], capsize=3, label=metric
        )
    ax.set_xticks(x, list(names), rotation=30, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_title(title)
    top = max(
        (m + e for k in means for m, e in zip(means[k], stds[k]) if math.isfinite(m + e)),
        default=1.0,
    )
    ax.set_ylim(top=1.2 * top if top > 0 else 1.0)
    ax.legend(loc="upper center", ncol=min(n, 4), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _bar_chart(ablation: Ablation, runs: Mapping[str, Sequence[Run]]) -> Figure:
    labels = _metric_labels(ablation, runs)
    stats = {
        label: [_mean_std([r.metrics.get(k, math.nan) for r in rs]) for rs in runs.values()]
        for k, label in labels.items()
    }
    means = {label: [m for m, _ in s] for label, s in stats.items()}
    stds = {label: [sd for _, sd in s] for label, s in stats.items()}
    return ablation_bar_chart(list(runs), means, stds, title=f"{ablation.title} (mean ± std)")


def _make_logger(kind: str, save_dir: str, name: str) -> Any:
    if kind == "none":
        return None
    if kind == "wandb":
        from reglight.logging import WandbLogger

        return WandbLogger(project="reglight", name=name, save_dir=save_dir)
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir, name=name)
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir, name=name)


def _parser(recipe: str, ablation: Ablation | None) -> argparse.ArgumentParser:
    declared = (
        ", ".join(ablation.variants) if ablation else "(see the recipe's `ablation:` section)"
    )
    p = argparse.ArgumentParser(
        prog=f"reglight ablate {recipe}",
        allow_abbrev=False,
        exit_on_error=False,
        description=(
            "Train the recipe once per variant of its `ablation:` section and seed; print and log mean ± "
            "std over seeds of its metrics. Other options (e.g. --trainer.max_epochs 30, --config "
            f"extra.yaml) are passed to every run as recipe overrides: `reglight run {recipe} --help` "
            "lists them."
        ),
    )
    p.add_argument("--seeds", type=int, default=5, help="number of seeds 0..N-1 (default 5)")
    p.add_argument("--seed_list", type=str, default=None, help="explicit comma-separated seeds")
    p.add_argument(
        "--variants", type=str, default=None, help=f"comma-separated subset of: {declared}"
    )
    p.add_argument("--logger", choices=("wandb", "csv", "tensorboard", "none"), default="wandb")
    p.add_argument(
        "--save_dir", type=str, default="reglight_logs", help="folder of the logger's files"
    )
    p.add_argument(
        "--json",
        type=str,
        default=None,
        metavar="PATH",
        help="write every run to this JSON file (a learning curve adds its summary and table)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads of this process (all runs)"
    )
    p.add_argument(
        "--ckpt_path",
        type=str,
        default=None,
        metavar="last",
        help="continue a stopped study: finished runs are read back, an interrupted one resumes from "
        "its own last.ckpt",
    )
    p.add_argument(
        "--train_sizes",
        "--train-sizes",
        dest="train_sizes",
        type=str,
        default=None,
        metavar="N,N,...",
        help="learning curve: train each variant on class-stratified subsets of these sizes (the "
        "variants of `ablation.learning_curve`, else of the ablation); see reglight.learning_curve",
    )
    p.add_argument(
        "--max_epoch_scale",
        "--max-epoch-scale",
        dest="max_epoch_scale",
        type=float,
        default=4.0,
        help="learning curve: epochs and patience are scaled by min(this, largest size / size)",
    )
    p.add_argument(
        "--metric",
        type=str,
        default="test/auc",
        help="learning curve: the metric compared across variants (default test/auc)",
    )
    return p


def _error(message: str, fix: str = "") -> NoReturn:
    raise UsageError(message, fix)


# options of a LightningCLI command line that are not `--section.name` (for the unknown-option check)
_CLI_TOP_LEVEL = (
    "--config",
    "--seed_everything",
    "--print_config",
    "--optimizer",
    "--lr_scheduler",
)


def _check_overrides(parser: argparse.ArgumentParser, overrides: Sequence[str]) -> None:
    """An unknown option that is not a recipe override: say so, with the closest option names."""
    import difflib

    flags = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    for token in overrides:
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and "." not in flag and flag not in _CLI_TOP_LEVEL:
            hints = difflib.get_close_matches(flag, [*flags, *_CLI_TOP_LEVEL], n=3, cutoff=0.6)
            _error(
                f"unknown option {flag}",
                f"did you mean {' or '.join(hints)}?" if hints else "",
            )


def main(argv: Sequence[str]) -> int:
    """`reglight ablate RECIPE [options] [recipe overrides]`; returns the exit code.

    Args:
        argv: Command-line arguments after `reglight ablate`: the recipe (a name or a YAML path), then
            `--seeds N`, `--seed_list 0,3`, `--variants a,b`, `--logger wandb|csv|tensorboard|none`,
            `--save_dir DIR`, `--json PATH`, `--threads N`, `--ckpt_path last` (continue a stopped study:
            finished runs are read back, interrupted ones resume from their own `last.ckpt`), and any
            LightningCLI override.

    Returns:
        0 on success.

    Raises:
        UsageError: On a bad option, an unknown recipe or variant, a recipe without an ablation, or a
            bad recipe override; `reglight ablate` prints it as one message with exit code 2.
    """
    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            _parser("RECIPE", None).print_help()
            return 0
        _error("the first argument must be a recipe", "`reglight list` shows them")
    try:
        recipe = find_recipe(argv[0])
        ablation = load_ablation(recipe)
    except (LookupError, ValueError) as err:
        _error(str(err), "`reglight list` shows the recipes")
    parser = _parser(recipe.name, ablation)
    try:
        opts, overrides = parser.parse_known_args(argv[1:])
    except argparse.ArgumentError as err:
        _error(str(err), f"change {err.argument_name}" if err.argument_name else "")
    _check_overrides(parser, overrides)
    if opts.train_sizes is not None:
        try:
            sizes = [int(s) for s in opts.train_sizes.split(",") if s.strip()]
        except ValueError:
            _error(f"--train_sizes {opts.train_sizes}: expected comma-separated integers")
        if not sizes or min(sizes) < 1:
            _error(
                f"--train_sizes {opts.train_sizes}: need positive sizes",
                "e.g. --train_sizes 50,100",
            )
        section = learning_curve_section(
            (yaml.safe_load(recipe.path.read_text(encoding="utf-8")) or {}).get("ablation")
        )
        if section is not None:
            try:
                ablation, reference = variants_of(section, recipe.name)
            except ValueError as err:
                _error(str(err), f"fix `ablation.learning_curve` in {recipe.path}")
        else:
            reference = None
    if opts.seed_list:
        try:
            seeds = [int(s) for s in opts.seed_list.split(",") if s.strip()]
        except ValueError:
            _error(f"--seed_list {opts.seed_list}: expected comma-separated integers")
    else:
        seeds = list(range(opts.seeds))
    if not seeds:
        _error(f"--seeds {opts.seeds}: need at least one seed", "pass --seeds 1 or more")
    names = (
        [v.strip() for v in opts.variants.split(",") if v.strip()]
        if opts.variants
        else list(ablation.variants)
    )
    bad = [v for v in names if v not in ablation.variants]
    if bad or not names:
        _error(
            f"--variants {opts.variants}: unknown variant(s) {bad}",
            f"{recipe.name} declares {', '.join(ablation.variants)}",
        )
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    from reglight.interrupt import split_ckpt_path

    ckpt_path = opts.ckpt_path
    if ckpt_path not in (None, "last"):
        _error(
            f"--ckpt_path {ckpt_path!r}: a study resumes each run from its own folder",
            "pass --ckpt_path last",
        )
    _, study_args = split_ckpt_path(argv)
    if opts.train_sizes is not None:
        return _learning_curve(
            recipe, ablation, reference, sizes, seeds, names, overrides, opts, argv
        )
    runs = run_ablation(
        recipe,
        ablation,
        seeds,
        names,
        overrides,
        run_root=Path(opts.save_dir) / f"{recipe.name}-ablation" / "runs",
        resume=ckpt_path == "last",
        command=["reglight", "ablate", *study_args],
    )

    from reglight.logging import log_figure, log_table

    summary = summarize(ablation, runs)
    per_run = runs_table(ablation, runs)
    print(f"\n## {summary.title}\n\n{summary.to_markdown()}\n")
    print(f"## {per_run.title}\n\n{per_run.to_markdown(float_format='{:.3f}')}\n")
    logger = _make_logger(opts.logger, opts.save_dir, f"{recipe.name}-ablation")
    if logger is not None:
        for key in _metric_labels(ablation, runs):
            for name, results in runs.items():
                mean, std = _mean_std([r.metrics.get(key, math.nan) for r in results])
                logger.log_metrics(
                    {f"ablation/{name}/{key}_mean": mean, f"ablation/{name}/{key}_std": std}
                )
        log_table(logger, "ablation/summary", summary.columns, summary.rows)
        log_table(logger, "ablation/runs", per_run.columns, per_run.rows)
        log_figure(logger, "ablation/bar_chart", _bar_chart(ablation, runs))
        logger.finalize("success")
        if opts.logger == "wandb":
            logger.experiment.finish()
        print(f"logged to {opts.logger}: {getattr(logger, 'log_dir', None) or opts.save_dir}")
    if opts.json:
        payload = {
            "recipe": recipe.name,
            "seeds": seeds,
            "overrides": overrides,
            "variants": {n: asdict(ablation.variants[n]) for n in runs},
            "runs": {n: [asdict(r) for r in rs] for n, rs in runs.items()},
        }
        Path(opts.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


def _learning_curve(
    recipe: Recipe,
    curve: Ablation,
    reference: str | None,
    sizes: list[int],
    seeds: list[int],
    names: list[str],
    overrides: Sequence[str],
    opts: argparse.Namespace,
    argv: Sequence[str],
) -> int:
    """`reglight ablate RECIPE --train_sizes ...`: run, then print, save and log the table and the figure."""
    from reglight.interrupt import split_ckpt_path
    from reglight.learning_curve import (
        learning_curve_figure,
        learning_curve_summary,
        learning_curve_table,
        run_learning_curve,
    )
    from reglight.logging import log_figure, log_table

    if reference is not None and reference not in names:
        _error(f"the reference variant {reference!r} is not among --variants {','.join(names)}")
    if reference is not None:
        names = [reference, *(n for n in names if n != reference)]
    _, study_args = split_ckpt_path(argv)
    out = Path(opts.save_dir) / f"{recipe.name}-learning-curve"
    try:
        results = run_learning_curve(
            recipe,
            curve,
            sizes,
            seeds,
            names,
            overrides,
            max_epoch_scale=opts.max_epoch_scale,
            run_root=out / "runs",
            resume=opts.ckpt_path == "last",
            command=["reglight", "ablate", *study_args],
        )
    except ValueError as err:
        _error(str(err))
    label = curve.metrics.get(opts.metric, opts.metric)
    extra = {
        k: v for k, v in curve.metrics.items() if k != opts.metric and k.endswith(("acc", "auc"))
    }
    table = learning_curve_table(results, opts.metric, reference, extra)
    figure = learning_curve_figure(results, opts.metric, label)
    markdown = table.to_markdown()
    print(f"\n## {table.title}\n\n{markdown}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curve.md").write_text(f"## {table.title}\n\n{markdown}\n", encoding="utf-8")
    figure.savefig(out / "learning_curve.png", dpi=120)
    print(f"table and figure written to {out}/learning_curve.md, learning_curve.png")
    logger = _make_logger(opts.logger, opts.save_dir, f"{recipe.name}-learning-curve")
    if logger is not None:
        log_table(logger, "learning_curve/table", table.columns, table.rows)
        log_figure(logger, "learning_curve/figure", figure)
        logger.finalize("success")
        if opts.logger == "wandb":
            logger.experiment.finish()
    if opts.json:
        payload = {
            "recipe": recipe.name,
            "sizes": sizes,
            "seeds": seeds,
            "overrides": list(overrides),
            "max_epoch_scale": opts.max_epoch_scale,
            "metric": opts.metric,
            "reference": names[0] if reference is None else reference,
            "summary": learning_curve_summary(results, opts.metric, reference),
            "table": {"title": table.title, "columns": table.columns, "rows": table.rows},
            "runs": {
                str(n): {v: [asdict(r) for r in rs] for v, rs in by.items()}
                for n, by in results.items()
            },
        }
        Path(opts.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0
