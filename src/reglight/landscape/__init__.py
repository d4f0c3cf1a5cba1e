"""Loss-landscape analysis: curvature (Hessian-vector products, top eigenvalues, trace, spectral density),
sharpness and low-dimensional slices of the loss. Pure torch; nothing here imports Lightning.

Every function takes `model`, `loss_fn(model, batch) -> scalar Tensor` and an iterable of `batches` (the
loss is the mean of `loss_fn` over them) and the keywords `include`/`exclude` (which parameters; default
every parameter with `requires_grad`), `train_mode`, `generator` and `reduce` (data parallelism: a function
that sums a tensor over processes). The model is left exactly as found: see
[`preserved`][reglight.landscape.preserved].
"""

from reglight.landscape._core import LossFn, Reduce, preserved, select_landscape_parameters
from reglight.landscape.hessian import (
    EigenResult,
    SpectralDensity,
    TraceResult,
    hessian_trace,
    hvp,
    spectral_density,
    top_eigenvalues,
)

__all__ = [
    "EigenResult",
    "LossFn",
    "Reduce",
    "SpectralDensity",
    "TraceResult",
    "hessian_trace",
    "hvp",
    "preserved",
    "select_landscape_parameters",
    "spectral_density",
    "top_eigenvalues",
]
