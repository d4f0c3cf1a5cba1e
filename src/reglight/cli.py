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
- `reglight figures [--out DIR] [--only NAME] [--quick] [--seed N]`: the gallery's figures, computed by
  the library (see [reglight.figures][reglight.figures]).

Multi-device runs go through the Trainer, e.g.
`reglight run tiny --trainer.accelerator cpu --trainer.devices 2 --trainer.strategy ddp`.

`reglight run RECIPE --help` shows the recipe's model and data options and examples;
`--help-trainer` every Trainer option. An error that the user's input causes is one message on stderr
with exit code 2 (see [reglight.errors][reglight.errors]); `--debug` or `REGLIGHT_DEBUG=1` adds its
traceback. Options are never abbreviated.

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
from typing import Any, cast

from reglight.errors import InputError, UsageError

__all__ = [
    "Recipe",
    "ReglightCLI",
    "available_recipes",
    "find_recipe",
    "main",
    "run_recipe",
    "weights_labels",
]

_LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
_USAGE = """\
usage: reglight <command> [options]

commands:
  run RECIPE [overrides]     fit, test and summarize a recipe (name or path to a YAML)
  list                       list the available recipes
  ablate RECIPE [options]    run the ablation study declared in a recipe's YAML
  figures [--out DIR] [--only NAME] [--quick]  compute and write the gallery's figures
  fit|validate|test|predict  Lightning's LightningCLI subcommands (--config recipes/X.yaml)

overrides follow LightningCLI: --config FILE.yaml, --trainer.max_epochs 5, --model.*, --data.*,
--print_config.  `reglight run RECIPE --help` shows a recipe's options and examples;
--debug (anywhere) prints the traceback of an error.
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


# ------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class _Option:
    """One init argument of a recipe's model or data class, as `--help` shows it."""

    flag: str
    type: str
    default: Any
    doc: str


def _config_files(args: Sequence[str]) -> list[str]:
    """The `--config FILE` / `--config=FILE` values of a LightningCLI command line, in order."""
    from itertools import pairwise

    files = [b for a, b in pairwise(args) if a == "--config"]
    return files + [a.split("=", 1)[1] for a in args if a.startswith("--config=")]


def _section_specs(config_files: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """`model`/`data` -> (class path, init args) as the config files set them (the last file wins)."""
    import yaml

    specs: dict[str, tuple[str, dict[str, Any]]] = {}
    for file in config_files:
        try:
            data = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for section in ("model", "data"):
            spec = data.get(section) if isinstance(data, dict) else None
            if isinstance(spec, dict) and isinstance(spec.get("class_path"), str):
                specs[section] = (spec["class_path"], dict(spec.get("init_args") or {}))
    return specs


def _import(class_path: str) -> Any:
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _arg_docs(cls: type) -> dict[str, str]:
    """Argument name -> first sentence of its line in the `Args:` section of the class docstring."""
    import inspect
    import re

    docs: dict[str, str] = {}
    text = inspect.getdoc(cls) or ""
    init_doc = inspect.getdoc(getattr(cls, "__init__", None))
    if init_doc and "Args:" in init_doc:
        text += "\n" + init_doc
    current = None
    in_args = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args, current = True, None
            continue
        if in_args and line and not line.startswith(" "):
            in_args = False
        if not in_args or not stripped:
            continue
        match = re.match(r"^ {4}(\*{0,2}\w+)(?: \(.*?\))?:\s*(.*)$", line)
        if match:
            current = match.group(1).lstrip("*")
            docs[current] = match.group(2)
        elif current:
            docs[current] += " " + stripped
    return {k: re.split(r"(?<=\.)\s(?=[A-Z`])", v, maxsplit=1)[0] for k, v in docs.items()}


def _class_options(section: str, class_path: str, values: dict[str, Any]) -> list[_Option]:
    """The init arguments of a recipe's model or data class: type, the recipe's value, one-line doc."""
    import inspect

    cls = _import(class_path)
    if cls is None:
        return []
    docs = _arg_docs(cls)
    options = []
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = param.annotation
        kind = "" if annotation is param.empty else getattr(annotation, "__name__", str(annotation))
        default = values.get(name, None if param.default is param.empty else param.default)
        options.append(_Option(f"--{section}.{name}", str(kind), default, docs.get(name, "")))
    return options


def _recipe_options(config_files: Sequence[str]) -> list[_Option]:
    specs = _section_specs(config_files)
    return [opt for sec, (path, vals) in specs.items() for opt in _class_options(sec, path, vals)]


# ------------------------------------------------------------------------------------- user errors


def _user_cause(err: BaseException) -> BaseException | None:
    """The exception a user's value caused, under the ones jsonargparse wraps it in; `None` for a bug.

    The root of the `raise ... from` chain decides: a `ValueError`/`TypeError` (reglight's argument
    checks), Lightning's `MisconfigurationException` (its own checks) or an
    [InputError][reglight.errors.InputError].
    """
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    root, seen = err, {id(err)}
    while root.__cause__ is not None and id(root.__cause__) not in seen:
        root = root.__cause__
        seen.add(id(root))
    user = (ValueError, TypeError, MisconfigurationException, InputError)
    return root if isinstance(root, user) else None


def _settings(config: Any) -> list[tuple[str, str, Any]]:
    """(option as written on the command line, argument name, value) for every setting of a config."""
    data = config.as_dict() if hasattr(config, "as_dict") else dict(config or {})

    def init_args(spec: Any) -> dict[str, Any]:
        args = spec.get("init_args", {}) if isinstance(spec, dict) else {}
        return args if isinstance(args, dict) else {}

    out = [
        (f"--{sec}.{k}", k, v)
        for sec in ("model", "data")
        for k, v in init_args(data.get(sec)).items()
    ]
    for key, value in (data.get("trainer") or {}).items():
        specs = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        for spec in specs:
            name = (
                str(spec.get("class_path", "")).rsplit(".", 1)[-1] if isinstance(spec, dict) else ""
            )
            out += [(f"--trainer.{key} ({name}) {k}", k, v) for k, v in init_args(spec).items()]
        if not specs:
            out.append((f"--trainer.{key}", key, value))
    out += [(f"--{k}", k, v) for k, v in data.items() if not isinstance(v, (dict, list))]
    return out


def _locate(message: str, config: Any) -> str:
    """The option (and its value) that `message` is about: named in backticks and/or its value quoted."""
    import re

    named = set(re.findall(r"`([A-Za-z_]\w*)`", message))
    best, best_score = "", 0.0
    for flag, name, value in _settings(config):
        text = "" if value is None or isinstance(value, bool) else str(value)
        shown = bool(text) and (text in message or Path(text).name in message)
        # named and given > named but not set (what is missing) > its value quoted > only named
        score = (name in named) * (1.0 + 1.5 * (value is None)) + 2 * (
            shown and (name in named or len(text) >= 3)
        )
        if score > best_score:
            best, best_score = f"{flag} {'(not set)' if value is None else text or value}", score
    return best


def _value_error(cause: BaseException, config: Any) -> UsageError:
    """A construction or data error, worded with the option and value that caused it."""
    message = " ".join(str(cause).split())
    where = _locate(message, config)
    flag = where.split(" ")[0]
    return UsageError(
        f"{where}: {message}" if where else message, f"change {flag}" if where else ""
    )


def _known_flags(parser: Any, args: Sequence[str]) -> list[str]:
    parsers = [parser]  # and those of the subcommands (`reglight fit ...`)
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict) and args and args[0] in choices:
            parsers.append(choices[args[0]])
    flags = [s for p in parsers for a in p._actions for s in a.option_strings if s.startswith("--")]
    return flags + [opt.flag for opt in _recipe_options(_config_files(args))]


def _parse_error(message: str, parser: Any, args: Sequence[str]) -> UsageError:
    """One line for a jsonargparse parse error: the unknown option with the closest names, or the bad
    value with what was expected."""
    import difflib
    import re

    args = list(args or ())
    keys = re.findall(r'Parser key "([^"]+)"', message)
    given: list[str] = []
    if message.startswith("unrecognized arguments"):
        given = [t.split("=")[0] for t in message.split(":", 1)[1].split() if t.startswith("-")]
    elif match := re.search(r"Group '([\w.]+)' does not accept option '(\w+)'", message):
        given = [f"--{match.group(1)}.{match.group(2)}"]
    elif keys and (match := re.search(r"Option '(\w+)' is not accepted", message)):
        given = [f"--{keys[0].split('.')[0]}.{match.group(1)}"]
    if given:
        known = _known_flags(parser, args)
        hints = [m for f in given for m in difflib.get_close_matches(f, known, n=3, cutoff=0.75)]
        fix = f"did you mean {' or '.join(dict.fromkeys(hints))}?" if hints else ""
        return UsageError(f"unknown option {' '.join(given)}", fix)
    if message.startswith("Problems parsing config"):
        return _yaml_error(message, args)
    got = re.findall(r"Got value: (.*)", message) or re.findall(r"Given value: (.*)", message)
    got = [re.sub(r"^NestedArg\(key='\w+', val='(.*)'\)$", r"\1", g.strip()) for g in got]
    expected = [e for e in re.findall(r"Expected a <class '([^']+)'>", message) if e != "NoneType"]
    if keys:
        flag = _flag_of(keys, args)
        if expected:
            what = f"expected {' or '.join(dict.fromkeys(expected))}"
        else:
            what = " ".join(message.split(":", 1)[-1].split())
        value = f" {got[0]}" if got else ""
        return UsageError(f"{flag}{value}: {what}", f"change {flag}")
    return UsageError(" ".join(message.split()))


def _yaml_error(message: str, args: Sequence[str]) -> UsageError:
    """A config file that is not valid YAML: which file, and where."""
    import yaml

    for file in _config_files(args):
        try:
            yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
            problem = getattr(err, "problem", None) or "not valid YAML"
            return UsageError(f"--config {file}: {problem}{line}", "fix the YAML syntax")
        except OSError:
            continue
    return UsageError(" ".join(message.split()))


def _flag_of(keys: Sequence[str], args: Sequence[str]) -> str:
    """`--model.hidden` from jsonargparse's nested keys (`model`, `init_args.hidden`, `hidden`)."""
    parts = [k.replace("init_args.", "") for k in keys]
    flag = f"--{parts[0]}"
    if len(parts) > 1 and not parts[1].startswith(parts[0]):
        flag = f"{flag}.{parts[1].split('.')[-1]}"
    given = [a.split("=")[0] for a in args or () if a.startswith(flag)]
    return given[0] if given else flag


# ------------------------------------------------------------------------------------ LightningCLI


def _cli_classes() -> tuple[type, type]:
    """`ReglightCLI` and its config saver, built lazily so that `reglight list` stays fast."""
    from jsonargparse import ArgumentError
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

        def parse_arguments(self, parser: Any, args: Any) -> None:
            try:
                super().parse_arguments(parser, args)
            except ArgumentError as err:
                raise _parse_error(str(err), parser, args) from err

        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
            except Exception as err:
                cause = _user_cause(err)
                if cause is None:
                    raise
                config = self.config.get(self.subcommand) if self.subcommand else self.config
                raise _value_error(cause, config) from err

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
    strict = {"allow_abbrev": False, "exit_on_error": False}  # errors raise; no prefix matching
    parser_kwargs: dict[str, Any] = {"prog": prog, **strict}
    if run:
        parser_kwargs = {sub: {"prog": f"{prog} {sub}", **strict} for sub in _LIGHTNING_SUBCOMMANDS}
        parser_kwargs.update(strict)
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


def weights_labels(trainer: Any) -> tuple[str, str]:
    """Which weights the final fit metrics and the test metrics of a finished fit were computed on.

    Read from the Trainer's callbacks: a callback that restored the best weights at the end of fitting
    (reglight's [EarlyStopping][reglight.callbacks.EarlyStopping] with `restore_best_weights=True`: its
    `restored` and `best_epoch`), or one of Lightning's weight-averaging callbacks (EMA, SWA), which
    swap the averaged weights into the model; else the last epoch's weights. When several apply, the
    last callback in the Trainer's order acts last and wins, as in fitting; except that reglight's
    averaging callbacks ([`EMAWeightAveraging`][reglight.callbacks.EMAWeightAveraging],
    `WeightAveraging`, `StochasticWeightAveraging`) never overwrite restored best weights, which then
    win in either order (with EMA, they are the average validated at the best epoch).

    Args:
        trainer: A Trainer after `fit`.

    Returns:
        `(fit, test)` labels, e.g. `("last epoch (9)", "best epoch 3, restored")`.

    Examples:
        >>> from types import SimpleNamespace
        >>> from reglight.callbacks import EarlyStopping
        >>> stop = EarlyStopping("val/loss", restore_best_weights=True)
        >>> stop.restored, stop.best_epoch = True, 3  # as after a fit of 10 epochs that restored epoch 3
        >>> weights_labels(SimpleNamespace(current_epoch=10, callbacks=[stop]))
        ('last epoch (9)', 'best epoch 3, restored')
    """
    from lightning.pytorch.callbacks import StochasticWeightAveraging, WeightAveraging

    from reglight.callbacks import averaging

    last = f"last epoch ({max(int(trainer.current_epoch) - 1, 0)})"
    fit, test = last, last
    best: int | None = None  # the epoch whose weights early stopping restored, if any
    held_average: str | None = (
        None  # with reglight's EMA/WeightAveraging, restored weights are averages
    )
    for cb in trainer.callbacks:
        if isinstance(cb, WeightAveraging):
            name = "EMA" if "EMA" in type(cb).__name__ else type(cb).__name__
            fit = test = f"averaged ({name})"
            if isinstance(cb, (averaging.WeightAveraging, averaging.EMAWeightAveraging)):
                held_average = name
        elif isinstance(cb, StochasticWeightAveraging):
            test = "averaged (SWA)"
        elif getattr(cb, "restored", False) is True and getattr(cb, "best_epoch", None) is not None:
            best = int(cb.best_epoch)
            test = f"best epoch {best}, restored"
    # reglight's averaging callbacks never overwrite restored best weights, whatever the order
    ours = (
        averaging.WeightAveraging,
        averaging.EMAWeightAveraging,
        averaging.StochasticWeightAveraging,
    )
    reglight_average = any(isinstance(cb, ours) for cb in trainer.callbacks)
    if best is not None and reglight_average:
        kept = "" if held_average is None else f" ({held_average} average)"
        test = f"best epoch {best}{kept}, restored"
    return fit, test


@dataclass
class _NoCallbacks:
    current_epoch: int
    callbacks: tuple[Any, ...] = ()


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
    table.add_column("weights")
    fit_weights, test_weights = weights_labels(trainer)
    last = weights_labels(_NoCallbacks(trainer.current_epoch))[0]
    for key, value in _metric_rows({k: v for k, v in fit_metrics.items() if k not in test_metrics}):
        # training metrics are running values of the weights as they were trained, never averaged
        table.add_row("fit", key, value, last if key.startswith("train/") else fit_weights)
    for key, value in _metric_rows(test_metrics):
        table.add_row("test", key, value, test_weights)
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
        UsageError: For a bad option, value, config or data file (a missing `--ckpt_path` file included),
            worded for the user (see [reglight.errors][reglight.errors]). A run that fails before its first
            training step leaves no logged run behind.
        reglight.interrupt.RunInterrupted: On SIGINT or SIGTERM, after saving `last.ckpt` (a `SystemExit`
            with code 130 or 143; see [Interruptible][reglight.interrupt.Interruptible]).
    """
    from reglight.interrupt import Interruptible, resolve_ckpt_path, split_ckpt_path

    try:
        ckpt_path, overrides = split_ckpt_path(overrides)
        ckpt_path = resolve_ckpt_path(ckpt_path)
    except (FileNotFoundError, IsADirectoryError, ValueError) as err:
        raise UsageError(str(err), "pass a checkpoint file that exists, `last` or `best`") from err
    cli = ReglightCLI(
        ["--config", str(recipe.path), *overrides], run=False, prog=f"reglight run {recipe.name}"
    )
    trainer = cli.trainer
    shown = recipe.name if available_recipes().get(recipe.name) == recipe else str(recipe.path)
    try:
        with Interruptible(trainer, ["reglight", "run", shown, *overrides]) as guard:
            fit_metrics, test_metrics = _fit_and_test(cli, ckpt_path)
    except Exception as err:
        raise _after_failure(err, trainer, cli.config) from err
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


def _fit_and_test(cli: Any, ckpt_path: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    trainer, model = cli.trainer, cli.model
    trainer.fit(model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    fit_metrics = dict(trainer.callback_metrics)
    results = trainer.test(model, datamodule=cli.datamodule, verbose=False)
    return fit_metrics, dict(results[0]) if results else {}


def _after_failure(err: Exception, trainer: Any, config: Any) -> Exception:
    """Close the loggers of a failed run; return the exception to raise (worded when the user caused it).

    Before the first training step the run is discarded (nothing logged is worth keeping); after it, the
    logged run is kept, closed, and the message says where it is.
    """
    started = int(getattr(trainer, "global_step", 0)) > 0
    kept = _close_loggers(trainer, keep=started)
    note = f"; the run logged until the failure is kept: {', '.join(kept)}" if kept else ""
    if isinstance(err, InputError) and not isinstance(err, UsageError):
        usage = _value_error(err, config)
        return UsageError(usage.message + note, usage.fix)
    if isinstance(err, UsageError):
        return UsageError(err.message + note, err.fix)
    if kept:
        print(f"reglight: the run failed{note}", file=sys.stderr)
    return err


def _close_loggers(trainer: Any, *, keep: bool) -> list[str]:
    """Discard (`keep=False`) or close the loggers of a failed run; the locations of those kept.

    A W&B run is finished here, so that its messages come before the error, not after it.
    """
    from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

    from reglight.logging import run_location

    kept: list[str] = []
    for logger in list(getattr(trainer, "loggers", []) or []):
        discard = getattr(logger, "discard", None)
        if not keep and callable(discard):
            discard()
            continue
        if not isinstance(logger, LightningWandbLogger):
            kept += run_location(cast(Any, _OneLogger(logger))) if keep else []
            continue
        run = logger._experiment  # None until the run was started: then there is nothing to close
        if run is None:
            continue
        if keep:
            kept += run_location(cast(Any, _OneLogger(logger)))
        run.finish(exit_code=1)
    return kept


@dataclass
class _OneLogger:
    """Just enough of a Trainer for [run_location][reglight.logging.run_location]: one logger."""

    logger: Any

    @property
    def loggers(self) -> list[Any]:
        return [self.logger]


def _recipe_help(recipe: Recipe) -> str:
    """`reglight run RECIPE --help`: description, model and data options, examples, pointers."""
    prog = f"reglight run {recipe.name}"
    options = _recipe_options([str(recipe.path)])
    lines = [f"{prog}: {recipe.description}", ""]
    lines += [
        f"usage: {prog} [--config FILE.yaml] [--model.NAME VALUE] [--data.NAME VALUE] "
        "[--trainer.NAME VALUE] [--seed_everything N] [--print_config] [--debug]",
    ]
    specs = _section_specs([str(recipe.path)])
    for section, (class_path, _) in specs.items():
        lines += ["", f"{section} options ({class_path}; value: the recipe's):"]
        rows = [o for o in options if o.flag.startswith(f"--{section}.")]
        width = max((len(o.flag) for o in rows), default=0)
        kinds = max((len(o.type) for o in rows), default=0)
        values = max((len(repr(o.default)) for o in rows), default=0)
        for o in rows:
            text = f"  {o.flag:<{width}}  {o.type:<{kinds}}  = {o.default!r:<{values}}  {o.doc}"
            lines.append(text.rstrip())
    lines += ["", "examples:"]
    lines += [f"  {ex}" for ex in _examples(recipe, options)]
    lines += [
        "",
        "more:",
        f"  {prog} --help-trainer   every Lightning Trainer option (--trainer.*)",
        f"  {prog} --print_config   the resolved config, to copy into a YAML of your own",
        "  --debug, or REGLIGHT_DEBUG=1: print the traceback of an error before its message",
    ]
    return "\n".join(lines)


def _examples(recipe: Recipe, options: Sequence[_Option]) -> list[str]:
    """The recipe's own examples (`#   reglight ...` lines of its YAML header), then the common tasks."""
    ours = []
    with recipe.path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            text = line.lstrip("#").strip()
            if text.startswith("reglight "):
                ours.append(text)
    flags = {o.flag for o in options}
    prog, seen = f"reglight run {recipe.name}", " ".join(ours)
    common = []
    if {"--data.dataset", "--data.target"} <= flags and "--data.target" not in seen:
        common.append(f"{prog} --data.dataset my.csv --data.target y   # your own CSV, column y")
    if "--data.flag" in flags and "--data.flag" not in seen:
        common.append(f"{prog} --data.flag pneumoniamnist   # another MedMNIST dataset")
    common.append(
        f"{prog} --trainer.accelerator cpu --trainer.devices 2 --trainer.strategy ddp   # 2 processes"
    )
    if "ablate" not in seen and "\nablation:" in recipe.path.read_text(encoding="utf-8"):
        common.append(f"reglight ablate {recipe.name} --seeds 5   # the declared ablation study")
    return ours + common


def _run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: reglight run RECIPE [--config FILE.yaml] [--trainer.* ...] [--model.* ...] "
            "[--data.* ...] [--ckpt_path PATH|last|best] [--print_config]\n"
            "`reglight run RECIPE --help` shows a recipe's options.\n"
        )
        _print_recipes()
        return 0 if argv else 2
    try:
        recipe = find_recipe(argv[0])
    except LookupError as err:
        raise UsageError(str(err), "`reglight list` shows the recipes") from err
    rest = argv[1:]
    if "--help" in rest or "-h" in rest:
        print(_recipe_help(recipe))
        return 0
    if "--help-trainer" in rest:
        ReglightCLI(
            ["--config", str(recipe.path), "--help"], run=False, prog=f"reglight run {recipe.name}"
        )
        return 0
    run_recipe(recipe, rest)
    return 0


def _ablate(argv: list[str]) -> int:
    from reglight.ablation import main as ablate

    return ablate(argv)


_FIGURES_USAGE = (
    "usage: reglight figures [--out DIR] [--only NAME[,NAME...]] [--quick] [--seed N] [--no-svg] "
    "[--threads N]"
)


def _figures(argv: list[str]) -> int:
    """`reglight figures`: compute the gallery's figures and write PNG, SVG, caption and numbers."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="reglight figures",
        usage=_FIGURES_USAGE[len("usage: ") :],
        description="Compute the gallery's figures with the library and write, per figure, NAME.png, "
        "NAME.svg, NAME.md (the caption with the measured numbers) and NAME.json (the numbers).",
        exit_on_error=False,
    )
    parser.add_argument(
        "--out", type=Path, default=Path("gallery"), help="output folder (default: gallery)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="make only these figures (repeatable or comma-separated); `--list` shows the names",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller computations, same pictures (all in under 2 minutes)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random draw (default: 0)"
    )
    parser.add_argument("--no-svg", action="store_true", help="write PNG files only")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default: 1; the figures' models are small, and one thread is faster than "
        "two on a busy CPU)",
    )
    parser.add_argument("--list", action="store_true", help="list the figures' names and exit")
    try:
        args, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as err:
        raise UsageError(str(err), _FIGURES_USAGE) from err
    if unknown:
        raise UsageError(f"unknown option {' '.join(unknown)}", _FIGURES_USAGE)
    from reglight.figures import figure_names, write_figures

    if args.list:
        print("\n".join(figure_names()))
        return 0
    only = [name for value in args.only for name in value.split(",") if name]
    from reglight._threads import check_n_threads, torch_threads

    try:
        threads = check_n_threads(args.threads)
    except ValueError as err:
        raise UsageError(f"--threads: {err}", _FIGURES_USAGE) from err
    with torch_threads(threads):
        write_figures(args.out, only or None, quick=args.quick, seed=args.seed, svg=not args.no_svg)
    return 0


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

    An error that the user's input causes (an unknown option, a bad value, a missing file or data
    folder, a malformed config) is printed as one short message on stderr, naming the option, the value
    and the fix, with exit code 2; `--debug` (anywhere on the command line) or the environment variable
    `REGLIGHT_DEBUG=1` print its traceback first. Any other exception is a bug and propagates.

    Args:
        argv: The arguments after `reglight` (default: `sys.argv[1:]`).

    Returns:
        0 on success, 2 on a bad command, recipe, option, value, config or data.

    Examples:
        >>> main(["no-such-command"])
        2
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("REGLIGHT_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    _quiet_lightning()
    try:
        return _dispatch(args)
    except InputError as err:
        return _report(err, _prog(args), debug)


def _prog(args: Sequence[str]) -> str:
    if args[:1] in (["run"], ["ablate"]) and len(args) > 1 and not args[1].startswith("-"):
        return f"reglight {args[0]} {Path(args[1]).stem}"
    return f"reglight {args[0]}" if args else "reglight"


def _report(err: InputError, prog: str, debug: bool) -> int:
    """Print a user error as the last thing on screen: one line, then the fix."""
    import traceback

    sys.stdout.flush()
    if debug:
        traceback.print_exception(err)
    message, fix = (err.message, err.fix) if isinstance(err, UsageError) else (str(err), "")
    hint = f"`{prog} --help` lists the options" + ("" if debug else "; --debug shows the traceback")
    print(f"{prog}: error: {message}", file=sys.stderr)
    print(f"  {fix} ({hint})" if fix else f"  ({hint})", file=sys.stderr, flush=True)
    return 2


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    try:
        if command == "list":
            _print_recipes()
            print(
                "\nreglight run NAME [--help]: fit, test and summarize a recipe; "
                "reglight ablate NAME: the ablation study its YAML declares"
            )
            return 0
        if command == "run":
            return _run(rest)
        if command == "ablate":
            return _ablate(rest)
        if command == "figures":
            return _figures(rest)
        if command in _LIGHTNING_SUBCOMMANDS:
            ReglightCLI(args, run=True)
            return 0
        if command in ("--version", "version"):
            from reglight import __version__

            print(f"reglight {__version__}")
            return 0
    except SystemExit as exc:  # --help, --print_config
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    raise UsageError(
        f"unknown command {command!r}",
        "commands: run, list, ablate, figures, fit, validate, test, predict",
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
