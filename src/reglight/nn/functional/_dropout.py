r"""Functional dropout family: Bernoulli, Gaussian, DropConnect, locked (variational) and drop path.

Random masks are drawn without gradient tracking and without host synchronisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reglight._validation import check_choice, check_probability

__all__ = [
    "DROPOUT_SCALINGS",
    "drop_connect",
    "drop_path",
    "dropout",
    "gaussian_dropout",
    "locked_dropout",
]

DROPOUT_SCALINGS = ("inverted", "classic")
"""The `scaling` values accepted by [`dropout`][reglight.nn.functional.dropout] and `Dropout`."""


def dropout(
    input: Tensor, p: float = 0.5, training: bool = True, scaling: str = "inverted"
) -> Tensor:
    r"""Bernoulli dropout with the inverted or the classic scaling convention.

    Each unit is kept with probability $1-p$: $\tilde h = h \odot z$, $z_i \sim
    \mathrm{Bernoulli}(1-p)$ (Srivastava et al., 2014, "Dropout: a simple way to prevent neural
    networks from overfitting", JMLR 15).

    * `scaling="inverted"` (torch's convention): $\tilde h = h \odot z / (1-p)$ while training,
      $h$ at evaluation. It calls `torch.nn.functional.dropout`.
    * `scaling="classic"` (the paper's convention): $\tilde h = h \odot z$ while training,
      $(1-p)\,h$ at evaluation.

    Both make $\mathbb E[\tilde h]$ equal to the evaluation output.

    Args:
        input: Tensor of any shape.
        p: Probability of dropping a unit, in `[0, 1)`.
        training: Apply the random mask (`True`) or the deterministic evaluation rule (`False`).
        scaling: `"inverted"` or `"classic"`.

    Returns:
        A tensor shaped like `input`.

    Raises:
        ValueError: If `p` is outside `[0, 1)` or `scaling` is unknown.

    Examples:
        >>> import torch
        >>> from reglight.nn.functional import dropout
        >>> x = torch.ones(1000)
        >>> y = dropout(x, 0.5, scaling="classic")
        >>> sorted(y.unique().tolist())
        [0.0, 1.0]
        >>> dropout(x, 0.5, training=False, scaling="classic")[:3]
        tensor([0.5000, 0.5000, 0.5000])
    """
    p = check_probability("p", p)
    check_choice("scaling", scaling, DROPOUT_SCALINGS)
    if scaling == "inverted":
        return F.dropout(input, p, training)
    if not training:
        return input * (1.0 - p) if p > 0.0 else input
    if p == 0.0:
        return input
    with torch.no_grad():
        mask = torch.empty_like(input).bernoulli_(1.0 - p)
    return input * mask


def gaussian_dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    r"""Multiplicative Gaussian noise with the variance of Bernoulli dropout.

    $$
    \tilde h = h \odot \varepsilon, \qquad \varepsilon_i \sim \mathcal N\!\left(1,
    \tfrac{p}{1-p}\right),
    $$

    the continuous counterpart of inverted dropout with the same mean and variance (Srivastava et al.,
    2014, section 10). Identity when `training` is `False` or `p == 0`.

    Args:
        input: Tensor of any shape.
        p: Drop rate of the matching Bernoulli dropout, in `[0, 1)`.
        training: Apply the noise.

    Returns:
        A tensor shaped like `input`.

    Raises:
        ValueError: If `p` is outside `[0, 1)`.

    Examples:
        >>> import torch
        >>> from reglight.nn.functional import gaussian_dropout
        >>> _ = torch.manual_seed(0)
        >>> y = gaussian_dropout(torch.ones(100_000), p=0.5)
        >>> round(y.mean().item(), 1), round(y.var().item(), 1)
        (1.0, 1.0)
    """
    p = check_probability("p", p)
    if not training or p == 0.0:
        return input
    with torch.no_grad():
        noise = torch.empty_like(input).normal_(1.0, math.sqrt(p / (1.0 - p)))
    return input * noise


def drop_connect(weight: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    r"""DropConnect on a weight tensor: drop weights instead of activations.

    $$
    \tilde W = W \odot M / (1-p), \qquad M_{ij} \sim \mathrm{Bernoulli}(1-p),
    $$

    one mask per call (shared by the mini-batch); use the result in `torch.nn.functional.linear`
    or a convolution. The $1/(1-p)$ scaling makes the plain weights the evaluation rule (the
    mean-field approximation; Wan et al., 2013, "Regularization of neural networks using
    DropConnect", ICML, sample at inference instead).

    Args:
        weight: Weight tensor of any shape.
        p: Probability of dropping a weight, in `[0, 1)`.
        training: Apply the mask.

    Returns:
        The masked and rescaled weight (`weight` itself when not training or `p == 0`).

    Raises:
        ValueError: If `p` is outside `[0, 1)`.

    Examples:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from reglight.nn.functional import drop_connect
        >>> w, x = torch.randn(4, 3), torch.randn(2, 3)
        >>> F.linear(x, drop_connect(w, 0.5)).shape
        torch.Size([2, 4])
    """
    p = check_probability("p", p)
    return F.dropout(weight, p, training)


def locked_dropout(
    input: Tensor, p: float = 0.5, training: bool = True, batch_first: bool = True
) -> Tensor:
    r"""Variational ("locked") dropout: one mask per sequence, shared by all time steps.

    For an input $h_{n,t,d}$ (batch first) the output is $h_{n,t,d}\, z_{n,d} / (1-p)$ with
    $z_{n,d} \sim \mathrm{Bernoulli}(1-p)$ drawn once per sequence and feature, the same for every
    $t$ (Gal & Ghahramani, 2016, "A theoretically grounded application of dropout in recurrent
    neural networks", NeurIPS).

    Args:
        input: Tensor shaped `(N, T, D)` (`batch_first=True`) or `(T, N, D)`.
        p: Probability of dropping a feature of a sequence, in `[0, 1)`.
        training: Apply the mask.
        batch_first: Whether the batch is dimension 0 (else dimension 1, time first).

    Returns:
        A tensor shaped like `input`.

    Raises:
        ValueError: If `p` is outside `[0, 1)` or `input` is not 3-dimensional.

    Examples:
        >>> import torch
        >>> from reglight.nn.functional import locked_dropout
        >>> y = locked_dropout(torch.ones(2, 5, 4), 0.5)
        >>> bool((y == y[:, :1]).all())  # the same mask at every time step
        True
    """
    p = check_probability("p", p)
    if input.dim() != 3:
        raise ValueError(
            "`input` must be 3-dimensional, (N, T, D) with batch_first=True or (T, N, D), "
            f"got shape {tuple(input.shape)}"
        )
    if not training or p == 0.0:
        return input
    n, t, d = input.shape
    shape = (n, 1, d) if batch_first else (1, t, d)
    with torch.no_grad():
        mask = input.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return input * mask


def drop_path(
    input: Tensor, p: float = 0.1, training: bool = True, scale_by_keep: bool = True
) -> Tensor:
    r"""Stochastic depth: drop the whole residual branch of a sample.

    $$
    \tilde f(x)_n = f(x)_n\, b_n / (1-p), \qquad b_n \sim \mathrm{Bernoulli}(1-p),
    $$

    one draw per sample $n$ (Huang et al., 2016, "Deep networks with stochastic depth", ECCV).
    Apply it to the branch output before the residual sum: `x + drop_path(f(x), p)`.

    Args:
        input: Branch output, batch in dimension 0, any number of further dimensions.
        p: Probability of dropping the branch of a sample, in `[0, 1)`.
        training: Apply the mask.
        scale_by_keep: Divide the kept samples by $1-p$ (so evaluation needs no rescaling).

    Returns:
        A tensor shaped like `input`.

    Raises:
        ValueError: If `p` is outside `[0, 1)` or `input` is 0-dimensional.

    Examples:
        >>> import torch
        >>> from reglight.nn.functional import drop_path
        >>> y = drop_path(torch.ones(8, 3, 2, 2), 0.5)
        >>> y.flatten(1).std(dim=1).tolist() == [0.0] * 8  # whole samples, dropped or kept
        True
    """
    p = check_probability("p", p)
    if input.dim() < 1:
        raise ValueError("`input` must have a batch dimension, got a 0-dimensional tensor")
    if not training or p == 0.0:
        return input
    shape = (input.shape[0],) + (1,) * (input.dim() - 1)
    with torch.no_grad():
        mask = input.new_empty(shape).bernoulli_(1.0 - p)
        if scale_by_keep:
            mask.div_(1.0 - p)
    return input * mask
