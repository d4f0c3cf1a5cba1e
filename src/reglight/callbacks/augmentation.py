r"""AugmentationScheduler: schedule the strength of augmentations over training, in DataLoader workers too.

The data side (the [`ScheduledTransform`][reglight.transforms.ScheduledTransform] wrapper, the magnitude
rules, the shared memory that reaches the workers) lives in [`reglight.transforms`][reglight.transforms],
which does not import Lightning; this callback only decides, from the epoch or the optimizer step, which
values to write there and when.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from reglight._validation import check_choice
from reglight.callbacks._scheduled import log_scheduled_values
from reglight.schedules import Schedule, as_schedule
from reglight.transforms import (
    MAGNITUDE_RULES,
    SCHEDULED_QUANTITIES,
    ScheduledTransform,
    clear_group_values,
    scheduled_transforms,
    set_group_values,
)

__all__ = ["AugmentationScheduler"]

ScheduleLike = Schedule | float | Callable[[float], float]


class AugmentationScheduler(Callback):
    r"""Schedule the magnitude and/or the apply probability of [`ScheduledTransform`][reglight.transforms.ScheduledTransform]s.

    Wrap the augmentation inside your `Dataset` (or LightningModule, for the device-side batch path) in a
    `ScheduledTransform`; the scheduler drives every live wrapper of its `group` in the process (or the
    `transforms` it is given), so the dataset and the callback can be built separately, from a LightningCLI
    config for instance. Values are written to the wrappers' shared memory:

    - `interval="epoch"`: before the epoch's DataLoader iterator starts (the value of epoch $e+1$ is written
      at the end of epoch $e$, and the first epoch's at set-up / checkpoint loading), so every worker,
      persistent or not, augments every sample of epoch $e$ with the value of epoch $e$.
    - `interval="step"`: at each optimizer step. The device-side batch path sees the value of the very step;
      workers prepare batches ahead of time (`num_workers · prefetch_factor` of them), so in workers a
      per-step value takes effect with that lag.

    The value is a pure function of the epoch / step, identical on every DDP rank; the checkpoint stores the
    value of the step at which training will resume, which is written to the wrappers as soon as the
    checkpoint is loaded, before the first batches are prefetched. Logged as `prefix + "magnitude"` and
    `prefix + "apply_prob"`.

    Args:
        magnitude: magnitude schedule, values in $[0, 1]$ (`None`: leave the magnitude alone).
        apply_prob: apply-probability schedule, values in $[0, 1]$ (`None`: leave it alone).
        interval: `"epoch"` or `"step"`.
        group: the `ScheduledTransform` group to drive.
        transforms: explicit wrappers to drive instead of the group's live ones.
        log: log the current values.
        prefix: prefix of the logged names (`aug/magnitude`, `aug/apply_prob`).

    Raises:
        ValueError: when both schedules are `None`, a schedule leaves $[0, 1]$, `interval` is unknown or
            `group` is empty.
        TypeError: for a schedule that is not a number, a `Schedule` or a callable, or a `transforms` entry
            that is not a `ScheduledTransform`.

    Examples:
        >>> import torch
        >>> from torchvision.transforms import v2
        >>> from reglight.schedules import Linear
        >>> from reglight.transforms import ScheduledTransform
        >>> aug = ScheduledTransform(v2.RandAugment(magnitude=20), group="doc")
        >>> sched = AugmentationScheduler(magnitude=Linear(0.0, 1.0, duration=10), group="doc")
        >>> sched.apply(5)  # what the callback does at epoch 5
        {'magnitude': 0.5}
        >>> aug.transform.magnitude  # (in the workers: at their next sample)
        20
        >>> aug(torch.zeros(3, 8, 8, dtype=torch.uint8)).shape, aug.transform.magnitude
        (torch.Size([3, 8, 8]), 10)
    """

    def __init__(
        self,
        magnitude: ScheduleLike | None = None,
        apply_prob: ScheduleLike | None = None,
        interval: str = "epoch",
        group: str = "default",
        transforms: Sequence[ScheduledTransform] | None = None,
        log: bool = True,
        prefix: str = "aug/",
    ) -> None:
        super().__init__()
        if magnitude is None and apply_prob is None:
            raise ValueError(
                "AugmentationScheduler needs a `magnitude` and/or an `apply_prob` schedule, got neither"
            )
        self.schedules: dict[str, Schedule] = {}
        for name, spec in zip(SCHEDULED_QUANTITIES, (magnitude, apply_prob)):
            if spec is None:
                continue
            sched = as_schedule(spec, name)
            bounds = sched.bounds()
            if bounds is not None and (bounds[0] < 0.0 or bounds[1] > 1.0):
                raise ValueError(
                    f"`{name}` schedule must stay in [0, 1], but {sched!r} takes values in "
                    f"[{bounds[0]}, {bounds[1]}]"
                )
            self.schedules[name] = sched
        self.interval = check_choice("interval", interval, ("epoch", "step"))
        if not isinstance(group, str) or not group:
            raise ValueError(f"`group` must be a non-empty string, got {group!r}")
        self.group = group
        if transforms is not None:
            for t in transforms:
                if not isinstance(t, ScheduledTransform):
                    raise TypeError(f"`transforms` must be ScheduledTransform instances, got {t!r}")
        self.transforms = None if transforms is None else list(transforms)
        # not `self.log`: Lightning replaces every callback's `log` with the module's `log` method at fit start
        self.log_values = bool(log)
        self.prefix = prefix
        self.values: dict[str, float] = {}
        self._trainer: pl.Trainer | None = None
        self._finished_epoch = -1  # last epoch whose `on_train_epoch_end` ran

    @property
    @override
    def state_key(self) -> str:
        """Checkpoint key, unique per group and scheduled quantities (two schedulers may share a group)."""
        return self._generate_state_key(group=self.group, schedules=sorted(self.schedules))

    # ---------------------------------------------------------------- writing values
    def targets(self) -> list[ScheduledTransform]:
        """The wrappers this scheduler drives now.

        Returns:
            The explicit `transforms`, or the live wrappers of `group` in this process.
        """
        return (
            list(self.transforms)
            if self.transforms is not None
            else scheduled_transforms(self.group)
        )

    def values_at(self, t: float) -> dict[str, float]:
        """The scheduled values at progress `t`, checked to lie in $[0, 1]$.

        Args:
            t: epoch or optimizer step.

        Returns:
            `{"magnitude": ..., "apply_prob": ...}` for the scheduled quantities.

        Raises:
            ValueError: if a schedule leaves $[0, 1]$.
        """
        out = {}
        for name, sched in self.schedules.items():
            value = sched(t)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` schedule gave {value} at t={t}, outside [0, 1]")
            out[name] = value
        return out

    def apply(self, t: float) -> dict[str, float]:
        """Write the values at progress `t` to every target wrapper (and to wrappers created later).

        Args:
            t: epoch or optimizer step.

        Returns:
            The values written.
        """
        return self._write(self.values_at(t))

    def _write(self, values: dict[str, float]) -> dict[str, float]:
        if (
            self.transforms is None
        ):  # two schedulers may share a group: one for magnitude, one for apply_prob
            set_group_values(self.group, values)
        else:
            for t in self.transforms:
                for name, value in values.items():
                    setattr(t, name, value)
        self.values = dict(values)
        return dict(values)

    def _progress(self, trainer: pl.Trainer) -> int:
        return trainer.current_epoch if self.interval == "epoch" else trainer.global_step

    def _resume_progress(self, trainer: pl.Trainer) -> int:
        """The epoch / step at which a run restored from a checkpoint saved now continues.

        A checkpoint written in `on_train_epoch_end` (where `ModelCheckpoint` saves) resumes at the next
        epoch, though `trainer.current_epoch` counts the finishing one until the hook returns.
        """
        if self.interval == "step":
            return trainer.global_step
        return max(trainer.current_epoch, self._finished_epoch + 1)

    def _log(self, pl_module: pl.LightningModule) -> None:
        if self.log_values:
            log_scheduled_values(pl_module, self.prefix, self.values, self.interval)

    # ---------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write the values of the run's start before any DataLoader iterator exists."""
        self._trainer = trainer
        self._finished_epoch = -1
        if stage == "fit":
            self.apply(self._progress(trainer))

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check the targets; write the values of the (possibly restored) epoch / step."""
        targets = self.targets()
        if not targets:
            rank_zero_warn(
                f"AugmentationScheduler found no ScheduledTransform in group {self.group!r}: wrap the "
                "augmentation of your Dataset in reglight.transforms.ScheduledTransform(...).",
                category=RuntimeWarning,
            )
        if "magnitude" in self.schedules:
            for t in targets:
                if not t.supports_magnitude:
                    raise ValueError(
                        f"{t.transform!r} has no transform whose strength a magnitude can set (supported: "
                        f"{', '.join(sorted(c.__name__ for c in MAGNITUDE_RULES))}, or a `magnitude` "
                        "property); schedule `apply_prob` instead or use "
                        "reglight.transforms.register_magnitude_rule()"
                    )
        self.apply(self._progress(trainer))

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Epoch interval: write and log the values of this epoch."""
        if self.interval == "epoch":
            self.apply(trainer.current_epoch)
            self._log(pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Epoch interval: write the next epoch's values before its iterator (and workers) start."""
        self._finished_epoch = trainer.current_epoch
        if self.interval == "epoch":
            values = self.values_at(trainer.current_epoch + 1)
            logged = dict(self.values)
            self._write(values)
            self.values = logged  # what this epoch used, for the loggers and callback_metrics

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Step interval: write and log the values of this optimizer step."""
        if self.interval == "step":
            self.apply(trainer.global_step)
            self._log(pl_module)

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Step interval: write the next step's values before the next batch reaches the device."""
        if self.interval == "step":
            self.apply(trainer.global_step)  # already counts the optimizer step just taken

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Forget the group's values so wrappers created later start from their own."""
        if stage == "fit" and self.transforms is None:
            clear_group_values(self.group)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The values at the epoch / step where a resumed run continues, and that progress."""
        if self._trainer is None:
            return {"values": dict(self.values), "progress": None}
        progress = self._resume_progress(self._trainer)
        return {"values": self.values_at(progress), "progress": progress}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Write the saved values at once: the resumed run's first batches are prefetched before any hook.

        Args:
            state_dict: the saved state.
        """
        values = {k: v for k, v in state_dict.get("values", {}).items() if k in self.schedules}
        if values:
            self._write(values)
