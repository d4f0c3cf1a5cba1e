r"""Lightning's early stopping, plus best-weight restoring and Prechelt's (1998) stopping rules."""

from __future__ import annotations

import copy
import logging
import math
import sys
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks.early_stopping import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_prefixed_message, rank_zero_warn
from torch import Tensor
from typing_extensions import override

from reglight._validation import check_choice, check_nonnegative, check_positive, check_positive_int

__all__ = ["BEST_WEIGHTS_KEY", "CRITERIA", "EarlyStopping", "MisconfigurationError"]

log = logging.getLogger(__name__)

CRITERIA = ("patience", "gl", "pq", "up")
"""Stopping rules: Lightning's patience, and Prechelt's generalization loss, progress quotient and UP."""

BEST_WEIGHTS_KEY = "reglight_early_stopping_best_weights"
"""Top-level checkpoint key of the best-weights copies: a dict from each callback's `state_key` to its copy."""


class MisconfigurationError(MisconfigurationException, ValueError):
    """An invalid argument of [`EarlyStopping`][reglight.callbacks.EarlyStopping].

    It is both Lightning's `MisconfigurationException` (what Lightning's `EarlyStopping` raises for a bad
    `mode`) and a `ValueError`, so code written against either class catches it.
    """


def _checked(check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a `reglight._validation` check, raising `MisconfigurationError` instead of `ValueError`."""
    try:
        return check(*args, **kwargs)
    except ValueError as error:
        raise MisconfigurationError(str(error)) from None


class EarlyStopping(_LightningEarlyStopping):
    r"""Lightning's `EarlyStopping`, plus best-weight restoring and Prechelt's stopping rules.

    With the default arguments it behaves as Lightning's class: the same arguments, checks, stopping reasons,
    messages, `state_dict` and DDP reduction of the stop decision (any rank that wants to stop stops all).
    A bad argument raises `MisconfigurationError`, both Lightning's `MisconfigurationException` and a
    `ValueError`.

    **Restoring the best weights** (`restore_best_weights=True`, off by default as in Keras). Each time the
    monitored metric improves, a CPU copy of the module's `state_dict` is kept; it is loaded back in
    `on_train_end`, whether training stopped early or ran out of epochs (Keras restores only on an early stop).
    Under DDP, rank 0's copy (the weights of rank 0's best check) is broadcast at the end, so every rank ends
    with identical weights and buffers, and `best_epoch` is rank 0's on every rank. The copy is written to
    checkpoints under the top-level key `BEST_WEIGHTS_KEY` (one entry per callback, keyed by its `state_key`),
    so a resumed run restores the same weights; the callback's own `state_dict` holds only numbers. With
    several restoring callbacks, each loads its copy in callback order: the last one's weights remain.

    **Stopping rules** (`criterion`), after Prechelt (1998), "Early Stopping — But When?". With the
    validation error $E_{va}(t)$ at check $t$, $E_{opt}(t) = \min_{t' \le t} E_{va}(t')$ and the training
    error $E_{tr}$:

    - `"patience"` (default): Lightning's rule, stop after `patience` checks without improvement.
    - `"gl"`: stop at the first check with generalization loss
      $GL(t) = 100\,(E_{va}(t)/E_{opt}(t) - 1) > \alpha$.
    - `"pq"`: with training strips of $k$ = `strip_length` checks and training progress
      $P_k(t) = 1000\,\big(\sum_{t'=t-k+1}^{t} E_{tr}(t') / (k \min_{t'} E_{tr}(t')) - 1\big)$,
      stop at the first end of a strip with $GL(t)/P_k(t) > \alpha$. Needs the training loss.
    - `"up"`: stop when the validation error went up at the ends of `strips` successive strips,
      $E_{va}(t) > E_{va}(t-k)$.

    A "check" is one run of the early-stopping logic (once per epoch by default, as in Lightning): Prechelt's
    epochs are checks. The Prechelt rules need an error (lower is better, `mode="min"`); they replace the
    patience rule (`patience` is then ignored: the `patience` attribute holds `sys.maxsize`), while `stopping_threshold`, `divergence_threshold` and
    `check_finite` still apply. When one of them stops training, `stopping_reason` is `PATIENCE_EXHAUSTED`
    (Lightning's enum is closed) and `stopped_by` names the rule. A Prechelt rule appends its name to
    `state_key`, so it can be checkpointed next to a patience rule on the same metric.

    **Generalization gap.** In each epoch in which validation ran, $E_{va} - E_{tr}$ (`monitor` minus
    `train_monitor`) is logged as `gap_name`.

    Args:
        monitor: the metric to watch (logged with `self.log`).
        min_delta: smallest change that counts as an improvement.
        patience: checks without improvement before stopping (`criterion="patience"` only).
        verbose: log the decisions.
        mode: `"min"` or `"max"`; the Prechelt rules need `"min"`.
        strict: raise when `monitor` (or, for `"pq"`, `train_monitor`) is not logged.
        check_finite: stop when the metric becomes NaN or infinite.
        stopping_threshold: stop as soon as the metric reaches this value.
        divergence_threshold: stop as soon as the metric gets worse than this value.
        check_on_train_epoch_end: run the check at the end of the training epoch (default: when validation
            runs once per epoch) instead of at the end of validation.
        log_rank_zero_only: log the status only on rank 0.
        restore_best_weights: keep a CPU copy of the best weights and load it back when training ends.
        criterion: the stopping rule, one of `CRITERIA`.
        criterion_threshold: Prechelt's threshold $\alpha$ of `"gl"` (percent; Prechelt used 1 to 5) and `"pq"` (0.5 to 3).
        strip_length: $k$, checks per training strip (`"pq"`, `"up"`; Prechelt used 5).
        strips: $s$, successive strips with a rising validation error that stop `"up"`.
        train_monitor: the epoch-level training loss, e.g. `self.log("train/loss", loss, on_epoch=True)`;
            used by `"pq"` and for the generalization gap.
        log_gap: log the generalization gap each epoch.
        gap_name: key of the logged gap.

    Attributes:
        best_epoch: epoch of the best check so far (`None` before the first check).
        generalization_loss: $GL$ at the last check (Prechelt rules).
        training_progress: $P_k$ at the last end of a strip (`"pq"`).
        restored: whether the best weights were loaded back at the end of the last fit.

    Raises:
        MisconfigurationError: for an unknown `criterion` or `mode`, `mode="max"` with a Prechelt rule, a
            missing or non-positive `criterion_threshold` for `"gl"`/`"pq"`, a negative `min_delta` or `patience`, or a
            non-positive `strip_length`/`strips`.
        TypeError: if `restore_best_weights` is not a bool.

    Examples:
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> class Model(BoringModel):
        ...     def on_validation_epoch_end(self):
        ...         self.log("val/loss", [1.0, 0.8, 0.7, 0.72, 0.75, 0.9][self.current_epoch])
        >>> stop = EarlyStopping("val/loss", criterion="gl", criterion_threshold=5.0, restore_best_weights=True, log_gap=False)
        >>> trainer = Trainer(max_epochs=6, callbacks=[stop], logger=False, enable_checkpointing=False,
        ...                   enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Model())
        >>> stop.stopped_epoch, stop.stopped_by, round(stop.generalization_loss, 2), stop.best_epoch, stop.restored
        (4, 'gl', 7.14, 2, True)
    """

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        *,
        restore_best_weights: bool = False,
        criterion: str = "patience",
        criterion_threshold: float | None = None,
        strip_length: int = 5,
        strips: int = 3,
        train_monitor: str = "train/loss",
        log_gap: bool = True,
        gap_name: str = "val/gap",
    ) -> None:
        if mode not in self.mode_dict:
            # Lightning's wording (its own test matches it), with our error type
            raise MisconfigurationError(f"`mode` can be {', '.join(self.mode_dict)}, got {mode}")
        _checked(check_choice, "criterion", criterion, CRITERIA)
        _checked(check_nonnegative, "min_delta", min_delta)
        _checked(check_positive_int, "patience", patience, minimum=0)
        if criterion != "patience" and mode != "min":
            raise MisconfigurationError(
                f"`criterion={criterion!r}` is defined on an error to minimize: it needs mode='min', got "
                f"mode={mode!r}"
            )
        if criterion in ("gl", "pq") and criterion_threshold is None:
            raise MisconfigurationError(
                f"`criterion={criterion!r}` needs a threshold `criterion_threshold` (Prechelt used 1 to 5 for 'gl' and 0.5 "
                "to 3 for 'pq'), got criterion_threshold=None"
            )
        if criterion_threshold is not None:
            _checked(check_positive, "criterion_threshold", criterion_threshold)
        _checked(check_positive_int, "strip_length", strip_length)
        _checked(check_positive_int, "strips", strips)
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"`restore_best_weights` must be a bool, got {restore_best_weights!r}")
        super().__init__(
            monitor=monitor,
            min_delta=min_delta,
            # the Prechelt rules replace the patience rule: Lightning's rule never runs out of patience
            patience=patience if criterion == "patience" else sys.maxsize,
            verbose=verbose,
            mode=mode,
            strict=strict,
            check_finite=check_finite,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_on_train_epoch_end=check_on_train_epoch_end,
            log_rank_zero_only=log_rank_zero_only,
        )
        self.restore_best_weights = restore_best_weights
        self.criterion = criterion
        self.criterion_threshold = (
            None if criterion_threshold is None else float(criterion_threshold)
        )
        self.strip_length = strip_length
        self.strips = strips
        self.train_monitor = train_monitor
        self.log_gap = log_gap
        self.gap_name = gap_name

        self.best_epoch: int | None = None
        self.generalization_loss: float | None = None
        self.training_progress: float | None = None
        self.restored = False
        self._best_state: dict[str, Any] | None = None
        # Prechelt bookkeeping (in `state_dict`)
        self._checks = 0
        self._e_opt = math.inf
        self._strip: list[float] = []
        self._last_strip_val: float | None = None
        self._up_count = 0
        # per-check scratch
        self._metrics: dict[str, Tensor] = {}
        self._val_ran = False
        self._warned_gap = False

    @property
    @override
    def state_key(self) -> str:
        """Lightning's key (monitor, mode), with the criterion appended for a Prechelt rule."""
        key = super().state_key
        return key if self.criterion == "patience" else f"{key}{{'criterion': {self.criterion!r}}}"

    @property
    def stopped_by(self) -> str | None:
        """The rule that stopped training on this rank: `stopping_reason` in words, a Prechelt rule by name."""
        reason = self.stopping_reason
        if reason is EarlyStoppingReason.NOT_STOPPED:
            return None
        if reason is EarlyStoppingReason.PATIENCE_EXHAUSTED:
            return self.criterion
        return reason.name.lower()

    # ------------------------------------------------------------------ the check
    @override
    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        """Lightning's rules, then the Prechelt rule; the one place that uses a non-public Lightning name.

        Lightning's `_run_early_stopping_check` calls it once per check on every rank, with the squeezed
        metric, before the DDP reduction of the decision. `tests/compat` fails if that stops being so.
        """
        should_stop, reason = super()._evaluate_stopping_criteria(current)
        if should_stop or self.criterion == "patience":
            return should_stop, reason
        stop, prechelt_reason = self._prechelt(float(current))
        return (True, prechelt_reason) if stop else (False, reason)

    def _checked_run(self, trainer: pl.Trainer, run_hook: Any) -> None:
        """Run Lightning's hook (which may run a check), then note an improvement and copy the weights."""
        before = float(self.best_score)
        self._metrics = dict(trainer.callback_metrics)
        try:
            run_hook()
        finally:
            self._metrics = {}
        # an improvement is the only way Lightning's best score changes (NaN never becomes the best)
        if float(self.best_score) != before:
            self.best_epoch = trainer.current_epoch
            if self.restore_best_weights:
                self._best_state = _cpu_copy(trainer.lightning_module.state_dict())

    def _prechelt(self, e_va: float) -> tuple[bool, str | None]:
        self._checks += 1
        self._e_opt = min(self._e_opt, e_va)
        gl = self._gl(e_va)
        self.generalization_loss = gl
        threshold = self.criterion_threshold if self.criterion_threshold is not None else math.inf
        reason: str | None = None
        if self.criterion == "gl":
            if gl > threshold:
                reason = f"GL = {gl:.3f} > criterion_threshold = {threshold} (E_va = {e_va:.4g}, E_opt = {self._e_opt:.4g})"
        elif self.criterion == "pq":
            e_tr = self._train_loss()
            if e_tr is not None:
                self._strip.append(e_tr)
            if self._checks % self.strip_length == 0:
                strip, self._strip = self._strip, []
                if len(strip) == self.strip_length:
                    p_k = _progress(strip)
                    self.training_progress = p_k
                    quotient = gl / p_k if p_k > 0 else (math.inf if gl > 0 else 0.0)
                    if quotient > threshold:
                        reason = f"PQ = GL/P_k = {gl:.3f}/{p_k:.3f} = {quotient:.3f} > criterion_threshold = {threshold}"
        elif self._checks % self.strip_length == 0:  # "up"
            last = self._last_strip_val
            self._up_count = self._up_count + 1 if last is not None and e_va > last else 0
            self._last_strip_val = e_va
            if self._up_count >= self.strips:
                reason = f"validation error went up in {self._up_count} successive strips of {self.strip_length}"
        if reason is None:
            return False, None
        self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
        return True, f"Prechelt criterion {self.criterion!r}: {reason}. Signaling Trainer to stop."

    def _gl(self, e_va: float) -> float:
        if self._e_opt < 0:
            raise RuntimeError(
                f"criterion {self.criterion!r} needs a non-negative validation error, but `{self.monitor}` "
                f"reached {self._e_opt}"
            )
        if self._e_opt == 0:
            return 0.0 if e_va == 0 else math.inf
        return 100.0 * (e_va / self._e_opt - 1.0)

    def _train_loss(self) -> float | None:
        value = self._metrics.get(self.train_monitor)
        if value is not None:
            return float(value)
        msg = (
            f"`criterion={self.criterion!r}` needs the training loss, but `train_monitor="
            f"{self.train_monitor!r}` is not logged. Logged metrics: {_metric_list(self._metrics)}. Log it "
            f"with `self.log({self.train_monitor!r}, loss, on_epoch=True)` in `training_step`."
        )
        if self.strict:
            raise RuntimeError(msg)
        rank_zero_warn(msg, category=RuntimeWarning)
        return None

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Lightning's setup; refuse sharded strategies, whose `state_dict` is not a full copy per rank."""
        super().setup(trainer, pl_module, stage)
        if self.restore_best_weights and isinstance(
            trainer.strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)
        ):
            raise MisconfigurationError(
                "`restore_best_weights=True` needs a strategy that keeps the full model on every rank (single "
                f"device, DDP); got {type(trainer.strategy).__name__}. Use `restore_best_weights=False` with "
                "ModelCheckpoint(monitor=...) instead."
            )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reset the per-fit flags (the best copy survives a resume through the checkpoint)."""
        self.restored = False
        self._val_ran = False

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Note that validation ran, then run Lightning's hook (the check, when it runs after validation)."""
        if not trainer.sanity_checking:
            self._val_ran = True
        self._checked_run(
            trainer, lambda: super(EarlyStopping, self).on_validation_end(trainer, pl_module)
        )

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the generalization gap, then run Lightning's hook (the check, when it runs at epoch end)."""
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if self.log_gap and self._val_ran and fitting:
            self._log_gap(trainer, pl_module)
        self._val_ran = False
        self._checked_run(
            trainer, lambda: super(EarlyStopping, self).on_train_epoch_end(trainer, pl_module)
        )

    def _log_gap(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logs = trainer.callback_metrics
        val, train = logs.get(self.monitor), logs.get(self.train_monitor)
        if val is None or train is None:
            if not self._warned_gap:
                self._warned_gap = True
                missing = self.monitor if val is None else self.train_monitor
                rank_zero_warn(
                    f"EarlyStopping cannot log the generalization gap: `{missing}` is not logged. Logged "
                    f"metrics: {_metric_list(dict(logs))}. Set `train_monitor` to your epoch-level training "
                    "loss, or `log_gap=False`.",
                    category=RuntimeWarning,
                )
            return
        gap = (val.detach().float() - train.detach().float().to(val.device)).squeeze()
        pl_module.log(self.gap_name, gap, on_step=False, on_epoch=True)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Load the best weights back: rank 0's copy, on every rank.

        Under DDP every rank issues the same collectives in the same order, whatever its metric: one
        broadcast of rank 0's `(best_epoch, has a copy)`, then, when restoring, one broadcast of rank 0's copy.
        """
        if getattr(trainer, "fast_dev_run", False):  # Lightning skips the checks too
            return
        if trainer.world_size > 1:
            self.best_epoch, have = trainer.strategy.broadcast(
                (self.best_epoch, self._best_state is not None), src=0
            )
        else:
            have = self._best_state is not None
        if not self.restore_best_weights:
            return
        if not have:
            rank_zero_warn(
                f"EarlyStopping(restore_best_weights=True) has no best weights to restore: `{self.monitor}` "
                "never improved during this fit.",
                category=RuntimeWarning,
            )
            return
        if trainer.world_size > 1:
            self._best_state = trainer.strategy.broadcast(self._best_state, src=0)
        assert self._best_state is not None
        pl_module.load_state_dict(self._best_state)
        self.restored = True
        if self.verbose:
            rank = trainer.global_rank if trainer.world_size > 1 else None
            if rank is None or not self.log_rank_zero_only or rank == 0:
                log.info(
                    rank_prefixed_message(f"Restored the weights of epoch {self.best_epoch}.", rank)
                )

    # ------------------------------------------------------------------ state
    @override
    def state_dict(self) -> dict[str, Any]:
        """Lightning's state plus the best epoch and the Prechelt bookkeeping (numbers only)."""
        state = super().state_dict()
        state.update(
            criterion=self.criterion,
            best_epoch=self.best_epoch,
            generalization_loss=self.generalization_loss,
            training_progress=self.training_progress,
            checks=self._checks,
            e_opt=self._e_opt,
            strip=list(self._strip),
            last_strip_val=self._last_strip_val,
            up_count=self._up_count,
        )
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (a state saved by Lightning's class loads too).

        Args:
            state_dict: the saved state.
        """
        super().load_state_dict(state_dict)
        self.best_epoch = state_dict.get("best_epoch")
        self.generalization_loss = state_dict.get("generalization_loss")
        self.training_progress = state_dict.get("training_progress")
        self._checks = state_dict.get("checks", 0)
        self._e_opt = state_dict.get("e_opt", math.inf)
        self._strip = list(state_dict.get("strip", []))
        self._last_strip_val = state_dict.get("last_strip_val")
        self._up_count = state_dict.get("up_count", 0)

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """With `restore_best_weights=True`, save the best-weights copy under `BEST_WEIGHTS_KEY`."""
        if self.restore_best_weights and self._best_state is not None:
            checkpoint.setdefault(BEST_WEIGHTS_KEY, {})[self.state_key] = self._best_state

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """With `restore_best_weights=True`, take back this callback's copy from the checkpoint."""
        if self.restore_best_weights:
            self._best_state = checkpoint.get(BEST_WEIGHTS_KEY, {}).get(self.state_key)


def _metric_list(logs: dict[str, Any]) -> str:
    return (
        f"`{'`, `'.join(logs)}`" if logs else "none (nothing has been logged with `self.log` yet)"
    )


def _progress(strip: list[float]) -> float:
    r"""Prechelt's training progress $P_k = 1000 (\bar E_{tr} / \min E_{tr} - 1)$ of one strip."""
    mean, low = sum(strip) / len(strip), min(strip)
    if low > 0:
        return 1000.0 * (mean / low - 1.0)
    return math.inf if mean > low else 0.0


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    """Detached CPU copy of a `state_dict` (non-tensor extra states are deep-copied)."""
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v)
        for k, v in state.items()
    }
