r"""Training-split statistics: the data in memory, standardization, and the step size of ISTA.

Standardization (the lasso needs features on one scale, or the penalty favours large-unit
features): $z = (x - \mu) / s$ with the training split's mean $\mu$ and population standard
deviation $s$ (`ddof=0`, scikit-learn's `StandardScaler`); constant columns keep $s = 1$.

Step size: the gradient of the data term is Lipschitz with constant

$$
L = c \cdot \max\Bigl(1, \frac{\sigma_{\max}(Z)^2}{n}\Bigr),
$$

$c = 1$ for the squared loss, $1/4$ for the logistic loss and $1/2$ for the softmax
cross-entropy (Böhning's bound); the 1 is the intercept's block (the columns of $Z$ are centred,
so intercept and coefficients decouple in the Hessian bound). Proximal gradient descent with
step $1/L$ decreases the objective monotonically (Beck & Teboulle 2009).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = ["dataset_tensors", "lipschitz_constant", "standardization"]

_LOSS_CURVATURE = {"regression": 1.0, "binary": 0.25, "multiclass": 0.5}


def dataset_tensors(dataset: Dataset, batch_size: int = 4096) -> tuple[Tensor, Tensor]:
    """All `(x, y)` pairs of a map-style dataset as two tensors (`x` in float64).

    Args:
        dataset: A dataset of `(x, y)` pairs (a `TensorDataset` is used as it is).
        batch_size: Rows read at a time otherwise.

    Returns:
        `(X, y)`: `X` float64 of shape `(n, p)`; `y` as stored.
    """
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        x, y = dataset.tensors[0], dataset.tensors[1]
    else:
        xs, ys = [], []
        for xb, yb in DataLoader(dataset, batch_size=batch_size, shuffle=False):  # type: ignore[arg-type]
            xs.append(torch.as_tensor(xb))
            ys.append(torch.as_tensor(yb))
        x, y = torch.cat(xs), torch.cat(ys)
    return x.detach().to(torch.float64).reshape(len(x), -1), y.detach()


def standardization(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and population standard deviation of each column (1 for constant columns).

    Args:
        x: `(n, p)` training features.

    Returns:
        `(mean, scale)`, each `(p,)` in float64.

    Examples:
        >>> mean, scale = standardization(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
        >>> mean.tolist(), scale.tolist()
        ([2.0, 5.0], [1.0, 1.0])
    """
    x = x.to(torch.float64)
    mean = x.mean(0)
    scale = x.std(0, correction=0)
    scale = torch.where(scale > 1e-12 * mean.abs().clamp_min(1.0), scale, torch.ones_like(scale))
    return mean, scale


def lipschitz_constant(z: Tensor, task: str) -> float:
    r"""Lipschitz constant of the gradient of the mean loss over `[b, W]` (module docstring).

    Args:
        z: `(n, p)` standardized training features.
        task: `"regression"`, `"binary"` or `"multiclass"`.

    Returns:
        `L`; `1/L` is the step size of (F)ISTA.

    Examples:
        >>> z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # σ_max(Z)² / n = 2
        >>> lipschitz_constant(z, "regression"), lipschitz_constant(z, "binary")
        (2.0, 0.5)
    """
    n = max(z.shape[0], 1)
    top = float(torch.linalg.matrix_norm(z.to(torch.float64), ord=2)) ** 2 / n if z.numel() else 0.0
    return _LOSS_CURVATURE[task] * max(1.0, top)
