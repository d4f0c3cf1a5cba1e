r"""The recipe's objective in scikit-learn's scaling, and the reglight penalty that implements it.

For ``n`` training rows of standardized features $z_i$, coefficients $W$ (one row per output),
an unpenalized intercept $b$, $\alpha \ge 0$ and $\rho$ = ``l1_ratio`` $\in (0, 1]$:

$$
F(W, b) = \frac{1}{n}\sum_{i=1}^n \ell(y_i, W z_i + b)
    + \alpha\rho\,\lVert W\rVert_1 + \frac{\alpha(1-\rho)}{2}\lVert W\rVert_F^2
$$

with $\ell(y, \eta) = \tfrac12 (y-\eta)^2$ for regression (scikit-learn's ``Lasso`` /
``ElasticNet(alpha, l1_ratio)``), the logistic loss for two classes and the softmax cross-entropy
for more (scikit-learn's ``LogisticRegression(l1_ratio=ρ, C=1/(nα))``).

[`ElasticNet`][reglight.penalties.ElasticNet] is $\lambda(a\lVert W\rVert_1 + (1-a)\lVert W\rVert_2^2)$;
matching both terms, $\lambda a = \alpha\rho$ and $\lambda(1-a) = \alpha(1-\rho)/2$, gives

$$
\lambda = \frac{\alpha(1+\rho)}{2}, \qquad a = \frac{2\rho}{1+\rho}
$$

(``ρ = 1`` is [`L1`][reglight.penalties.L1] with $\lambda = \alpha$).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from reglight._validation import check_in_range, check_nonnegative
from reglight.penalties import L1, ElasticNet, Penalty

__all__ = ["data_loss", "penalty_strength", "penalty_value", "sklearn_penalty"]


def penalty_strength(alpha: float, l1_ratio: float) -> tuple[float, float]:
    """The ``(strength, l1_ratio)`` of reglight's `ElasticNet` equal to scikit-learn's penalty.

    Args:
        alpha: scikit-learn's ``alpha`` (>= 0).
        l1_ratio: scikit-learn's ``l1_ratio`` in (0, 1].

    Returns:
        ``(α(1+ρ)/2, 2ρ/(1+ρ))``.

    Example:
        >>> penalty_strength(0.1, 0.5)
        (0.07500000000000001, 0.6666666666666666)
    """
    check_nonnegative("alpha", alpha)
    check_in_range("l1_ratio", l1_ratio, 0.0, 1.0, low_inclusive=False)
    return alpha * (1.0 + l1_ratio) / 2.0, 2.0 * l1_ratio / (1.0 + l1_ratio)


def sklearn_penalty(alpha: float, l1_ratio: float = 1.0) -> Penalty:
    r"""A reglight penalty equal to $\alpha\rho\lVert W\rVert_1 + \tfrac{\alpha(1-\rho)}{2}\lVert W\rVert_2^2$.

    Args:
        alpha: scikit-learn's ``alpha`` (>= 0).
        l1_ratio: scikit-learn's ``l1_ratio`` in (0, 1]; 1 gives [`L1`][reglight.penalties.L1].

    Returns:
        An ``L1`` or ``ElasticNet`` penalty whose ``value`` is the penalty above.

    Example:
        >>> import torch
        >>> w = torch.tensor([1.0, -2.0])
        >>> sklearn_penalty(0.1, 0.5).value([w])  # 0.05 * 3 + 0.025 * 5
        tensor(0.2750)
    """
    strength, share = penalty_strength(alpha, l1_ratio)
    if l1_ratio == 1.0:
        return L1(strength)
    return ElasticNet(strength, l1_ratio=share)


def penalty_value(weight: Tensor, alpha: float, l1_ratio: float) -> Tensor:
    r"""$\alpha\rho\lVert W\rVert_1 + \tfrac{\alpha(1-\rho)}{2}\lVert W\rVert_F^2$.

    Args:
        weight: The coefficients.
        alpha: scikit-learn's ``alpha``.
        l1_ratio: scikit-learn's ``l1_ratio``.

    Returns:
        A scalar tensor.
    """
    l1 = weight.abs().sum()
    l2 = weight.square().sum()
    return alpha * l1_ratio * l1 + 0.5 * alpha * (1.0 - l1_ratio) * l2


def data_loss(output: Tensor, target: Tensor, task: str, reduction: str = "mean") -> Tensor:
    r"""The data term $\ell$ of the objective: $\tfrac12(y-\eta)^2$, logistic or softmax loss.

    Args:
        output: ``(n,)`` predictions / logits (regression, binary) or ``(n, K)`` logits.
        target: ``(n,)`` targets (float) or class codes (int).
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        reduction: ``"mean"`` or ``"sum"``.

    Returns:
        A scalar tensor.
    """
    if task == "regression":
        loss = 0.5 * (output - target.to(output.dtype)).square()
        return loss.mean() if reduction == "mean" else loss.sum()
    if task == "binary":
        return F.binary_cross_entropy_with_logits(
            output, target.to(output.dtype), reduction=reduction
        )
    return F.cross_entropy(output, target.long(), reduction=reduction)
