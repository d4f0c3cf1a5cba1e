"""Loss-landscape analysis: curvature (Hessian-vector products, top eigenvalues, trace, spectral density),
sharpness and low-dimensional slices of the loss. Pure torch; nothing here imports Lightning.

Every function takes `model`, `loss_fn(model, batch) -> scalar Tensor` and an iterable of `batches` (the
loss is the mean of `loss_fn` over them) and the keywords `include`/`exclude` (which parameters; default
every parameter with `requires_grad`), `train_mode`, `generator` and `reduce` (data parallelism: a function
that sums a tensor over processes). The model is left exactly as found: see
[`preserved`][reglight.landscape.preserved].
"""

from reglight.landscape._core import LossFn, Reduce, preserved, select_landscape_parameters
from reglight.landscape.flatness import SharpnessResult, sharpness
from reglight.landscape.hessian import (
    EigenResult,
    SpectralDensity,
    TraceResult,
    hessian_trace,
    hvp,
    spectral_density,
    top_eigenvalues,
)
from reglight.landscape.plot import plot_contour, plot_slice_1d, plot_surface
from reglight.landscape.slices import (
    Direction,
    Slice1D,
    Slice2D,
    random_directions,
    slice_1d,
    slice_2d,
)

__all__ = [
    "Direction",
    "EigenResult",
    "LossFn",
    "Reduce",
    "SharpnessResult",
    "Slice1D",
    "Slice2D",
    "SpectralDensity",
    "TraceResult",
    "hessian_trace",
    "hvp",
    "plot_contour",
    "plot_slice_1d",
    "plot_surface",
    "preserved",
    "random_directions",
    "select_landscape_parameters",
    "sharpness",
    "slice_1d",
    "slice_2d",
    "spectral_density",
    "top_eigenvalues",
]
