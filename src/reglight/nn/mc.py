"""Monte-Carlo dropout: keep the dropout layers sampling at prediction time.

A network trained with dropout is an implicit ensemble of the $2^n$ sub-networks its masks select
(Srivastava et al., 2014). Sampling masks at prediction time and averaging makes that ensemble
explicit: the mean is a model average and the spread a measure of uncertainty (Gal & Ghahramani, 2016,
"Dropout as a Bayesian approximation", ICML).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from reglight._validation import check_positive_int
from reglight.nn.attention import dropout_follows_own_training_flag
from reglight.nn.dropout import DROPOUT_TYPES

__all__ = ["mc_dropout", "mc_predict"]

_DROPOUT_CLASS_NAMES = ("DropPath", "DropBlock2d")
"""Dropout-family classes recognized by name (timm's), when `dropout_types` is the default."""


def _is_dropout(module: nn.Module, dropout_types: tuple[type[nn.Module], ...] | None) -> bool:
    if dropout_types is not None:
        return isinstance(module, dropout_types)
    return isinstance(module, DROPOUT_TYPES) or any(
        c.__name__ in _DROPOUT_CLASS_NAMES for c in type(module).__mro__
    )


def _stochastic_modules(
    model: nn.Module, dropout_types: tuple[type[nn.Module], ...] | None, attention: bool
) -> tuple[list[nn.Module], list[nn.Module]]:
    """The dropout modules and the attention modules that `mc_dropout` switches on."""
    dropouts = [m for m in model.modules() if _is_dropout(m, dropout_types)]
    attentions = (
        [m for m in model.modules() if dropout_follows_own_training_flag(m)] if attention else []
    )
    return dropouts, attentions


@contextmanager
def mc_dropout(
    model: nn.Module,
    dropout_types: tuple[type[nn.Module], ...] | None = None,
    attention: bool = True,
) -> Iterator[nn.Module]:
    """Context manager: dropout layers in training mode, every other module in evaluation mode.

    Inside the block the dropout-family layers of `model` sample masks while batch norm and every
    other layer behave as at evaluation (running statistics used, never updated). Attention dropout is
    sampled too: the modules that apply it only while their own `training` flag is set (SDPA-protocol
    modules with a `dropout_p`, `nn.MultiheadAttention`, `nn.TransformerEncoderLayer` whose evaluation fast
    path skips dropout, timm's attention; see
    [dropout_follows_own_training_flag][reglight.nn.attention.dropout_follows_own_training_flag]) get
    that flag set by itself, their children keeping theirs. The training flag of every module is restored
    on exit, also after an exception.

    Args:
        model: The model.
        dropout_types: Module classes counted as dropout; `None` (default) means
            [`DROPOUT_TYPES`][reglight.nn.dropout.DROPOUT_TYPES] (ours and torch's) and any class named
            `DropPath` or `DropBlock2d` (timm's).
        attention: Also sample attention dropout (set the attention modules' own training flag).

    Yields:
        `model`, switched.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from reglight.nn import mc_dropout
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5))
        >>> with mc_dropout(net):
        ...     print(net[1].training, net[2].training)
        False True
        >>> net[1].training, net[2].training
        (True, True)
    """
    flags = [(module, module.training) for module in model.modules()]
    dropouts, attentions = _stochastic_modules(model, dropout_types, attention)
    try:
        model.eval()
        for module in dropouts:
            module.train()
        for module in attentions:
            module.training = True  # the module alone: its norms and projections stay in eval mode
        yield model
    finally:
        for module, training in flags:  # pre-order: children are fixed after their parents
            module.train(training)


def mc_predict(
    model: nn.Module,
    input: Any,
    samples: int = 30,
    transform: Callable[[Tensor], Tensor] | None = None,
    dropout_types: tuple[type[nn.Module], ...] | None = None,
    attention: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Mean and standard deviation of `samples` stochastic forward passes under [`mc_dropout`][reglight.nn.mc_dropout].

    $$
    \hat\mu = \frac1S \sum_{s=1}^S g(f_{z_s}(x)),\qquad
    \hat\sigma = \sqrt{\frac{1}{S-1}\sum_{s=1}^S \big(g(f_{z_s}(x)) - \hat\mu\big)^2},
    $$

    with $z_s$ fresh dropout masks and $g$ the optional `transform` (e.g. a softmax, to average
    probabilities rather than logits). Runs without gradient tracking and accumulates with Welford's
    algorithm in at least float32, so memory does not grow with `samples`.

    Args:
        model: The model; called as `model(input)`.
        input: The model's input.
        samples: Number of forward passes $S$, `>= 2`.
        transform: Function applied to every prediction before averaging.
        dropout_types: Module classes counted as dropout (see [`mc_dropout`][reglight.nn.mc_dropout]).
        attention: Also sample attention dropout (see [`mc_dropout`][reglight.nn.mc_dropout]).

    Returns:
        `(mean, std)`, each shaped like one prediction.

    Raises:
        ValueError: If `samples < 2`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from reglight.nn import mc_predict
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        >>> mean, std = mc_predict(net, torch.randn(5, 4), samples=20, transform=lambda y: y.softmax(-1))
        >>> mean.shape, bool((std >= 0).all())
        (torch.Size([5, 3]), True)
    """
    samples = check_positive_int("samples", samples, minimum=2)
    dropouts, attentions = _stochastic_modules(model, dropout_types, attention)
    if not dropouts and not attentions:
        warnings.warn(
            f"{type(model).__name__} has no dropout-family layer and no attention dropout: every Monte-Carlo sample is the same",
            UserWarning,
            stacklevel=2,
        )
    mean: Tensor | None = None
    m2: Tensor | None = None
    out_dtype = torch.float32
    with torch.no_grad(), mc_dropout(model, dropout_types, attention):
        for count in range(1, samples + 1):
            prediction = model(input)
            if transform is not None:
                prediction = transform(prediction)
            out_dtype = prediction.dtype
            y = prediction.to(torch.promote_types(prediction.dtype, torch.float32))
            if mean is None or m2 is None:
                mean, m2 = y.clone(), torch.zeros_like(y)
                continue
            delta = y - mean
            mean.add_(delta / count)
            m2.add_(delta * (y - mean))
    assert mean is not None and m2 is not None
    std = (m2 / (samples - 1)).sqrt_()
    return mean.to(out_dtype), std.to(out_dtype)
