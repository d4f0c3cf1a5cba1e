"""Lightning callbacks that apply reglight's regularizers during training.

- [`PenaltyHook`][reglight.callbacks.PenaltyHook]: a penalty by gradient or proximal steps.
- [`EMAWeightAveraging`][reglight.callbacks.EMAWeightAveraging],
  [`WeightAveraging`][reglight.callbacks.WeightAveraging] and
  [`StochasticWeightAveraging`][reglight.callbacks.StochasticWeightAveraging]: Lightning's weight averaging,
  made to agree with best-weight restoring and with models built in `configure_model`.
- [`EarlyStopping`][reglight.callbacks.EarlyStopping]: Lightning's early stopping with Prechelt's criteria.
- [`AugmentationScheduler`][reglight.callbacks.AugmentationScheduler]: schedules the strength of
  [`reglight.transforms.ScheduledTransform`][reglight.transforms.ScheduledTransform]s, in DataLoader workers too.
- [`RegularizationScheduler`][reglight.callbacks.RegularizationScheduler] and its knobs: schedules dropout
  rates, DropPath rates, penalty alpha, weight decay or any module attribute.
"""

from reglight.callbacks.augmentation import AugmentationScheduler
from reglight.callbacks.averaging import (
    EMAWeightAveraging,
    StochasticWeightAveraging,
    WeightAveraging,
)
from reglight.callbacks.early_stopping import EarlyStopping
from reglight.callbacks.penalty import PenaltyHook
from reglight.callbacks.regularization import (
    DropoutRate,
    DropPathRates,
    Knob,
    ModuleAttribute,
    PenaltyAlpha,
    RegularizationScheduler,
    WeightDecay,
)

__all__ = [
    "AugmentationScheduler",
    "DropPathRates",
    "DropoutRate",
    "EMAWeightAveraging",
    "EarlyStopping",
    "Knob",
    "ModuleAttribute",
    "PenaltyAlpha",
    "PenaltyHook",
    "RegularizationScheduler",
    "StochasticWeightAveraging",
    "WeightAveraging",
    "WeightDecay",
]
