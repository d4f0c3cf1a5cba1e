"""reglight.optim: flat-minima optimizers (SAM, ASAM) that work through Lightning's automatic optimization.

Pure torch: nothing here imports Lightning. The Lightning-native form, for a model whose optimizer cannot be
changed, is [`SAMCallback`][reglight.callbacks.SAMCallback].

- [`SAM`][reglight.optim.SAM]: sharpness-aware minimization around any torch optimizer (`adaptive=True`: ASAM).
- [`perturbation_groups`][reglight.optim.perturbation_groups] and
  [`NORM_AND_BIAS`][reglight.optim.NORM_AND_BIAS]: which parameters are perturbed.
- [`frozen_running_stats`][reglight.optim.frozen_running_stats]: batch-norm statistics updated by one pass only.
- [`sam_perturbation`][reglight.optim.sam_perturbation]: the ascent step as a function.
"""

from reglight.optim.functional import PerturbationGroup, apply_perturbation, sam_perturbation
from reglight.optim.running_stats import frozen_running_stats, running_stat_buffers
from reglight.optim.sam import NORM_AND_BIAS, SAM, perturbation_groups

__all__ = [
    "NORM_AND_BIAS",
    "SAM",
    "PerturbationGroup",
    "apply_perturbation",
    "frozen_running_stats",
    "perturbation_groups",
    "running_stat_buffers",
    "sam_perturbation",
]
