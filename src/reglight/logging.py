"""One small helper layer between reglight and Lightning's loggers.

- [`WandbLogger`][reglight.logging.WandbLogger] is Lightning's `WandbLogger` with one change: a
  process without W&B credentials (no `WANDB_API_KEY`, no `wandb login` entry in the netrc file) and
  without `WANDB_MODE` falls back to offline mode with a one-line notice that gives the `wandb sync`
  command, instead of failing with wandb's `UsageError` (what a plain `WandbLogger` does in a
  non-interactive process).
- [`log_figure`][reglight.logging.log_figure] and [`log_table`][reglight.logging.log_table] send a
  matplotlib figure or a table to every logger of a run, whichever they are: W&B (`wandb.Image` /
  `wandb.Table`), TensorBoard (`add_figure` / a markdown table through `add_text`) or CSV (a PNG / CSV
  file in `media/` beside the logger's `metrics.csv`). With no logger they do nothing.
- [`Table`][reglight.logging.Table] is a printable table (title, columns, rows) that recipes return
  from `report()` and that `reglight run` prints with rich.

Keys are slash namespaces, like the logged metrics: `lasso/path`, `lasso/coefficients`, ...

Examples:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import tempfile
    >>> from pathlib import Path
    >>> from lightning.pytorch.loggers import CSVLogger
    >>> logger = CSVLogger(tempfile.mkdtemp())
    >>> fig, ax = plt.subplots()
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> log_figure(logger, "demo/figure", fig)
    >>> log_table(logger, "demo/table", ["name", "value"], [["a", 1.0], ["b", 2.0]])
    >>> sorted(f.name for f in Path(logger.log_dir, "media").iterdir())
    ['demo_figure.png', 'demo_table.csv']
    >>> print(Path(logger.log_dir, "media", "demo_table.csv").read_text().strip())
    name,value
    a,1.0
    b,2.0
    >>> plt.close(fig)
"""

from __future__ import annotations

import csv
import io
import netrc
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from matplotlib.figure import Figure

__all__ = [
    "Table",
    "WandbLogger",
    "has_wandb_credentials",
    "log_figure",
    "log_table",
    "loggers_of",
    "run_location",
]

_DEFAULT_WANDB_HOST = "https://api.wandb.ai"


@dataclass
class Table:
    """A small table of results: what recipes return from `report()` and `reglight run` prints.

    Args:
        title: Heading shown above the table.
        columns: Column names.
        rows: One sequence of cells per row, as many cells as `columns`.

    Raises:
        ValueError: if a row does not have as many cells as there are columns.

    Examples:
        >>> print(Table("fit", ["alpha", "r2"], [[0.1, 0.4567891]]).to_markdown())
        | alpha | r2 |
        |---|---|
        | 0.1 | 0.4568 |
    """

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = [str(c) for c in self.columns]
        self.rows = [list(r) for r in self.rows]
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"`rows[{i}]` has {len(row)} cells but there are {len(self.columns)} columns"
                )

    def to_markdown(self, float_format: str = "{:.4g}") -> str:
        """The table as GitHub-flavoured markdown.

        Args:
            float_format: How floats are written (`str.format` syntax).

        Returns:
            The markdown text, one line per row after the header.
        """
        cells = [[_fmt(c, float_format) for c in row] for row in self.rows]
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)


def _fmt(value: Any, float_format: str = "{:.4g}") -> str:
    if isinstance(value, float):
        return float_format.format(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _fmt(value.item(), float_format)
    return str(value)


# --------------------------------------------------------------------------------------------- W&B


def has_wandb_credentials() -> bool:
    """Whether W&B credentials are available without prompting.

    True when `WANDB_API_KEY` (or `WANDB_IDENTITY_TOKEN_FILE`) is set, or when the netrc file
    (`$NETRC` or `~/.netrc`) has an entry for the W&B host (`WANDB_BASE_URL`, default
    `api.wandb.ai`), which is where `wandb login` stores the key.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = (
        urlparse(os.environ.get("WANDB_BASE_URL", _DEFAULT_WANDB_HOST)).hostname or "api.wandb.ai"
    )
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's `WandbLogger` that falls back to offline mode when there are no credentials.

    When `offline` is not given, `WANDB_MODE` is unset and
    [`has_wandb_credentials`][reglight.logging.has_wandb_credentials] is false,
    the run is written offline under `save_dir` and a one-line notice says how to upload it later with
    `wandb sync`. Everything else is Lightning's `WandbLogger` (same arguments).

    Args:
        name: Display name of the run.
        save_dir: Folder for the `wandb/` run folders and the checkpoints (default: `WANDB_DIR`, else
            `reglight_logs`).
        project: W&B project name.
        offline: `True`/`False` to force a mode; `None` chooses as described above.
        log_model: Upload checkpoints as W&B artifacts (Lightning's meaning).
        **kwargs: Passed on to Lightning's `WandbLogger` and `wandb.init`.

    Examples:
        >>> import tempfile
        >>> logger = WandbLogger(project="reglight-doc", save_dir=tempfile.mkdtemp(), offline=True)
        >>> logger.fell_back_offline  # offline was asked for, not chosen for lack of credentials
        False
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | None = None,
        project: str | None = "reglight",
        offline: bool | None = None,
        log_model: bool | Literal["all"] = False,
        **kwargs: Any,
    ) -> None:
        self.fell_back_offline = False
        if offline is None:
            mode = os.environ.get("WANDB_MODE")
            if mode is None and not has_wandb_credentials():
                offline = True
                self.fell_back_offline = True
            else:
                offline = mode in ("offline", "dryrun")
        if save_dir is None:
            save_dir = os.environ.get("WANDB_DIR", "reglight_logs")
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            offline=offline,
            log_model=log_model,
            **kwargs,
        )
        if self.fell_back_offline and _is_global_zero():
            print(
                "reglight: no W&B credentials found (WANDB_API_KEY / `wandb login`); logging offline "
                f"under {Path(save_dir).resolve() / 'wandb'} -- upload later with "
                "`wandb sync <run folder>`, or set WANDB_MODE to choose.",
                file=sys.stderr,
            )


def _is_global_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


# ---------------------------------------------------------------------------------- figures, tables


def loggers_of(target: Any) -> list[Logger]:
    """The loggers behind `target`: a Trainer, a LightningModule, a logger or a list of loggers."""
    if target is None:
        return []
    if isinstance(target, Logger):
        return [target]
    if isinstance(target, (list, tuple)):
        return [lg for t in target for lg in loggers_of(t)]
    trainer = getattr(target, "_trainer", None) if not hasattr(target, "loggers") else target
    if trainer is None:  # a LightningModule that is not attached to a Trainer
        return []
    return list(getattr(trainer, "loggers", []) or [])


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "item"


def _artifact_dir(logger: Logger) -> Path:
    log_dir = getattr(logger, "log_dir", None) or logger.save_dir or "."
    path = Path(log_dir) / "media"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_figure(target: Any, key: str, figure: Figure, *, step: int | None = None) -> None:
    """Log a matplotlib figure to every logger of `target`.

    Args:
        target: A Trainer, a LightningModule (its trainer's loggers), a logger or a list of loggers.
        key: Name of the figure (`"lasso/path"`).
        figure: The matplotlib figure.
        step: Global step to attach (default: the logger's current step).
    """
    for logger in loggers_of(target):
        if isinstance(logger, _LightningWandbLogger):
            logger.log_image(key=key, images=[figure], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(key, figure, global_step=step or 0, close=False)
        elif isinstance(logger, CSVLogger) or getattr(logger, "save_dir", None):
            suffix = "" if step is None else f"-step{step}"
            figure.savefig(_artifact_dir(logger) / f"{_slug(key)}{suffix}.png", dpi=120)


def log_table(
    target: Any,
    key: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    step: int | None = None,
) -> None:
    """Log a table to every logger of `target`.

    W&B gets a `wandb.Table`; TensorBoard a markdown table through `add_text`; a CSV logger (or any
    logger with a `save_dir`) a `.csv` file in `<log_dir>/media/`.

    Args:
        target: A Trainer, a LightningModule (its trainer's loggers), a logger or a list of loggers.
        key: Name of the table (`"lasso/coefficients"`).
        columns: Column names.
        rows: Rows of cells (numbers or strings), as many cells as `columns`.
        step: Global step to attach (default: the logger's current step).
    """
    table = Table(title=key, columns=list(columns), rows=[list(r) for r in rows])
    plain_rows = [[_plain(c) for c in row] for row in table.rows]
    for logger in loggers_of(target):
        if isinstance(logger, _LightningWandbLogger):
            logger.log_table(key=key, columns=table.columns, data=plain_rows, step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, table.to_markdown(), global_step=step or 0)
        elif isinstance(logger, CSVLogger) or getattr(logger, "save_dir", None):
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(table.columns)
            writer.writerows(plain_rows)
            suffix = "" if step is None else f"-step{step}"
            (_artifact_dir(logger) / f"{_slug(key)}{suffix}.csv").write_text(buffer.getvalue())


def _plain(value: Any) -> Any:
    """Numbers and strings as they are; 0-d tensors / numpy scalars as Python numbers."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def run_location(trainer: pl.Trainer) -> list[str]:
    """Human-readable lines telling where each logger of `trainer` wrote the run."""
    lines: list[str] = []
    for logger in trainer.loggers:
        if isinstance(logger, _LightningWandbLogger):
            run = logger.experiment
            run_dir = Path(getattr(run, "dir", "") or logger.save_dir or ".")
            folder = run_dir.parent if run_dir.name == "files" else run_dir
            offline = bool(getattr(run, "offline", False)) or getattr(run, "url", None) is None
            if offline:
                lines.append(f"W&B (offline): {folder}  -- upload with `wandb sync {folder}`")
            else:
                lines.append(f"W&B: {run.url}")
        else:
            where = getattr(logger, "log_dir", None) or logger.save_dir
            lines.append(f"{type(logger).__name__}: {where}")
    return lines
