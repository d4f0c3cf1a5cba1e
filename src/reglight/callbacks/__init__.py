"""reglight.callbacks."""

from reglight.callbacks.augmentation import AugmentationScheduler as AugmentationScheduler
from reglight.callbacks.augmentation import ScheduledTransform as ScheduledTransform
from reglight.callbacks.early_stopping import EarlyStopping as EarlyStopping
from reglight.callbacks.penalty import PenaltyHook as PenaltyHook
from reglight.callbacks.regularization import RegularizationScheduler as RegularizationScheduler
