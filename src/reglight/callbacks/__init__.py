"""Lightning callbacks that apply reglight's regularizers during training.

- [`PenaltyHook`][reglight.callbacks.PenaltyHook]: a penalty by gradient or proximal steps.
- [`EarlyStopping`][reglight.callbacks.EarlyStopping]: Lightning's early stopping with Prechelt's criteria.
- [`AugmentationScheduler`][reglight.callbacks.AugmentationScheduler]: schedules the strength of
  [`reglight.transforms.ScheduledTransform`][reglight.transforms.ScheduledTransform]s, in DataLoader workers too.
- [`GradientFilter`][reglight.callbacks.GradientFilter] (Grokfast's slow-gradient amplifier) and
  [`OrthogonalGradient`][reglight.callbacks.OrthogonalGradient] (⊥Grad): gradient filters for grokking.
- [`RegularizationScheduler`][reglight.callbacks.RegularizationScheduler] and its knobs: schedules dropout
  rates, DropPath rates, penalty alpha, weight decay or any module attribute.
"""

from reglight.callbacks.augmentation import AugmentationScheduler
from reglight.callbacks.early_stopping import EarlyStopping
from reglight.callbacks.gradient_filter import GradientFilter, OrthogonalGradient
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
    "EarlyStopping",
    "GradientFilter",
    "Knob",
    "ModuleAttribute",
    "OrthogonalGradient",
    "PenaltyAlpha",
    "PenaltyHook",
    "RegularizationScheduler",
    "WeightDecay",
]
