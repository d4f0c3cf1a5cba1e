r"""Lightning's weight-averaging callbacks, made to agree with best-weight restoring and lazily built models.

Lightning ships the averaging itself: `WeightAveraging` / `EMAWeightAveraging` (an
`torch.optim.swa_utils.AveragedModel` updated after every optimizer step, swapped in for validation and
copied into the model at the end of fitting) and `StochasticWeightAveraging` (Izmailov et al. 2018: an
equal average of the weights at the start of each epoch from `swa_epoch_start` on, with the learning rate
switched to `swa_lrs`, and one more epoch that recomputes the batch-norm statistics of the average). The
subclasses here keep all of that and add what is missing when they are combined with reglight's pieces
(see the "Weight averaging" page of the documentation for what each combination does):

- [`WeightAveraging`][reglight.callbacks.WeightAveraging] and
  [`EMAWeightAveraging`][reglight.callbacks.EMAWeightAveraging]: the averaged weights stay in the model
  until the end-of-epoch callbacks (early stopping, checkpointing) have run, so the weights an
  [`EarlyStopping`][reglight.callbacks.EarlyStopping] with `restore_best_weights=True` copies are the ones
  that were validated, the average; at the end of fitting the final average is not copied over weights
  that such a callback already restored; optionally (`update_bn=True`) the batch-norm statistics of the
  final weights are recomputed with `torch.optim.swa_utils.update_bn`.
- [`StochasticWeightAveraging`][reglight.callbacks.StochasticWeightAveraging]: builds a model whose layers
  are created in `configure_model` before copying it (Lightning copies the model before that hook runs and
  would average nothing), and when early stopping ends training before the last epoch, still loads the
  average collected so far and recomputes its batch-norm statistics.

All three leave in place weights that an `EarlyStopping(restore_best_weights=True)` has already restored at
the end of fitting, whatever the order of the callbacks: the validated best weights win.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging as _LightningEMA
from lightning.pytorch.callbacks import StochasticWeightAveraging as _LightningSWA
from lightning.pytorch.callbacks import WeightAveraging as _LightningWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn
from torch.optim.swa_utils import update_bn
from typing_extensions import override

__all__ = [
    "EMAWeightAveraging",
    "StochasticWeightAveraging",
    "WeightAveraging",
    "has_batch_norm",
    "recompute_batch_norm",
]


def has_batch_norm(module: nn.Module) -> bool:
    """Whether `module` holds a batch-norm layer (running statistics that averaging leaves stale).

    Examples:
        >>> has_batch_norm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
        True
    """
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def recompute_batch_norm(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
    """Recompute the batch-norm running statistics of `pl_module` over the Trainer's training batches.

    One pass of `torch.optim.swa_utils.update_bn` (cumulative averages, momentum `None`) over
    `trainer.train_dataloader` (each batch's first element is the input, as `update_bn` expects); the
    training flag of every module is restored afterwards. Under DDP each rank sees its own shard, so the
    statistics are averaged over ranks afterwards, to keep the weights identical on every rank.

    Returns:
        Whether there was a batch-norm layer to update.
    """
    if not has_batch_norm(pl_module):
        return False
    loader = trainer.train_dataloader
    if loader is None:
        rank_zero_warn(
            "cannot recompute the batch-norm statistics: the Trainer has no training dataloader",
            category=RuntimeWarning,
        )
        return False
    flags = [(m, m.training) for m in pl_module.modules()]
    with torch.no_grad():
        update_bn(loader, pl_module, device=pl_module.device)
    for module, training in flags:
        module.train(training)
    if trainer.world_size > 1:
        for m in pl_module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for buf in (m.running_mean, m.running_var):
                    if buf is not None:
                        buf.copy_(trainer.strategy.reduce(buf.clone(), reduce_op="mean"))
    return True


def _restored_by_early_stopping(trainer: pl.Trainer) -> bool:
    """Whether a best-weight-restoring callback has already loaded its weights in this `on_train_end`."""
    return any(
        getattr(cb, "restore_best_weights", False) is True
        and getattr(cb, "restored", False) is True
        for cb in trainer.callbacks  # type: ignore[attr-defined]
    )


class _HeldAverage(_LightningWeightAveraging):
    """Keep the averaged weights in the model from validation until the next training batch."""

    def _init_held(self, update_bn: bool) -> None:
        if not isinstance(update_bn, bool):
            raise TypeError(f"`update_bn` must be a bool, got {update_bn!r}")
        self.update_bn = update_bn
        self._held = False

    def _fitting(self, trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def _release(self, pl_module: pl.LightningModule) -> None:
        if self._held:
            self._swap_models(pl_module)
            self._held = False

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Lightning's setup (builds the `AveragedModel`, after `configure_model`)."""
        self._held = False
        super().setup(trainer, pl_module, stage)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """During fitting, keep the average in the model (Lightning swaps it back here)."""
        if self._average_model is None:
            return
        if self._fitting(trainer):
            self._held = True
        else:
            self._swap_models(pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Put the trained weights back before the next training step."""
        self._release(pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's epoch-end update (on the trained weights), then the average back in the model."""
        held = self._held
        self._release(pl_module)
        super().on_train_epoch_end(trainer, pl_module)
        if held:
            self._swap_models(pl_module)
            self._held = True

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Copy the final average into the model, unless best weights were restored already; update BN."""
        if _restored_by_early_stopping(trainer):
            self._held = False  # the model holds the restored weights: nothing to swap back
            return
        self._release(pl_module)
        super().on_train_end(trainer, pl_module)
        if self.update_bn:
            recompute_batch_norm(trainer, pl_module)

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Leave the trained weights in the model when fitting fails or is interrupted."""
        self._release(pl_module)

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Lightning's layout (`state_dict` = the average, `current_model_state` = the trained weights).

        While the average is held in the model the two are the other way round, and are saved accordingly.
        """
        if not self._held or self._average_model is None:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
            return
        inner = self._average_model.state_dict()  # the trained weights, while held
        checkpoint["current_model_state"] = {
            name[7:]: value for name, value in inner.items() if name.startswith("module.")
        }
        checkpoint["averaging_state"] = {
            name: value for name, value in inner.items() if not name.startswith("module.")
        }


class WeightAveraging(_HeldAverage):
    r"""Lightning's `WeightAveraging`, with the average kept in the model through the end-of-epoch checks.

    Everything Lightning's callback does is unchanged: an `AveragedModel` of the LightningModule
    (parameters and, with `use_buffers=True`, buffers) updated after each optimizer step for which
    `should_update` says so, swapped in for validation, copied into the model at the end of fitting and
    saved in checkpoints (`state_dict` holds the average, `current_model_state` the trained weights).

    What differs:

    - The average stays in the model after validation until the next training batch (or the end of
      fitting), so callbacks that act on the validation metric at the end of the epoch see the weights that
      were validated: [`EarlyStopping(restore_best_weights=True)`][reglight.callbacks.EarlyStopping] then
      copies, and restores, **the average of the best epoch**. Lightning's callback swaps back at the end of
      validation, so early stopping would copy the trained weights of that epoch, which were never validated.
    - At the end of fitting the final average is not copied over weights that such a callback has already
      restored (whatever the order of the two callbacks).
    - `update_bn=True` recomputes the batch-norm statistics of the final average with
      `torch.optim.swa_utils.update_bn` over the training batches (Izmailov et al. 2018 do this for SWA;
      with `use_buffers=True` the running statistics are averaged, not recomputed; with
      `use_buffers=False` they are those of the model at `setup`).

    Args:
        device: Where the `AveragedModel` lives (default: the model's device).
        use_buffers: Average the buffers (batch-norm statistics) too.
        update_bn: Recompute the batch-norm statistics of the final weights at the end of fitting.
        **kwargs: `avg_fn` / `multi_avg_fn` of `AveragedModel` (default: an equal average, SWA).

    Examples:
        >>> from torch.optim.swa_utils import get_ema_multi_avg_fn
        >>> averaging = WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(0.99))
        >>> averaging.update_bn
        False
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        update_bn: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(device=device, use_buffers=use_buffers, **kwargs)
        self._init_held(update_bn)


class EMAWeightAveraging(_HeldAverage, _LightningEMA):
    r"""Lightning's `EMAWeightAveraging` (an exponential moving average of the weights, Polyak & Juditsky 1992).

    After each update, $\bar\theta_t = d\,\bar\theta_{t-1} + (1 - d)\,\theta_t$ with the decay $d$, starting from
    $\bar\theta_1 = \theta_1$ (the first update copies the weights). The update schedule
    (`update_every_n_steps`, `update_starting_at_step`, `update_starting_at_epoch`) is Lightning's. It behaves
    as [`WeightAveraging`][reglight.callbacks.WeightAveraging] with respect to early stopping, checkpoints
    and `update_bn`.

    Args:
        device: Where the `AveragedModel` lives (default: the model's device).
        use_buffers: Average the buffers (batch-norm statistics) too.
        decay: The decay $d$ in $[0, 1]$.
        update_every_n_steps: Update after every n-th optimizer step.
        update_starting_at_step: First optimizer step (0-based) that updates the average.
        update_starting_at_epoch: First epoch after which the average is also updated at epoch end.
        update_bn: Recompute the batch-norm statistics of the final weights at the end of fitting.
        **kwargs: Other arguments of `AveragedModel`.

    Raises:
        ValueError: If `decay` is not in $[0, 1]$ or `update_every_n_steps` is not a positive integer.

    Examples:
        >>> EMAWeightAveraging(decay=0.99).update_every_n_steps
        1
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
        update_bn: bool = False,
        **kwargs: Any,
    ) -> None:
        from reglight._validation import check_positive_int, check_probability

        check_probability("decay", decay, inclusive_one=True)
        check_positive_int("update_every_n_steps", update_every_n_steps)
        _LightningEMA.__init__(
            self,
            device=device,
            use_buffers=use_buffers,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
            update_starting_at_epoch=update_starting_at_epoch,
            **kwargs,
        )
        self.decay = float(decay)
        self._init_held(update_bn)


class StochasticWeightAveraging(_LightningSWA):
    r"""Lightning's `StochasticWeightAveraging` (Izmailov et al. 2018), for lazily built models and early stops.

    SWA averages the weights at the start of each epoch from `swa_epoch_start` on,
    $\bar\theta_n = \bar\theta_{n-1} + (\theta_n - \bar\theta_{n-1}) / n$, with the learning rate annealed
    to `swa_lrs` (`SWALR`); after the last epoch it loads the average and, for a model with batch norm,
    runs one more epoch without gradient steps to recompute the batch-norm statistics of the average. The
    validation metrics of that extra epoch are those of the average. What is added:

    - A model that creates its layers in `configure_model` (as reglight's recipes do) is built before
      the average is copied from it; Lightning copies it in `setup`, before the Trainer calls that hook,
      and would then average no weights at all.
    - When training stops before the last epoch (early stopping) after averaging began, the average
      collected so far is loaded into the model at the end of fitting and its batch-norm statistics are
      recomputed over the training batches (`torch.optim.swa_utils.update_bn`); Lightning leaves the last
      trained weights there.

    Args:
        swa_lrs: The SWA learning rate(s), one float or one per parameter group.
        swa_epoch_start: First averaged epoch: an int (1-based epoch) or a fraction of `max_epochs`.
        annealing_epochs: Epochs of the annealing from the current learning rate to `swa_lrs`.
        annealing_strategy: `"cos"` or `"linear"`.
        avg_fn: Averaging function (default: the equal average).
        device: Where the average lives (default: the CPU, as in Lightning).

    Examples:
        >>> StochasticWeightAveraging(swa_lrs=0.01, swa_epoch_start=5).swa_start
        4
    """

    def __init__(
        self,
        swa_lrs: float | list[float],
        swa_epoch_start: int | float = 0.8,
        annealing_epochs: int = 10,
        annealing_strategy: str = "cos",
        avg_fn: Any = None,
        device: torch.device | str | None = "cpu",
    ) -> None:
        from reglight._validation import check_choice

        check_choice("annealing_strategy", annealing_strategy, ("cos", "linear"))
        super().__init__(
            swa_lrs=swa_lrs,
            swa_epoch_start=swa_epoch_start,
            annealing_epochs=annealing_epochs,
            annealing_strategy=annealing_strategy,  # type: ignore[arg-type]
            avg_fn=avg_fn,
            device=torch.device(device) if isinstance(device, str) else device,
        )
        self.finished_early = False

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Build a `configure_model` model first, then let Lightning copy it."""
        if type(pl_module).configure_model is not pl.LightningModule.configure_model:
            pl_module.configure_model()
        super().setup(trainer, pl_module, stage)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's end of SWA; after an early stop, the average so far with recomputed BN statistics."""
        last_epoch = trainer.current_epoch - 1  # Lightning increments it before this hook
        early = (
            self._initialized
            and self._average_model is not None
            and self._max_epochs != -1
            and last_epoch < self.swa_end
        )
        restored = _restored_by_early_stopping(trainer)
        kept = (
            {k: v.detach().clone() for k, v in pl_module.state_dict().items()} if restored else None
        )
        super().on_train_end(trainer, pl_module)
        self.finished_early = bool(early) and not restored
        if (
            kept is not None
        ):  # validated best weights, restored already, win over a never-validated average
            pl_module.load_state_dict(kept)
            return
        if early:
            assert self._average_model is not None
            if self._model_contains_batch_norm and trainer.fit_loop.max_epochs is not None:
                trainer.fit_loop.max_epochs -= 1  # undo the extra batch-norm epoch that never ran
            self.transfer_weights(self._average_model, pl_module)
            recompute_batch_norm(trainer, pl_module)
