"""Early stopping that restores the best weights, with Prechelt's (1998) stopping criteria."""

from __future__ import annotations

import copy
import math
import sys
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks.early_stopping import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor

from reglight._validation import check_choice, check_nonnegative, check_positive, check_positive_int

__all__ = ["CRITERIA", "EarlyStopping"]

CRITERIA = ("patience", "gl", "pq", "up")
"""Stopping rules: Lightning's patience, and Prechelt's generalization loss, progress quotient, and UP."""


def _metric_list(logs: dict[str, Any]) -> str:
    return (
        f"`{'`, `'.join(logs)}`" if logs else "none (nothing has been logged with `self.log` yet)"
    )


class EarlyStopping(_LightningEarlyStopping):
    r"""Lightning's ``EarlyStopping`` that restores the best weights and knows Prechelt's stopping rules.

    **Restoring the best weights.** With ``restore_best_weights=True`` the callback keeps a CPU copy of the
    module's ``state_dict`` each time the monitored metric improves, and loads it back when training ends
    (``on_train_end``), whether it stopped early or ran out of epochs (Keras restores only on an early stop;
    Lightning has no such option). Under DDP every rank stores the copy of the same epoch (rank 0 decides)
    and rank 0's copy is broadcast at the end, so every rank ends with identical weights, buffers included.
    The copy is saved in checkpoints, so a resumed run restores the same weights.

    **Stopping rules** (``criterion``), after Prechelt (1998), "Early Stopping — But When?". With the
    validation error :math:`E_{va}(t)` at check :math:`t`, :math:`E_{opt}(t) = \min_{t' \le t} E_{va}(t')`
    and the training error :math:`E_{tr}`:

    - ``"patience"`` (default): Lightning's rule, stop after ``patience`` checks without improvement.
    - ``"gl"``: stop at the first check with generalization loss
      :math:`GL(t) = 100\,(E_{va}(t)/E_{opt}(t) - 1) > \alpha`.
    - ``"pq"``: with training strips of :math:`k` = ``strip_length`` checks and training progress
      :math:`P_k(t) = 1000\,\big(\sum_{t'=t-k+1}^{t} E_{tr}(t') / (k \min_{t'} E_{tr}(t')) - 1\big)`,
      stop at the first end of a strip with :math:`GL(t)/P_k(t) > \alpha`. Needs the training loss.
    - ``"up"``: stop when the validation error went up at the end of ``strips`` successive strips,
      :math:`E_{va}(t) > E_{va}(t-k)`.

    A "check" is one run of the early-stopping logic (once per epoch by default, as in Lightning); Prechelt's
    epochs are checks. The Prechelt rules need an error (lower is better, ``mode="min"``); ``patience`` is
    ignored by them, while ``stopping_threshold``, ``divergence_threshold`` and ``check_finite`` still apply.
    When one of them stops training, ``stopping_reason`` is ``PATIENCE_EXHAUSTED`` (Lightning's enum is closed)
    and ``stopped_by`` names the rule.

    **Generalization gap.** Each epoch in which validation ran, the gap
    :math:`E_{va} - E_{tr}` (``monitor`` minus ``train_monitor``) is logged as ``gap_name``.

    Args:
        monitor: the validation metric to watch (logged with ``self.log``).
        min_delta: smallest change that counts as an improvement (Lightning).
        patience: checks without improvement before stopping (``criterion="patience"`` only).
        verbose: log the decisions.
        mode: ``"min"`` or ``"max"``; the Prechelt rules need ``"min"``.
        strict: raise when ``monitor`` (or, for ``"pq"``, ``train_monitor``) is not logged.
        check_finite: stop when the metric becomes NaN or infinite.
        stopping_threshold: stop as soon as the metric reaches this value.
        divergence_threshold: stop as soon as the metric gets worse than this value.
        check_on_train_epoch_end: run the check at the end of the training epoch (default: when validation
            runs once per epoch) instead of at the end of validation.
        log_rank_zero_only: log the status only on rank 0.
        restore_best_weights: keep a CPU copy of the best weights and load it back when training ends.
        criterion: the stopping rule, one of :data:`CRITERIA`.
        alpha: threshold :math:`\alpha` of ``"gl"`` (percent, Prechelt used 1 to 5) and ``"pq"`` (0.5 to 3).
        strip_length: :math:`k`, checks per training strip (``"pq"``, ``"up"``; Prechelt used 5).
        strips: :math:`s`, successive strips with a rising validation error that stop ``"up"``.
        train_monitor: the logged training-loss metric (epoch-level, e.g. ``self.log("train_loss", loss,
            on_epoch=True)``), used by ``"pq"`` and for the generalization gap.
        log_gap: log the generalization gap each epoch.
        gap_name: name of the logged gap.

    Attributes:
        best_epoch: epoch of the best check so far (``None`` before the first check).
        generalization_loss: :math:`GL` at the last check (Prechelt rules).
        training_progress: :math:`P_k` at the last end of strip (``"pq"``).
        stopped_by: name of the rule that stopped training, or ``None``.
        restored: whether the best weights were loaded back at the end of the last fit.

    Raises:
        ValueError: for an unknown ``criterion`` or ``mode``, ``mode="max"`` with a Prechelt rule, a missing
            or non-positive ``alpha`` for ``"gl"``/``"pq"``, or a non-positive ``strip_length``/``strips``.

    Examples:
        >>> from lightning.pytorch import Trainer
        >>> from reglight.callbacks import EarlyStopping
        >>> stop = EarlyStopping("val_loss", criterion="gl", alpha=5.0)
        >>> trainer = Trainer(callbacks=[stop], logger=False, enable_progress_bar=False)
        >>> stop.criterion, stop.restore_best_weights
        ('gl', True)
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
        restore_best_weights: bool = True,
        criterion: str = "patience",
        alpha: float | None = None,
        strip_length: int = 5,
        strips: int = 3,
        train_monitor: str = "train_loss",
        log_gap: bool = True,
        gap_name: str = "generalization_gap",
    ) -> None:
        check_choice("mode", mode, tuple(self.mode_dict))
        check_choice("criterion", criterion, CRITERIA)
        check_nonnegative("min_delta", min_delta)
        check_positive_int("patience", patience, minimum=0)
        if criterion != "patience" and mode != "min":
            raise ValueError(
                f"`criterion={criterion!r}` is defined on an error to minimise: it needs mode='min', got "
                f"mode={mode!r}"
            )
        if criterion in ("gl", "pq"):
            if alpha is None:
                raise ValueError(
                    f"`criterion={criterion!r}` needs a threshold `alpha` (Prechelt used 1 to 5 for 'gl' "
                    "and 0.5 to 3 for 'pq'), got alpha=None"
                )
            check_positive("alpha", alpha)
        elif alpha is not None:
            check_positive("alpha", alpha)
        check_positive_int("strip_length", strip_length)
        check_positive_int("strips", strips)
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"`restore_best_weights` must be a bool, got {restore_best_weights!r}")
        super().__init__(
            monitor=monitor,
            min_delta=min_delta,
            # the Prechelt rules replace the patience rule: the base class never runs out of patience
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
        self.alpha = None if alpha is None else float(alpha)
        self.strip_length = strip_length
        self.strips = strips
        self.train_monitor = train_monitor
        self.log_gap = log_gap
        self.gap_name = gap_name

        self.best_epoch: int | None = None
        self.generalization_loss: float | None = None
        self.training_progress: float | None = None
        self.stopped_by: str | None = None
        self.restored = False
        self._best_state: dict[str, Any] | None = None
        # Prechelt bookkeeping (saved in checkpoints)
        self._checks = 0
        self._e_opt = math.inf
        self._strip: list[float] = []
        self._last_strip_val: float | None = None
        self._up_count = 0
        # per-check scratch
        self._logs: dict[str, Tensor] = {}
        self._improved = False
        self._evaluated = False
        self._val_ran = False
        self._warned_gap = False

    # ------------------------------------------------------------------ checks
    def _validate_condition_metric(self, logs: dict[str, Tensor]) -> bool:
        if self.monitor in logs:
            return True
        msg = (
            f"Early stopping conditioned on metric `{self.monitor}` which is not available. Logged metrics: "
            f"{_metric_list(logs)}. Log it with `self.log({self.monitor!r}, ...)` or pass one of these as "
            "`monitor`."
        )
        if self.strict:
            raise RuntimeError(msg)
        if self.verbose:
            rank_zero_warn(msg, category=RuntimeWarning)
        return False

    def _train_loss(self) -> float | None:
        value = self._logs.get(self.train_monitor)
        if value is not None:
            return float(value)
        msg = (
            f"`criterion={self.criterion!r}` needs the training loss, but `train_monitor="
            f"{self.train_monitor!r}` is not logged. Logged metrics: {_metric_list(self._logs)}. Log it with "
            f"`self.log({self.train_monitor!r}, loss, on_epoch=True)` in `training_step`."
        )
        if self.strict:
            raise RuntimeError(msg)
        rank_zero_warn(msg, category=RuntimeWarning)
        return None

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        self._logs = dict(trainer.callback_metrics)
        self._evaluated = False
        super()._run_early_stopping_check(trainer)
        if not self._evaluated:
            return
        # every rank keeps the copy of the same check: rank 0 decides (the metric may differ across ranks)
        improved = trainer.strategy.broadcast(self._improved, src=0)
        if improved:
            self.best_epoch = trainer.current_epoch
            if self.restore_best_weights:
                self._best_state = _cpu_copy(trainer.lightning_module.state_dict())
        if (
            trainer.should_stop
            and self.stopped_epoch == trainer.current_epoch
            and self.stopped_by is None
        ):
            self.stopped_by = self.criterion  # this rank or another one stopped on the rule

    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        self._evaluated = True
        should_stop, reason = super()._evaluate_stopping_criteria(current)
        self._improved = (
            self.best_score is current
        )  # the base class stores `current` when it improves
        if should_stop and self.stopping_reason is not EarlyStoppingReason.PATIENCE_EXHAUSTED:
            self.stopped_by = self.stopping_reason.name.lower()
        if self.criterion == "patience" or should_stop:
            return should_stop, reason
        return self._prechelt(float(current))

    def _prechelt(self, e_va: float) -> tuple[bool, str | None]:
        self._checks += 1
        self._e_opt = min(self._e_opt, e_va)
        gl = self._gl(e_va)
        self.generalization_loss = gl
        alpha = self.alpha if self.alpha is not None else math.inf
        reason: str | None = None
        if self.criterion == "gl":
            if gl > alpha:
                reason = f"GL = {gl:.3f} > alpha = {alpha} (E_va = {e_va:.4g}, E_opt = {self._e_opt:.4g})"
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
                    if quotient > alpha:
                        reason = (
                            f"PQ = GL/P_k = {gl:.3f}/{p_k:.3f} = {quotient:.3f} > alpha = {alpha}"
                        )
        elif self._checks % self.strip_length == 0:  # "up"
            last = self._last_strip_val
            self._up_count = self._up_count + 1 if last is not None and e_va > last else 0
            self._last_strip_val = e_va
            if self._up_count >= self.strips:
                reason = f"validation error went up in {self._up_count} successive strips of {self.strip_length}"
        if reason is None:
            return False, None
        self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
        self.stopped_by = self.criterion
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

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Lightning's setup; refuse sharded strategies, whose ``state_dict`` is not a full copy per rank."""
        super().setup(trainer, pl_module, stage)
        if self.restore_best_weights and isinstance(
            trainer.strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)
        ):
            raise ValueError(
                "`restore_best_weights=True` needs a strategy that keeps the full model on every rank (single "
                f"device, DDP); got {type(trainer.strategy).__name__}. Use `restore_best_weights=False` with "
                "ModelCheckpoint(monitor=...) instead."
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reset the per-fit flags (the best copy survives a resume through the checkpoint)."""
        self.restored = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Note that validation ran this epoch, then run Lightning's check when it runs after validation."""
        if not trainer.sanity_checking:
            self._val_ran = True
        super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the generalization gap, then run Lightning's check when it runs at the end of the epoch."""
        if self.log_gap and self._val_ran and not self._should_skip_check(trainer):
            self._log_gap(trainer, pl_module)
        self._val_ran = False
        super().on_train_epoch_end(trainer, pl_module)

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

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Load the best weights back (the same copy, rank 0's, on every rank)."""
        if not self.restore_best_weights or getattr(trainer, "fast_dev_run", False):
            return
        have = trainer.strategy.broadcast(self._best_state is not None, src=0)
        if not have:
            rank_zero_warn(
                f"EarlyStopping(restore_best_weights=True) has no best weights to restore: `{self.monitor}` "
                "was never checked during this fit.",
                category=RuntimeWarning,
            )
            return
        state = (
            self._best_state
            if trainer.world_size == 1
            else trainer.strategy.broadcast(self._best_state)
        )
        assert state is not None
        pl_module.load_state_dict(state)
        self._best_state = state
        self.restored = True
        if self.verbose:
            self._log_info(
                trainer,
                f"Restored the weights of epoch {self.best_epoch}.",
                self.log_rank_zero_only,
            )

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Lightning's state plus the best weights and the Prechelt bookkeeping."""
        state = super().state_dict()
        state.update(
            criterion=self.criterion,
            best_epoch=self.best_epoch,
            best_state=self._best_state,
            stopped_by=self.stopped_by,
            generalization_loss=self.generalization_loss,
            training_progress=self.training_progress,
            checks=self._checks,
            e_opt=self._e_opt,
            strip=list(self._strip),
            last_strip_val=self._last_strip_val,
            up_count=self._up_count,
        )
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved.

        Args:
            state_dict: the saved state.
        """
        super().load_state_dict(state_dict)
        self.best_epoch = state_dict.get("best_epoch")
        self._best_state = state_dict.get("best_state")
        self.stopped_by = state_dict.get("stopped_by")
        self.generalization_loss = state_dict.get("generalization_loss")
        self.training_progress = state_dict.get("training_progress")
        self._checks = state_dict.get("checks", 0)
        self._e_opt = state_dict.get("e_opt", math.inf)
        self._strip = list(state_dict.get("strip", []))
        self._last_strip_val = state_dict.get("last_strip_val")
        self._up_count = state_dict.get("up_count", 0)


def _progress(strip: list[float]) -> float:
    """Prechelt's training progress :math:`P_k = 1000 (\\bar E_{tr} / \\min E_{tr} - 1)` of one strip."""
    mean, low = sum(strip) / len(strip), min(strip)
    if low > 0:
        return 1000.0 * (mean / low - 1.0)
    return math.inf if mean > low else 0.0


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    """Detached CPU copy of a ``state_dict`` (non-tensor extra states are deep-copied)."""
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v)
        for k, v in state.items()
    }
