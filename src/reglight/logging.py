"""One small helper layer between reglight and Lightning's loggers.

- [`WandbLogger`][reglight.logging.WandbLogger] is Lightning's `WandbLogger` that never costs the
  run: without W&B credentials, or when the W&B server cannot be reached, it logs offline with a
  one-line notice that gives the `wandb sync` command (a plain `WandbLogger` fails with wandb's
  `UsageError`, or waits about 100 s and fails); a logging call that fails later in the run prints one
  line and training goes on.
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

import atexit
import contextlib
import csv
import io
import math
import netrc
import os
import re
import shutil
import socket
import sys
import threading
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from typing_extensions import override

from reglight._validation import check_nonnegative

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
_DEFAULT_CONNECT_TIMEOUT = 5.0


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
    """Lightning's `WandbLogger` that never costs the run: it falls back to offline mode, and survives.

    - **No credentials.** When `offline` is not given, `WANDB_MODE` is unset and
      [`has_wandb_credentials`][reglight.logging.has_wandb_credentials] is false, the run is written
      offline under `save_dir` and a one-line notice says how to upload it later with `wandb sync`.
    - **No network.** Before an online run starts (when the logger's `experiment` is first used), the
      W&B server (`WANDB_BASE_URL`, the `wandb login --host` setting, or wandb's default) is checked
      with one TCP connection (through the `https_proxy` / `http_proxy` when one applies), for at most
      `connect_timeout` seconds. If it does not answer, or if `wandb.init` fails, the run goes offline
      with the same kind of notice instead of waiting about 100 s and failing.
    - **A logger failure later** (the W&B backend dies during training) prints one line naming the
      error; the logger then stops logging, what was logged before stays where it is, and training
      goes on.
    - **Quiet offline runs.** An offline run does not print wandb's own "You can sync this run" footer
      at exit (`reglight run` prints the `wandb sync` command in its summary), and W&B's deprecated
      `anonymous` argument is not passed on.

    Everything else is Lightning's `WandbLogger` (same arguments).

    Args:
        name: Display name of the run.
        save_dir: Folder for the `wandb/` run folders and the checkpoints (default: `WANDB_DIR`, else
            `reglight_logs`).
        project: W&B project name.
        offline: `True`/`False` to force a mode; `None` chooses as described above.
        log_model: Upload checkpoints as W&B artifacts (Lightning's meaning; turned off when the run
            falls back to offline mode).
        connect_timeout: Seconds to wait for the W&B server before going offline (default: the
            `REGLIGHT_WANDB_CONNECT_TIMEOUT` environment variable, else 5); `0` skips the check.
        **kwargs: Passed on to Lightning's `WandbLogger` and `wandb.init`.

    Raises:
        ValueError: if `connect_timeout` (or `REGLIGHT_WANDB_CONNECT_TIMEOUT`) is not a number >= 0.

    Examples:
        >>> import tempfile
        >>> logger = WandbLogger(project="reglight-doc", save_dir=tempfile.mkdtemp(), offline=True)
        >>> logger.fell_back_offline  # offline was asked for, not chosen for lack of credentials
        False
        >>> logger.connect_timeout
        5.0
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | None = None,
        project: str | None = "reglight",
        offline: bool | None = None,
        log_model: bool | Literal["all"] = False,
        connect_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.connect_timeout = _connect_timeout(connect_timeout)
        self.fell_back_offline = False
        self.failure: BaseException | None = None
        self._stopped = False
        self._status: str | None = None
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
        init_args = _wandb_init_args(self)
        if init_args.get("anonymous") is None:  # wandb warns on any value, None included
            init_args.pop("anonymous", None)
        if self.fell_back_offline and _is_global_zero():
            self._notice("no W&B credentials found (WANDB_API_KEY / `wandb login`)")

    # -------------------------------------------------------------------------------- the run

    @property  # type: ignore[override]
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The wandb run, started on first use (offline when the server cannot be reached)."""
        if self._experiment is not None:
            return self._experiment
        online = not self._offline and os.environ.get("WANDB_MODE") not in (
            "offline",
            "dryrun",
            "disabled",
        )
        if online and self.connect_timeout > 0:
            url = self._base_url()
            reason = _unreachable(url, self.connect_timeout)
            if reason is not None:
                self._go_offline(f"W&B server {url} not reachable ({reason})")
                online = False
        if not online:
            return self._start_offline()
        import wandb

        try:
            run = super().experiment
        except (wandb.errors.Error, OSError) as err:
            if self._experiment is not None:
                raise
            self._go_offline(f"W&B could not start the run ({_one_line(err)})")
            return self._start_offline()
        return run

    def _start_offline(self) -> Any:
        """Start the run offline through `wandb.init(mode="offline")`, quiet at exit.

        wandb reads `WANDB_MODE` once per process, so the mode goes to `wandb.init` itself (and
        Lightning's `WANDB_MODE` switch is skipped). wandb's own "You can sync this run" footer is
        left out (`quiet`): `reglight run` prints the `wandb sync` command in its summary, the
        fallback notice names it, and a failed run does not end on it.
        """
        init_args = _wandb_init_args(self)
        if os.environ.get("WANDB_MODE") == "disabled":
            return super().experiment
        init_args["mode"] = "offline"
        if init_args.get("settings") is None:
            import wandb

            init_args["settings"] = wandb.Settings(quiet=True)
        self._offline = False  # Lightning would set WANDB_MODE=dryrun, which wandb then warns about
        try:
            run = super().experiment
        finally:
            self._offline = True
        if run is not None and _is_global_zero():
            # a run left open at exit is closed by wandb-core, which prints the footer regardless of
            # `quiet`; finishing it first keeps the exit quiet (atexit runs this before wandb's hook)
            atexit.register(self._finish_at_exit)
        return run

    def _finish_at_exit(self) -> None:
        run = self._experiment
        if run is None or self._stopped:
            return
        with contextlib.suppress(Exception):
            run.finish(exit_code=0 if self._status in (None, "success") else 1)

    def discard(self) -> None:
        """Finish the run without a word and delete its local offline run folder.

        For a run that failed before it did anything worth keeping (a bad argument, missing data): no
        `wandb sync` hint is printed and no offline run is left behind. An online run is marked as
        failed on the server. A run that never started is left alone (nothing is created). After this
        call the logger logs nothing more.
        """
        self._stopped = True
        run = self._experiment
        if run is None or not _is_global_zero():
            return
        folder = _run_folder(run)
        offline = bool(getattr(run, "offline", False)) or self._offline
        with contextlib.suppress(Exception):  # the backend may be gone: nothing left to finish
            run.finish(exit_code=1)
        if offline and folder is not None and folder.name.startswith("offline-run-"):
            shutil.rmtree(folder, ignore_errors=True)
            for link in folder.parent.iterdir():  # `latest-run`, `debug.log` -> the deleted folder
                if link.is_symlink() and not link.exists():
                    link.unlink()

    # ------------------------------------------------------------ logging that never raises

    @override
    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log_hyperparams", super().log_hyperparams, *args, **kwargs)

    @override
    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log_metrics", super().log_metrics, *args, **kwargs)

    @override
    def log_table(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log_table", super().log_table, *args, **kwargs)

    @override
    def log_text(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log_text", super().log_text, *args, **kwargs)

    @override
    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log_image", super().log_image, *args, **kwargs)

    @override
    def log_audio(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log_audio", super().log_audio, *args, **kwargs)

    @override
    def log_video(self, *args: Any, **kwargs: Any) -> None:
        self._guard("log_video", super().log_video, *args, **kwargs)

    @override
    def after_save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self._guard("after_save_checkpoint", super().after_save_checkpoint, *args, **kwargs)

    @override
    def finalize(self, status: str) -> None:
        self._status = status
        self._guard("finalize", super().finalize, status)

    def _guard(self, what: str, call: Any, *args: Any, **kwargs: Any) -> None:
        """Run one logging call; on its first failure say so once and stop logging."""
        if self._stopped:
            return
        try:
            call(*args, **kwargs)
        except Exception as err:
            self._stopped = True
            self.failure = err
            if _is_global_zero():
                kept = _run_folder(self._experiment) if self._experiment is not None else None
                where = f"; what was logged before is kept in {kept}" if kept else ""
                print(
                    f"reglight: W&B logging failed in {what} ({_one_line(err)}); training goes on "
                    f"without W&B{where}.",
                    file=sys.stderr,
                )

    # ---------------------------------------------------------------------------- helpers

    def _notice(self, reason: str) -> None:
        print(
            f"reglight: {reason}; logging offline under {Path(self.save_dir or '.').resolve() / 'wandb'}"
            " -- upload later with `wandb sync <run folder>`, or set WANDB_MODE to choose.",
            file=sys.stderr,
        )

    def _go_offline(self, reason: str) -> None:
        self._offline = True
        self._log_model = False  # checkpoints cannot be uploaded offline
        self.fell_back_offline = True
        self._notice(reason)

    def _base_url(self) -> str:
        import wandb

        settings = _wandb_init_args(self).get("settings")
        if isinstance(settings, dict) and settings.get("base_url"):
            return str(settings["base_url"])
        if isinstance(settings, wandb.Settings) and "base_url" in settings.model_fields_set:
            return str(settings.base_url)

        # the environment, `wandb login --host` and wandb's default, as `wandb.init` will see them
        return str(wandb.setup().settings.base_url)


def _wandb_init_args(logger: _LightningWandbLogger) -> dict[str, Any]:
    """The keyword arguments Lightning's `WandbLogger` keeps for `wandb.init` (its `_wandb_init`).

    The one place that reaches into Lightning; `tests/test_logging.py` fails loudly if it moves.
    """
    init_args = getattr(logger, "_wandb_init", None)
    if not isinstance(init_args, dict):
        raise RuntimeError(
            "lightning's WandbLogger no longer keeps its wandb.init arguments in `_wandb_init`; "
            "update reglight.logging._wandb_init_args"
        )
    return init_args


def _connect_timeout(value: float | None) -> float:
    if value is not None:
        return check_nonnegative("connect_timeout", value)
    raw = os.environ.get("REGLIGHT_WANDB_CONNECT_TIMEOUT")
    if raw is None or raw.strip() == "":
        return _DEFAULT_CONNECT_TIMEOUT
    try:
        parsed = float(raw)
    except ValueError:
        parsed = math.nan
    if not math.isfinite(parsed) or parsed < 0:
        raise ValueError(
            f"`REGLIGHT_WANDB_CONNECT_TIMEOUT` must be a number >= 0 of seconds, got {raw!r}"
        )
    return parsed


def _unreachable(url: str, timeout: float) -> str | None:
    """Why the server at `url` cannot be reached within `timeout` seconds, or `None` if it can.

    One TCP connection to the server, or to the proxy that the environment names for `url`; nothing is
    sent over it. Name resolution counts against the timeout.
    """
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port
    if host is None:
        return f"no host in {url!r}"
    if port is None:
        port = 443 if parsed.scheme == "https" else 80
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        if proxy_url.hostname:
            host, port = proxy_url.hostname, proxy_url.port or 80
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as err:
            outcome.append(_one_line(err))

    thread = threading.Thread(target=probe, name="reglight-wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer from {host}:{port} within {timeout:g} s"
    return outcome[0]


def _run_folder(run: Any) -> Path | None:
    """The local folder of a wandb run (`.../wandb/offline-run-...`), or `None`."""
    try:
        run_dir = Path(getattr(run, "dir", "") or "")
    except Exception:
        return None
    if not str(run_dir) or str(run_dir) == ".":
        return None
    return run_dir.parent if run_dir.name == "files" else run_dir


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "no message"
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(err).__name__}: {text}"


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
