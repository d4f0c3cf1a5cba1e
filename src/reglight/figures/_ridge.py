r"""Ridge regression in closed form, in the objective scaling of [reglight.linear][reglight.linear].

$$
\min_{w, b}\; \frac{1}{2n}\lVert y - Xw - b\rVert_2^2 + \frac{\alpha}{2}\lVert w\rVert_2^2
$$

is the elastic net of [elastic_net][reglight.linear.elastic_net] at `l1_ratio = 0`, which its active-set
solver does not take (it has no sparsity to exploit); scikit-learn's `Ridge(alpha=n * alpha)` is the same
model. With `alpha = 0` it is minimum-norm least squares.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reglight._threads import torch_threads

__all__ = ["ridge"]


def ridge(X: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Fit ridge with an unpenalized intercept (float64, one thread): returns `(coef, intercept)`.

    Examples:
        >>> X = torch.tensor([[0.0], [1.0], [2.0]])
        >>> w, b = ridge(X, torch.tensor([1.0, 3.0, 5.0]), alpha=0.0)
        >>> round(float(w[0]), 6), round(float(b), 6)
        (2.0, 1.0)
    """
    with torch_threads(1):
        return _ridge(X, y, alpha)


def _ridge(X: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    X = X.to(torch.float64)
    y = y.to(torch.float64).reshape(-1)
    n, p = X.shape
    x_mean, y_mean = X.mean(0), y.mean()
    Xc, yc = X - x_mean, y - y_mean
    if alpha > 0:
        gram = Xc.T @ Xc / n + alpha * torch.eye(p, dtype=X.dtype)
        w = torch.linalg.solve(gram, Xc.T @ yc / n)
    else:
        w = torch.linalg.pinv(Xc) @ yc
    return w, y_mean - x_mean @ w
