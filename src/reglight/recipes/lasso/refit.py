r"""The relaxed-lasso refit: the model refitted on the selected features only.

The lasso shrinks every kept coefficient towards zero by about $\alpha$; refitting the
selected columns with no (or a light) penalty removes that bias while keeping the selection
(Meinshausen 2007, *Relaxed Lasso*; Belloni & Chernozhukov 2013, *post-lasso OLS*). The refit
minimizes, over the selected columns $Z_S$ of the standardized training features,

$$
\frac{1}{n}\sum_{i=1}^n \ell(y_i, W_S z_{i,S} + b) + \frac{\gamma}{2}\lVert W_S\rVert_F^2
$$

with the recipe's loss $\ell$ and `ridge` $\gamma$: least squares has a closed form
(minimum-norm for rank-deficient $Z_S$ when $\gamma = 0$); the logistic and softmax losses are
minimized with L-BFGS (a small $\gamma$ keeps separable classes finite).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["refit_least_squares", "refit_logistic", "relaxed_refit"]


def refit_least_squares(z: Tensor, y: Tensor, ridge: float = 0.0) -> tuple[Tensor, Tensor]:
    r"""Least squares (ridge when `ridge > 0`) with an unpenalized intercept.

    Minimizes $\frac{1}{2n}\lVert y - Zw - b\rVert^2 + \frac{\gamma}{2}\lVert w\rVert^2$.

    Args:
        z: `(n, k)` features (the selected columns), any `k >= 0`.
        y: `(n,)` targets.
        ridge: $\gamma \ge 0$.

    Returns:
        `(w, b)`: `(k,)` coefficients and a 0-d intercept, float64.

    Examples:
        >>> z = torch.tensor([[0.0], [1.0], [2.0]])
        >>> w, b = refit_least_squares(z, torch.tensor([1.0, 3.0, 5.0]))
        >>> round(float(w[0]), 6), round(float(b), 6)
        (2.0, 1.0)
    """
    z = z.to(torch.float64)
    y = y.to(torch.float64).reshape(-1)
    n, k = z.shape
    z_mean, y_mean = z.mean(0), y.mean()
    if k == 0:
        return z.new_zeros(0), y_mean
    zc, yc = z - z_mean, y - y_mean
    if ridge > 0:
        gram = zc.T @ zc / n + ridge * torch.eye(k, dtype=z.dtype, device=z.device)
        w = torch.linalg.solve(gram, zc.T @ yc / n)
    else:
        w = torch.linalg.pinv(zc) @ yc
    return w, y_mean - z_mean @ w


def refit_logistic(
    z: Tensor,
    y: Tensor,
    n_outputs: int,
    ridge: float = 1e-3,
    init: tuple[Tensor, Tensor] | None = None,
    max_iter: int = 200,
) -> tuple[Tensor, Tensor]:
    r"""Logistic (`n_outputs == 1`) or multinomial regression on `z` by L-BFGS, float64.

    Minimizes the mean logistic / softmax loss $+ \frac{\gamma}{2}\lVert W\rVert_F^2$ with an
    unpenalized intercept.

    Args:
        z: `(n, k)` features.
        y: `(n,)` class codes.
        n_outputs: 1 for two classes (one logit), else the number of classes.
        ridge: $\gamma \ge 0$.
        init: Starting `(W, b)` of shapes `(n_outputs, k)` and `(n_outputs,)`.
        max_iter: L-BFGS iterations.

    Returns:
        `(W, b)` of shapes `(n_outputs, k)` and `(n_outputs,)`.
    """
    z = z.to(torch.float64)
    k = z.shape[1]
    if init is None:
        weight = z.new_zeros(n_outputs, k)
        bias = z.new_zeros(n_outputs)
    else:
        weight = init[0].detach().to(z).clone().reshape(n_outputs, k)
        bias = init[1].detach().to(z).clone().reshape(n_outputs)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    target = y.reshape(-1)

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = z @ weight.T + bias
        if n_outputs == 1:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(z.dtype))
        else:
            loss = F.cross_entropy(logits, target.long())
        loss = loss + 0.5 * ridge * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def relaxed_refit(
    z: Tensor,
    y: Tensor,
    task: str,
    selected: Sequence[int],
    n_outputs: int,
    ridge: float,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The relaxed-lasso refit of the `selected` columns of `z`, as full-width coefficients.

    Args:
        z: `(n, p)` standardized training features.
        y: `(n,)` targets or class codes.
        task: `"regression"`, `"binary"` or `"multiclass"`.
        selected: indices of the selected features.
        n_outputs: rows of the coefficient matrix (1, or the number of classes).
        ridge: $\gamma \ge 0$.
        init: classification: the lasso's `(W, b)` over all `p` features, to start L-BFGS from.

    Returns:
        `(W, b)` in float64, `W` of shape `(n_outputs, p)` with zeros outside `selected`.

    Examples:
        >>> z = torch.tensor([[0.0, 5.0], [1.0, -1.0], [2.0, 0.0]], dtype=torch.float64)
        >>> w, b = relaxed_refit(z, torch.tensor([1.0, 3.0, 5.0]), "regression", [0], 1, 0.0)
        >>> [round(v, 6) for v in w[0].tolist()], round(float(b[0]), 6)
        ([2.0, 0.0], 1.0)
    """
    z = z.to(torch.float64)
    idx = torch.as_tensor(list(selected), dtype=torch.long)
    zs = z[:, idx]
    weight = torch.zeros(n_outputs, z.shape[1], dtype=torch.float64)
    if task == "regression":
        w, b = refit_least_squares(zs, y, ridge)
        weight[0, idx] = w
        return weight, b.reshape(1)
    start = None if init is None else (init[0][:, idx], init[1])
    w, bias = refit_logistic(zs, y, n_outputs, ridge, start)
    weight[:, idx] = w
    return weight, bias
