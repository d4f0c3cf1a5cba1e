"""reglight: regularization tools for PyTorch Lightning.

Subpackages:

- :mod:`reglight.nn` -- dropout family, normalization layers, Monte-Carlo dropout (pure torch).
- :mod:`reglight.penalties` -- L1 / L2 / elastic-net / group-lasso penalties and proximal operators (pure torch).
- :mod:`reglight.linear` -- full-batch sparse linear solvers (lasso / elastic-net paths, CV, stability selection).
- :mod:`reglight.callbacks` -- Lightning callbacks (penalty hooks, early stopping, schedules, ...).
- :mod:`reglight.recipes` -- ready LightningModules and DataModules run by ``reglight run RECIPE``.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
