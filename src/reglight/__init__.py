"""reglight: regularization tools for PyTorch Lightning.

Subpackages:

- `reglight.nn`: dropout family, normalization layers, Monte-Carlo dropout (pure torch).
- `reglight.penalties`: L1 / L2 / elastic-net / group-lasso penalties and their
  proximal operators (pure torch).
- `reglight.linear`: full-batch sparse linear solvers (lasso / elastic-net paths,
  cross-validation, stability selection).
- `reglight.transforms`: data transforms whose augmentation strength a callback schedules (no Lightning).
- `reglight.schedules`: schedule shapes, pure functions of training progress.
- `reglight.callbacks`: Lightning callbacks (penalty hook, early stopping, augmentation and
  regularization schedules).
- `reglight.recipes`: ready LightningModules and DataModules run by `reglight run RECIPE`.
- `reglight.ablation`: the runner behind `reglight ablate RECIPE` (variants declared in the recipe's YAML).

The shared argument names (`alpha`, `l1_ratio`, `p`, `apply_prob`, `include` / `exclude`, ...) mean one
thing everywhere; the glossary of the documentation lists them.

Examples:
    >>> import reglight
    >>> isinstance(reglight.__version__, str)
    True
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
