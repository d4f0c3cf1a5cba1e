"""What the two scheduling callbacks share: logging the values they set."""

from __future__ import annotations

from collections.abc import Mapping

import lightning.pytorch as pl


def log_scheduled_values(
    pl_module: pl.LightningModule, prefix: str, values: Mapping[str, float], interval: str
) -> None:
    """Log each scheduled value as `prefix + name`: per step with `interval="step"`, else per epoch.

    The values are the same on every process (schedules are pure functions of progress), so averaging
    them across DDP ranks (`sync_dist=True`) changes nothing and keeps Lightning from advising it.
    """
    on_step = interval == "step"
    for name, value in values.items():
        pl_module.log(
            prefix + name,
            value,
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=1,
            sync_dist=True,
        )
