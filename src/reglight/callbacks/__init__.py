"""Lightning callbacks that apply reglight's regularizers during training.

- [`PenaltyHook`][reglight.callbacks.PenaltyHook]: a penalty by gradient or proximal steps.
- [`EMAWeightAveraging`][reglight.callbacks.EMAWeightAveraging],
  [`WeightAveraging`][reglight.callbacks.WeightAveraging] and
  [`StochasticWeightAveraging`][reglight.callbacks.StochasticWeightAveraging]: Lightning's weight averaging,
  made to agree with best-weight restoring and with models built in `configure_model`.
- [`EarlyStopping`][reglight.callbacks.EarlyStopping]: Lightning's early stopping with Prechelt's criteria.
- [`AugmentationScheduler`][reglight.callbacks.AugmentationScheduler]: schedules the strength of
  [`reglight.transforms.ScheduledTransform`][reglight.transforms.ScheduledTransform]s, in DataLoader workers too.
- [`GradientFilter`][reglight.callbacks.GradientFilter] (Grokfast's slow-gradient amplifier) and
  [`OrthogonalGradient`][reglight.callbacks.OrthogonalGradient] (⊥Grad): gradient filters for grokking.
- [`RegularizationScheduler`][reglight.callbacks.RegularizationScheduler] and its knobs: schedules dropout
  rates, DropPath rates, penalty alpha, weight decay or any module attribute.
- [`LossLandscapeProbe`][reglight.callbacks.LossLandscapeProbe]: logs the top Hessian eigenvalue, trace and
  sharpness of the training loss every few epochs, without changing training.
- [`SAMCallback`][reglight.callbacks.SAMCallback]: sharpness-aware minimization (SAM, ASAM) without changing
  the optimizer; [`SAMRho`][reglight.callbacks.SAMRho] schedules its radius.
"""

from reglight.callbacks.augmentation import AugmentationScheduler
from reglight.callbacks.averaging import (
    EMAWeightAveraging,
    StochasticWeightAveraging,
    WeightAveraging,
)
from reglight.callbacks.early_stopping import EarlyStopping
from reglight.callbacks.gradient_filter import GradientFilter, OrthogonalGradient
from reglight.callbacks.landscape import LossLandscapeProbe
from reglight.callbacks.penalty import PenaltyHook
from reglight.callbacks.regularization import (
    DropoutRate,
    DropPathRates,
    Knob,
    ModuleAttribute,
    PenaltyAlpha,
    RegularizationScheduler,
    SAMRho,
    WeightDecay,
)
from reglight.callbacks.sam import SAMCallback

__all__ = [
    "AugmentationScheduler",
    "DropPathRates",
    "DropoutRate",
    "EMAWeightAveraging",
    "EarlyStopping",
    "GradientFilter",
    "Knob",
    "LossLandscapeProbe",
    "ModuleAttribute",
    "OrthogonalGradient",
    "PenaltyAlpha",
    "PenaltyHook",
    "RegularizationScheduler",
    "SAMCallback",
    "SAMRho",
    "StochasticWeightAveraging",
    "WeightAveraging",
    "WeightDecay",
]
