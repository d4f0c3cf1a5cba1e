"""The data side of augmentation scheduling, in pure torch and torchvision (no Lightning).

- [`ScheduledTransform`][reglight.transforms.ScheduledTransform] wraps an augmentation so that its magnitude
  and apply probability can change during training and reach DataLoader workers.
- [`MAGNITUDE_RULES`][reglight.transforms.MAGNITUDE_RULES] and
  [`register_magnitude_rule`][reglight.transforms.register_magnitude_rule] say how a magnitude in $[0, 1]$
  sets a transform's parameters.
- [`set_group_values`][reglight.transforms.set_group_values] drives every wrapper of a group; the callback
  [`AugmentationScheduler`][reglight.callbacks.AugmentationScheduler] does so on a schedule.
"""

from reglight.transforms.magnitude import (
    MAGNITUDE_RULES,
    MagnitudeRule,
    register_magnitude_rule,
    rule_for,
)
from reglight.transforms.scheduled import (
    SCHEDULED_QUANTITIES,
    ScheduledTransform,
    clear_group_values,
    scheduled_transforms,
    set_group_values,
)

__all__ = [
    "MAGNITUDE_RULES",
    "SCHEDULED_QUANTITIES",
    "MagnitudeRule",
    "ScheduledTransform",
    "clear_group_values",
    "register_magnitude_rule",
    "rule_for",
    "scheduled_transforms",
    "set_group_values",
]
