"""`log=False` on our callbacks survives Lightning's attaching of `callback.log` at fit start.

Lightning's callback connector sets `callback.log = lightning_module.log` (and `log_dict`) on every
callback when `fit` starts, so a callback that kept its switch in `self.log` would always find it truthy.
These tests pin both sides: Lightning still overwrites the attribute, and our switches still work.
"""

from __future__ import annotations

from typing import Any

import pytest
from compat_models import Scripted, fit
from lightning.pytorch.callbacks import Callback
from torch import nn

from reglight.callbacks import (
    AugmentationScheduler,
    DropoutRate,
    PenaltyHook,
    RegularizationScheduler,
)
from reglight.penalties import L1
from reglight.schedules import Linear


class _Plain(Callback):
    pass


class _WithDropout(Scripted):
    def __init__(self) -> None:
        super().__init__([1.0], keys=("val/x",))
        self.drop = nn.Dropout(0.0)  # scheduled; not used by the forward pass


def test_lightning_still_overwrites_callback_log() -> None:
    # the reason our switch is not stored as `log`; if this fails, Lightning changed the behaviour
    plain = _Plain()
    fit(Scripted([1.0], keys=("val/x",)), [plain], max_epochs=1)
    assert callable(getattr(plain, "log", None))


def _callbacks(log: bool) -> list[Any]:
    return [
        PenaltyHook(L1(0.01), include="net.0.weight", log=log),
        AugmentationScheduler(magnitude=Linear(0.0, 1.0, duration=2), log=log),
        RegularizationScheduler([DropoutRate(Linear(0.0, 0.5, duration=2))], log=log),
    ]


@pytest.mark.parametrize("log", [True, False])
def test_log_flag_of_each_callback_is_honoured(log: bool) -> None:
    callbacks = _callbacks(log)
    trainer = fit(_WithDropout(), callbacks, max_epochs=2, log_every_n_steps=1)
    ours = {k for k in trainer.callback_metrics if k.split("/")[0] in ("penalty", "aug", "reg")}
    if log:
        assert {"penalty/value", "aug/magnitude"} <= ours
        assert any(k.startswith("reg/") for k in ours)
    else:
        assert ours == set()
