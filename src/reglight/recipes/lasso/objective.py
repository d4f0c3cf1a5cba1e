r"""The recipe's objective in scikit-learn's scaling, and the reglight penalty that implements it.

For `n` training rows of standardized features $z_i$, coefficients $W$ (one row per output),
an unpenalized intercept $b$, $\alpha \ge 0$ and $\rho$ = `l1_ratio` $\in (0, 1]$:

$$
F(W, b) = \frac{1}{n}\sum_{i=1}^n \ell(y_i, W z_i + b)
    + \alpha\rho\,\lVert W\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert W\rVert_F^2
$$

with $\ell(y, \eta) = \tfrac12 (y-\eta)^2$ for regression (scikit-learn's `Lasso` /
`ElasticNet(alpha, l1_ratio)`), the logistic loss for two classes and the softmax cross-entropy
for more (scikit-learn's `LogisticRegression(l1_ratio=ρ, C=1/(nα))`).

The penalty is exactly [`ElasticNet`][reglight.penalties.ElasticNet]`(alpha, l1_ratio)`, which
uses scikit-learn's parametrization; the recipe hands it to
[`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook] as it is.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["data_loss"]


def data_loss(output: Tensor, target: Tensor, task: str, reduction: str = "mean") -> Tensor:
    r"""The data term $\ell$ of the objective: $\tfrac12(y-\eta)^2$, logistic or softmax loss.

    Args:
        output: `(n,)` predictions / logits (regression, binary) or `(n, K)` logits.
        target: `(n,)` targets (float) or class codes (int).
        task: `"regression"`, `"binary"` or `"multiclass"`.
        reduction: `"mean"` or `"sum"`.

    Returns:
        A scalar tensor.

    Examples:
        >>> import torch
        >>> data_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]), "regression")
        tensor(1.2500)
    """
    if task == "regression":
        loss = 0.5 * (output - target.to(output.dtype)).square()
        return loss.mean() if reduction == "mean" else loss.sum()
    if task == "binary":
        return F.binary_cross_entropy_with_logits(
            output, target.to(output.dtype), reduction=reduction
        )
    return F.cross_entropy(output, target.long(), reduction=reduction)
