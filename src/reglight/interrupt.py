"""Interrupt and resume a run: a checkpoint on Ctrl-C or SIGTERM, and `--ckpt_path` to continue.

Part of the command-line layer (next to `reglight.cli`). Two pieces:

- [Interruptible][reglight.interrupt.Interruptible], a context manager around `trainer.fit`/`trainer.test`.
  While it is active, SIGINT (Ctrl-C) and SIGTERM (how clusters preempt jobs) no longer stop Python where it
  happens to be: they ask the run to stop at the next batch boundary. There it writes `last.ckpt` into the
  run's checkpoint folder (`trainer.save_checkpoint`: weights, optimizer and scheduler states, global step,
  epoch, loop progress and every callback's state), prints where it is and the command that resumes, and
  leaves with [RunInterrupted][reglight.interrupt.RunInterrupted], a `SystemExit` with the shell's
  convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM.
- [ResumeState][reglight.interrupt.ResumeState], the callback that `Interruptible` adds to the Trainer. It
  stores the random number generators (Python, NumPy, torch, CUDA) in every checkpoint and restores them
  when a run resumes, so that resuming from a checkpoint written at the end of an epoch trains exactly as
  the uninterrupted run would (same batches, same dropout masks, same final weights). A checkpoint written
  in the middle of an epoch resumes at the right step, epoch and states; the batches left in that epoch are
  then drawn in a new order.

Under DDP every rank stops at the same batch. Lightning's SLURM auto-requeue keeps working: it saves its
`hpc_ckpt_*.ckpt` and requeues the job on the requeue signal (`SLURMEnvironment(requeue_signal=...)`,
SIGUSR1 by default), which this module never touches, and the requeued job resumes from it by itself; the
SIGTERM that follows is handled as above.
"""

from __future__ import annotations

import random
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

__all__ = [
    "EXIT_CODES",
    "Interruptible",
    "ResumeState",
    "RunInterrupted",
    "checkpoint_dir",
    "resolve_ckpt_path",
    "split_ckpt_path",
]

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""Exit code of a run stopped by each signal: 128 + the signal's number, as shells report it."""

_KEYWORDS = ("last", "best", "hpc")


class RunInterrupted(SystemExit):
    """A run stopped by a signal after saving a resumable checkpoint.

    A `SystemExit`: left uncaught, Python exits with `code` (130 for SIGINT, 143 for SIGTERM).

    Attributes:
        signum: The signal received.
        checkpoint: The checkpoint written (`None` when none could be written, e.g. before training began).
        command: The command line that resumes the run (`None` when unknown or nothing to resume).
    """

    def __init__(
        self, signum: int, checkpoint: Path | None = None, command: str | None = None
    ) -> None:
        super().__init__(EXIT_CODES.get(signal.Signals(signum), 128 + int(signum)))
        self.signum = int(signum)
        self.checkpoint = checkpoint
        self.command = command


class _StopRequested(Exception):
    """Raised by [ResumeState][reglight.interrupt.ResumeState] at a batch boundary after a signal."""


# ------------------------------------------------------------------------------------ --ckpt_path


def split_ckpt_path(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """Take `--ckpt_path VALUE` (or `--ckpt_path=VALUE`) out of command-line arguments.

    Args:
        args: Command-line arguments.

    Returns:
        `(value, the other arguments)`; `value` is `None` when the option is absent (the last one wins).

    Raises:
        ValueError: When `--ckpt_path` has no value.

    Examples:
        >>> split_ckpt_path(["--trainer.max_epochs", "3", "--ckpt_path", "last"])
        ('last', ['--trainer.max_epochs', '3'])
        >>> split_ckpt_path(["--ckpt_path=runs/a.ckpt"])
        ('runs/a.ckpt', [])
    """
    value: str | None = None
    rest: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--ckpt_path":
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raise ValueError("`--ckpt_path` needs a value: a checkpoint file, `last` or `best`")
            value = items[i + 1]
            i += 2
            continue
        if arg.startswith("--ckpt_path="):
            value = arg.split("=", 1)[1]
            if not value:
                raise ValueError("`--ckpt_path` needs a value: a checkpoint file, `last` or `best`")
        else:
            rest.append(arg)
        i += 1
    return value, rest


def resolve_ckpt_path(value: str | None) -> str | None:
    """Check a `--ckpt_path` value: Lightning's keywords pass, a file must exist.

    Args:
        value: `None`, `"last"`, `"best"`, `"hpc"` (resolved by Lightning's `Trainer.fit`) or a path.

    Returns:
        The keyword, or the path made absolute.

    Raises:
        FileNotFoundError: When the path does not exist.
        IsADirectoryError: When the path is a folder.

    Examples:
        >>> resolve_ckpt_path("last")
        'last'
        >>> resolve_ckpt_path("no/such.ckpt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: --ckpt_path 'no/such.ckpt': no such checkpoint file
    """
    if value is None or value in _KEYWORDS:
        return value
    path = Path(value).expanduser()
    if path.is_dir():
        raise IsADirectoryError(
            f"--ckpt_path {value!r} is a folder; give a checkpoint file (e.g. {path / 'last.ckpt'}) "
            "or `last`"
        )
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {value!r}: no such checkpoint file")
    return str(path.resolve())


def checkpoint_dir(trainer: Trainer) -> Path:
    """The run's checkpoint folder: that of its first `ModelCheckpoint`, else `default_root_dir/checkpoints`.

    Lightning sets a `ModelCheckpoint`'s folder when fitting starts (from its `dirpath`, else from the
    first logger's folder and version).
    """
    callback = trainer.checkpoint_callback
    folder = getattr(callback, "dirpath", None) if callback is not None else None
    return Path(folder) if folder else Path(trainer.default_root_dir) / "checkpoints"


# ---------------------------------------------------------------------------------- RNG states


def _rng_states() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]  # noqa: NPY002
    states: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys).copy()), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    if "python" in states:
        version, state, gauss = states["python"]
        random.setstate((version, tuple(state), gauss))
    if "numpy" in states:
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ------------------------------------------------------------------------------------- callback


class ResumeState(Callback):
    """Keeps a run resumable: random generators in each checkpoint, and a stop at a batch boundary.

    In every checkpoint it stores the states of Python's, NumPy's and torch's (and CUDA's) random number
    generators, and restores them when a run resumes from one (`trainer.fit(ckpt_path=...)`). After
    [request_stop][reglight.interrupt.ResumeState.request_stop], it stops the run at the start of the next
    training, validation or test batch: the previous batch and its optimizer step are complete.

    When the run stops on such a request, or on Lightning's own stop after SIGTERM, it writes `last.ckpt`
    into the run's checkpoint folder (see [checkpoint_dir][reglight.interrupt.checkpoint_dir]) before
    Lightning tears the run down. When a run ends normally and such a `last.ckpt` is in its checkpoint
    folder, it is overwritten with the final state, so that `--ckpt_path last` never goes back in time.

    Attributes:
        resumed_from: The checkpoint the run resumed from, or `None`.
        resumed_epoch: The epoch stored in that checkpoint (the first epoch trained after resuming).
        resumed_step: The global step stored in that checkpoint.
        interrupted_by: The signal that stopped the run, or `None`.
        saved: The checkpoint written when the run stopped, or `None`.

    Examples:
        >>> import lightning.pytorch as pl, tempfile
        >>> from reglight.recipes.tiny import TinyClassifier, TwoMoonsDataModule
        >>> state = ResumeState()
        >>> trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, default_root_dir=tempfile.mkdtemp(),
        ...                      callbacks=[state])
        >>> trainer.fit(TinyClassifier(hidden=8), datamodule=TwoMoonsDataModule(n_samples=128))
        >>> {"python", "numpy", "torch"} <= set(state.state_dict()["rng"]), state.resumed_from
        (True, None)
    """

    def __init__(self) -> None:
        self._stop: int | None = None
        self.resumed_from: str | None = None
        self.resumed_epoch: int | None = None
        self.resumed_step: int | None = None
        self.interrupted_by: int | None = None
        self.saved: Path | None = None

    def request_stop(self, signum: int) -> None:
        """Ask the run to stop at the next batch boundary (safe to call from a signal handler)."""
        self._stop = int(signum)

    @property
    def stop_requested(self) -> int | None:
        """The signal that asked the run to stop, or `None`."""
        return self._stop

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_states()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            _set_rng_states(state_dict["rng"])

    @override
    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.resumed_from = str(trainer.ckpt_path) if trainer.ckpt_path else "a checkpoint"
        self.resumed_epoch = int(checkpoint.get("epoch", 0))
        self.resumed_step = int(checkpoint.get("global_step", 0))

    @override
    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, _StopRequested):
            signum = int(exception.args[0])
        elif isinstance(exception, SIGTERMException):  # Lightning's own stop on SIGTERM
            signum = int(signal.SIGTERM)
        else:
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # no second interrupt while saving
        self.interrupted_by = signum
        if trainer.global_step == 0 and trainer.current_epoch == 0:
            return  # nothing trained yet: nothing to resume
        path = checkpoint_dir(trainer) / "last.ckpt"
        trainer.save_checkpoint(
            path
        )  # before Lightning's teardown; every rank takes part, rank 0 writes
        self.saved = path.resolve()

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a `last.ckpt` left by an earlier stop would make `--ckpt_path last` go back to it: keep it the
        # latest state, unless a ModelCheckpoint(save_last=True) already does
        path = checkpoint_dir(trainer) / "last.ckpt"
        keeps_last = any(getattr(cb, "save_last", False) for cb in trainer.checkpoint_callbacks)
        if path.is_file() and not keeps_last:
            trainer.save_checkpoint(path)

    def _check(self, trainer: Trainer) -> None:
        stop = self._stop is not None
        if trainer.world_size > 1:  # every rank stops at the same batch (one tiny all-reduce)
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            raise _StopRequested(self._stop if self._stop is not None else int(signal.SIGINT))

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._check(trainer)

    @override
    def on_validation_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)

    @override
    def on_test_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._check(trainer)


# ------------------------------------------------------------------------------ context manager


class Interruptible:
    """Turn SIGINT and SIGTERM during a run into a resumable checkpoint and a non-zero exit.

    Use it around the Trainer's calls. On a signal, the run stops at the next batch boundary (Lightning
    itself stops at its own boundaries on SIGTERM), `last.ckpt` is written into the run's checkpoint folder
    (see [checkpoint_dir][reglight.interrupt.checkpoint_dir]) by global rank 0, the path and `command` +
    `--ckpt_path PATH` are printed to stderr, and [RunInterrupted][reglight.interrupt.RunInterrupted]
    (exit code 130 or 143) leaves the block. A second Ctrl-C while the checkpoint is written is ignored.

    Args:
        trainer: The Trainer; a [ResumeState][reglight.interrupt.ResumeState] is added to its callbacks
            when it has none.
        command: The command line that started the run, without `--ckpt_path` (for the resume hint); empty
            for no hint.
        resume_arg: What the printed command appends: `"path"` for `--ckpt_path <the checkpoint>`, or a
            fixed value such as `"last"` (a study that resumes each run from its own folder).
        announce: Print the checkpoint and the resume command to stderr.

    Examples:
        >>> import lightning.pytorch as pl, tempfile
        >>> from reglight.recipes.tiny import TinyClassifier, TwoMoonsDataModule
        >>> trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, default_root_dir=tempfile.mkdtemp())
        >>> before = signal.getsignal(signal.SIGINT)
        >>> with Interruptible(trainer, ["reglight", "run", "tiny"]) as guard:
        ...     trainer.fit(TinyClassifier(hidden=8), datamodule=TwoMoonsDataModule(n_samples=128))
        >>> guard.state.resumed_from is None and signal.getsignal(signal.SIGINT) is before  # handlers restored
        True
    """

    def __init__(
        self,
        trainer: Trainer,
        command: Sequence[str] = (),
        resume_arg: str = "path",
        announce: bool = True,
    ) -> None:
        self.trainer = trainer
        self.command = list(command)
        self.resume_arg = resume_arg
        self.announce = announce
        callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]
        found = [cb for cb in callbacks if isinstance(cb, ResumeState)]
        if found:
            self.state = found[0]
        else:
            self.state = ResumeState()
            callbacks.append(self.state)
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.state.stop_requested is None:
            print(
                f"\n{signal.Signals(signum).name} received: stopping after the current batch and "
                "saving a checkpoint (Ctrl-C again is ignored while it is written) ...",
                file=sys.stderr,
                flush=True,
            )
        self.state.request_stop(signum)

    def __enter__(self) -> Interruptible:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handler)
        return self

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                return
            if isinstance(exc, (_StopRequested, SIGTERMException)):
                signum = self.state.interrupted_by or int(signal.SIGTERM)
            elif isinstance(exc, KeyboardInterrupt):  # a signal before the handler was in place
                signum = int(signal.SIGINT)
            else:
                return
            raise self._report(signum) from None
        finally:
            self._restore_handlers()

    def _report(self, signum: int) -> RunInterrupted:
        trainer = self.trainer
        name = signal.Signals(signum).name
        path = self.state.saved
        loud = self.announce and trainer.is_global_zero
        if path is None:
            if loud:
                print(f"{name}: stopped before training began; nothing to resume.", file=sys.stderr)
            return RunInterrupted(signum)
        command = None
        if self.command:
            value = str(path) if self.resume_arg == "path" else self.resume_arg
            command = shlex.join([*self.command, "--ckpt_path", value])
        if loud:
            print(
                f"Interrupted by {name} at epoch {trainer.current_epoch}, global step "
                f"{trainer.global_step}.\nSaved a resumable checkpoint: {path}",
                file=sys.stderr,
            )
            if command:
                print(f"Resume with:\n  {command}", file=sys.stderr)
            if SLURMEnvironment.detect():
                print(
                    "(A SLURM job that Lightning requeued on its requeue signal resumes by itself from "
                    f"{trainer.default_root_dir}/hpc_ckpt_*.ckpt.)",
                    file=sys.stderr,
                )
            sys.stderr.flush()
        return RunInterrupted(signum, path, command)
