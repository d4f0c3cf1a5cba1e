"""The `reglight` command.

- `reglight run RECIPE [overrides]`: fit, then test, then print a summary table of the final metrics and
  where the run was logged. `RECIPE` is a recipe name (see `reglight list`) or a path to a recipe YAML.
  Overrides follow LightningCLI: `--config FILE.yaml` (repeatable), `--trainer.max_epochs 5`,
  `--model.*`, `--data.*`, `--print_config`.
- `reglight list`: the available recipes, one line each.
- `reglight fit|validate|test|predict --config recipes/X.yaml`: Lightning's own `LightningCLI`
  subcommands, for people who know them.
- `reglight ablate RECIPE [options]`: the ablation study a recipe declares in the `ablation:` section of
  its YAML (see [reglight.ablation][reglight.ablation]; `reglight ablate medical_cnn --help`).

Multi-device runs go through the Trainer, e.g.
`reglight run tiny --trainer.accelerator cpu --trainer.devices 2 --trainer.strategy ddp`.

Examples:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    reglight ...
    0
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Recipe", "ReglightCLI", "available_recipes", "find_recipe", "main", "run_recipe"]

_LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
_USAGE = """\
usage: reglight <command> [options]

commands:
  run RECIPE [overrides]     fit, test and summarize a recipe (name or path to a YAML)
  list                       list the available recipes
  ablate RECIPE [options]    run the ablation study declared in a recipe's YAML
  fit|validate|test|predict  Lightning's LightningCLI subcommands (--config recipes/X.yaml)

overrides follow LightningCLI: --config FILE.yaml, --trainer.max_epochs 5, --model.*, --data.*,
--print_config.  `reglight run RECIPE --help` lists every option of a recipe.
"""


# ------------------------------------------------------------------------------------------ recipes


@dataclass(frozen=True)
class Recipe:
    """A runnable recipe: a LightningCLI YAML config with a one-line description.

    Attributes:
        name: The recipe's name (the YAML file's stem).
        path: The YAML file.
        description: The `# description:` line at the top of the file.
    """

    name: str
    path: Path
    description: str


def _recipe_dirs() -> list[Path]:
    """Where recipe YAMLs live: `$REGLIGHT_RECIPES`, the wheel's package data, the repository's `recipes/`."""
    dirs: list[Path] = []
    extra = os.environ.get("REGLIGHT_RECIPES")
    if extra:
        dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    packaged = Path(str(resources.files("reglight") / "recipe_configs"))
    if packaged.is_dir():
        dirs.append(packaged)
    repo = Path(__file__).resolve().parents[2] / "recipes"  # editable install / source checkout
    if repo.is_dir() and repo not in dirs:
        dirs.append(repo)
    return dirs


def _description(path: Path) -> str:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            text = line.strip()
            if text.lower().startswith("# description:"):
                return text.split(":", 1)[1].strip()
            if text and not text.startswith("#"):
                break
    return ""


def available_recipes() -> dict[str, Recipe]:
    """All recipes found, by name (the YAML file's stem); earlier folders win on name clashes.

    The folders are those of the environment variable `REGLIGHT_RECIPES` (separated by `os.pathsep`),
    then the recipes shipped with the package.

    Examples:
        >>> recipes = available_recipes()
        >>> "tiny" in recipes and recipes["tiny"].path.name
        'tiny.yaml'
    """
    found: dict[str, Recipe] = {}
    for folder in _recipe_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, Recipe(path.stem, path, _description(path)))
    return found


def find_recipe(name_or_path: str) -> Recipe:
    """Resolve a recipe name or a path to a YAML file.

    Args:
        name_or_path: A name from [available_recipes][reglight.cli.available_recipes], or the path of a
            `.yaml`/`.yml` file.

    Returns:
        The recipe.

    Raises:
        LookupError: when it is neither a known recipe nor an existing file; the message lists the
            known recipes.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return Recipe(path.stem, path.resolve(), _description(path))
    recipes = available_recipes()
    if name_or_path in recipes:
        return recipes[name_or_path]
    known = ", ".join(sorted(recipes)) or "(none found)"
    raise LookupError(f"unknown recipe {name_or_path!r}; known recipes: {known}")


def _print_recipes() -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    table = RichTable(title="reglight recipes", show_lines=False)
    table.add_column("recipe", style="bold")
    table.add_column("description")
    for recipe in available_recipes().values():
        table.add_row(recipe.name, recipe.description)
    Console().print(table)


# ------------------------------------------------------------------------------------ LightningCLI


def _cli_classes() -> tuple[type, type]:
    """`ReglightCLI` and its config saver, built lazily so that `reglight list` stays fast."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
    from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

    class RecipeConfigSaver(SaveConfigCallback):
        """Saves the resolved config beside each logger's files (W&B: in the run, and as its config)."""

        def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
            for logger in trainer.loggers:
                if isinstance(logger, LightningWandbLogger):
                    run = logger.experiment
                    folder = Path(getattr(run, "dir", "") or logger.save_dir or ".")
                    run.config.update({"reglight": self.config.as_dict()}, allow_val_change=True)
                else:
                    folder = Path(getattr(logger, "log_dir", None) or logger.save_dir or ".")
                folder.mkdir(parents=True, exist_ok=True)
                self.parser.save(
                    self.config, str(folder / self.config_filename), skip_none=False, overwrite=True
                )

    class _ReglightCLI(LightningCLI):
        """LightningCLI with reglight's defaults: rich progress bar, config saved with the run."""

        def add_arguments_to_parser(self, parser: Any) -> None:
            # a recipe YAML may declare its ablation study (read by `reglight ablate`); runs ignore it
            parser.add_argument(
                "--ablation",
                type=dict[str, Any] | None,
                default=None,
                help="The recipe's ablation study (variants, metrics), read by `reglight ablate`.",
            )

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            trainer = super().instantiate_trainer(**kwargs)
            callbacks: list[Any] = trainer.callbacks  # type: ignore[attr-defined]
            bars = [cb for cb in callbacks if type(cb) is TQDMProgressBar]
            if bars:  # Lightning added its default bar: use the rich one instead
                callbacks[callbacks.index(bars[0])] = RichProgressBar()
            return trainer

    return _ReglightCLI, RecipeConfigSaver


def ReglightCLI(args: Sequence[str], *, run: bool, prog: str = "reglight") -> Any:
    """Build reglight's LightningCLI over `args` (subclass mode for model and data).

    Args:
        args: Command-line arguments, e.g. `["--config", "recipes/tiny.yaml", "--trainer.max_epochs=1"]`.
        run: Run a subcommand (`args[0]` is `fit`, `validate`, `test` or `predict`); with `False`, only
            parse and instantiate the Trainer, model and datamodule.
        prog: Program name shown in help and error messages.

    Returns:
        The `LightningCLI` object (`.trainer`, `.model`, `.datamodule`, `.config`).

    Examples:
        >>> cli = ReglightCLI(["--config", str(find_recipe("tiny").path), "--model.hidden=7",
        ...                    "--trainer.logger=false"], run=False)
        >>> cli.model.hparams["hidden"], type(cli.datamodule).__name__
        (7, 'TwoMoonsDataModule')
    """
    cli_cls, saver = _cli_classes()
    parser_kwargs: dict[str, Any] = {"prog": prog}
    if run:
        parser_kwargs = {sub: {"prog": f"{prog} {sub}"} for sub in _LIGHTNING_SUBCOMMANDS}
    with warnings.catch_warnings():
        # `args` is always explicit here; Lightning warns when sys.argv also has arguments (as when
        # reglight is called from a script or a benchmark), which is expected.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return cli_cls(
            args=list(args),
            run=run,
            save_config_callback=saver,
            save_config_kwargs={"save_to_log_dir": False, "overwrite": True},
            parser_kwargs=parser_kwargs,
            auto_configure_optimizers=True,
        )


# ------------------------------------------------------------------------------------------- run


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key in sorted(metrics):
        value = metrics[key]
        if hasattr(value, "numel") and value.numel() == 1:
            value = value.item()
        rows.append((key, f"{value:.4g}" if isinstance(value, float) else str(value)))
    return rows


def _summary(
    recipe: Recipe, trainer: Any, fit_metrics: dict[str, Any], test_metrics: dict[str, Any]
) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    from reglight.logging import run_location

    console = Console()
    console.print(f"[bold]reglight run {recipe.name}[/bold]: final metrics")
    table = RichTable()
    table.add_column("stage")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in _metric_rows({k: v for k, v in fit_metrics.items() if k not in test_metrics}):
        table.add_row("fit", key, value)
    for key, value in _metric_rows(test_metrics):
        table.add_row("test", key, value)
    console.print(table)

    model = trainer.lightning_module
    report = getattr(model, "report", None)
    if callable(report):
        for item in report() or []:
            console.print(_rich_table(item))

    console.print(f"epochs run: {trainer.current_epoch}, global steps: {trainer.global_step}")
    ckpt = (
        getattr(trainer.checkpoint_callback, "best_model_path", "")
        if trainer.checkpoint_callback
        else ""
    )
    if ckpt:
        console.print(f"best checkpoint: {ckpt}")
    locations = run_location(trainer)
    for line in locations:
        console.print(f"logged to {line}")
    if not locations:
        console.print("not logged (no logger; pass --trainer.logger to keep a record)")


def _rich_table(item: Any) -> Any:
    from rich.table import Table as RichTable

    from reglight.logging import Table, _fmt

    if not isinstance(item, Table):
        return item  # already a rich renderable
    table = RichTable(title=item.title)
    for column in item.columns:
        table.add_column(column)
    for row in item.rows:
        table.add_row(*(_fmt(c) for c in row))
    return table


def run_recipe(recipe: Recipe, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Fit, test and summarize `recipe` with LightningCLI `overrides`; return the final metrics.

    Args:
        recipe: The recipe (see [find_recipe][reglight.cli.find_recipe]).
        overrides: LightningCLI arguments applied over the recipe's YAML, and `--ckpt_path PATH|last|best`
            to resume fitting from a checkpoint (as `trainer.fit(ckpt_path=...)`).

    Returns:
        The test metrics merged over the final fit metrics (train/val), as Python floats.

    Raises:
        FileNotFoundError: When `--ckpt_path` names a file that does not exist.
        reglight.interrupt.RunInterrupted: On SIGINT or SIGTERM, after saving `last.ckpt` (a `SystemExit`
            with code 130 or 143; see [Interruptible][reglight.interrupt.Interruptible]).
    """
    from reglight.interrupt import Interruptible, resolve_ckpt_path, split_ckpt_path

    ckpt_path, overrides = split_ckpt_path(overrides)
    ckpt_path = resolve_ckpt_path(ckpt_path)
    cli = ReglightCLI(
        ["--config", str(recipe.path), *overrides], run=False, prog=f"reglight run {recipe.name}"
    )
    trainer, model = cli.trainer, cli.model
    shown = recipe.name if available_recipes().get(recipe.name) == recipe else str(recipe.path)
    with Interruptible(trainer, ["reglight", "run", shown, *overrides]) as guard:
        trainer.fit(model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
        fit_metrics = dict(trainer.callback_metrics)
        results = trainer.test(model, datamodule=cli.datamodule, verbose=False)
    test_metrics = dict(results[0]) if results else {}
    if trainer.is_global_zero:
        _summary(recipe, trainer, fit_metrics, test_metrics)
        if guard.state.resumed_from:
            print(
                f"resumed from {guard.state.resumed_from} (epoch {guard.state.resumed_epoch}, "
                f"global step {guard.state.resumed_step})"
            )
    merged = {k: (v.item() if hasattr(v, "item") else v) for k, v in fit_metrics.items()}
    merged.update(test_metrics)
    return merged


def _run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: reglight run RECIPE [--config FILE.yaml] [--trainer.* ...] [--model.* ...] "
            "[--data.* ...] [--print_config]\n"
        )
        _print_recipes()
        return 0 if argv else 2
    try:
        recipe = find_recipe(argv[0])
    except LookupError as err:
        print(f"reglight run: error: {err}", file=sys.stderr)
        return 2
    run_recipe(recipe, argv[1:])
    return 0


def _ablate(argv: list[str]) -> int:
    from reglight.ablation import main as ablate

    return ablate(argv)


class _DropLightningTips(logging.Filter):
    """Drops Lightning's advertising tips (`💡 Tip: ... try installing litlogger / litmodels`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def _quiet_lightning() -> None:
    """Keep the command's output to what the run says: no product tips, no Lightning-internal warning.

    Lightning 2.6 prints a tip to install litlogger / litmodels on every fit, and its pytree helper
    warns that torch deprecated `isinstance(treespec, LeafSpec)` (nothing a user can act on). Only
    the `reglight` command does this; the library never changes logging or warning filters.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `reglight` console script; returns the exit code.

    Args:
        argv: The arguments after `reglight` (default: `sys.argv[1:]`).

    Returns:
        0 on success, 2 on a bad command, recipe or override (with a message on stderr).

    Examples:
        >>> main(["no-such-command"])
        2
    """
    args = list(sys.argv[1:] if argv is None else argv)
    _quiet_lightning()
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    try:
        if command == "list":
            _print_recipes()
            return 0
        if command == "run":
            return _run(rest)
        if command == "ablate":
            return _ablate(rest)
        if command in _LIGHTNING_SUBCOMMANDS:
            ReglightCLI(args, run=True)
            return 0
        if command in ("--version", "version"):
            from reglight import __version__

            print(f"reglight {__version__}")
            return 0
    except SystemExit as exc:  # argparse/jsonargparse errors: exit code 2 with their message
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    print(f"reglight: error: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
