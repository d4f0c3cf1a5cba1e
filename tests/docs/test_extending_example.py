"""The worked example of docs/extending.md, run as a test.

The page shows the sections of this file between the `--8<--` markers (pymdownx.snippets), so the code
a reader copies is the code that runs here.
"""

from __future__ import annotations

import doctest
import math

import pytest

# --8<-- [start:module]
import torch
from torch import Tensor, nn

from reglight._validation import check_probability


def token_dropout(input: Tensor, p: float = 0.1, training: bool = True) -> Tensor:
    r"""Drop whole tokens (all features of a time step) of a `(..., L, D)` sequence.

    While training, token $l$ of sequence $n$ is kept with probability $1 - p$ and rescaled:

    $$y_{n,l,:} = \frac{z_{n,l}}{1-p}\,x_{n,l,:}, \qquad z_{n,l} \sim \mathrm{Bernoulli}(1-p),$$

    so $\mathbb{E}[y] = x$. This is the word dropout of Iyyer et al., 2015, "Deep Unordered
    Composition Rivals Syntactic Methods for Text Classification" (ACL), applied to embeddings. For
    `(N, L, D)` inputs it draws from the same distribution as torch's `F.dropout1d`, which treats the
    tokens as channels.

    Args:
        input: A tensor whose last dimension holds the features of a token.
        p: Probability of dropping a token, in `[0, 1)`.
        training: Apply dropout; `False` returns `input` unchanged.

    Returns:
        A tensor of the shape of `input`.

    Raises:
        ValueError: If `p` is not in `[0, 1)` or `input` has fewer than 2 dimensions.

    Examples:
        >>> x = torch.randn(8, 10, 16)  # (batch, tokens, features)
        >>> y = token_dropout(x, p=0.25)
        >>> kept = (y != 0).any(dim=-1)  # the tokens that survived
        >>> torch.allclose(y[kept], x[kept] / 0.75), bool((y[~kept] == 0).all())
        (True, True)
        >>> token_dropout(x, p=0.25, training=False) is x
        True
    """
    p = check_probability("p", p)
    if input.ndim < 2:
        raise ValueError(
            f"`input` must have a token and a feature dimension, got shape {input.shape}"
        )
    if not training or p == 0.0:
        return input
    keep = 1.0 - p
    with torch.no_grad():  # the mask is data, not part of the graph
        mask = input.new_empty((*input.shape[:-1], 1)).bernoulli_(keep).div_(keep)
    return input * mask


class TokenDropout(nn.Module):
    r"""Module form of [`token_dropout`][reglight.nn.token_dropout]: drops whole tokens while training.

    The rate `p` is a mutable attribute, validated on assignment, so a schedule may change it between
    steps; in evaluation mode the module is the identity.

    Args:
        p: Probability of dropping a token, in `[0, 1)`.

    Raises:
        ValueError: If `p` is not in `[0, 1)`.

    Examples:
        >>> layer = TokenDropout(p=0.2)
        >>> layer
        TokenDropout(p=0.2)
        >>> layer.p = 1.0
        Traceback (most recent call last):
            ...
        ValueError: `p` must be a probability in [0, 1), got 1.0
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.p = p

    @property
    def p(self) -> float:
        """Probability of dropping a token, in `[0, 1)`."""
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = check_probability("p", value)

    def forward(self, input: Tensor) -> Tensor:
        return token_dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# --8<-- [end:module]


# --8<-- [start:tests]
def whole_tokens_kept_or_dropped(x: Tensor, y: Tensor, p: float) -> bool:
    """Every token of `y` is either all zeros or the token of `x` divided by 1 - p."""
    dropped = (y == 0).all(dim=-1)
    kept = torch.isclose(y, x / (1 - p)).all(dim=-1)
    return bool((dropped | kept).all())


def dropped_fraction(y: Tensor) -> float:
    return float((y == 0).all(dim=-1).float().mean())


def test_drops_whole_tokens_like_torch_dropout1d() -> None:
    x = torch.randn(64, 50, 8)  # 3200 tokens, no feature exactly 0
    p = 0.3
    ours = token_dropout(x, p)
    # torch's reference on (N, C, L) inputs drops whole channels: here, our tokens
    reference = torch.nn.functional.dropout1d(x, p, training=True)
    assert whole_tokens_kept_or_dropped(x, ours, p)
    assert whole_tokens_kept_or_dropped(x, reference, p)
    # both drop a fraction p of the tokens: 5 binomial standard deviations
    tolerance = 5 * math.sqrt(p * (1 - p) / (64 * 50))
    assert abs(dropped_fraction(ours) - p) < tolerance
    assert abs(dropped_fraction(reference) - p) < tolerance


def test_unbiased() -> None:
    x = torch.ones(4000, 10, 3)
    p = 0.4
    # E[y] = x; the mean of 40000 tokens has standard deviation sqrt(p / (1 - p) / 40000)
    mean = float(token_dropout(x, p).mean())
    assert abs(mean - 1.0) < 5 * math.sqrt(p / (1 - p) / 40000)


def test_gradient_is_the_scaled_mask() -> None:
    x = torch.randn(16, 12, 4, requires_grad=True)
    p = 0.5
    y = token_dropout(x, p)
    y.sum().backward()
    kept = (y != 0).any(dim=-1, keepdim=True).expand_as(x)
    assert torch.equal(x.grad, kept.float() / (1 - p))


def test_identity_in_eval_and_at_zero_rate() -> None:
    x = torch.randn(2, 5, 3)
    layer = TokenDropout(0.5)
    assert layer.eval()(x) is x
    assert TokenDropout(0.0)(x) is x
    assert torch.nn.Dropout(0.0)(x).equal(x)  # torch's dropout at p = 0: the same values


@pytest.mark.parametrize("bad", [1.0, -0.1, math.nan, "0.1", True])
def test_bad_rate_is_refused_with_its_name_and_value(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"`p` must be a probability in \[0, 1\), got {bad!r}"):
        TokenDropout(bad)  # type: ignore[arg-type]
    layer = TokenDropout(0.1)
    with pytest.raises(ValueError, match="`p`"):
        layer.p = bad  # type: ignore[assignment]
    assert layer.p == 0.1


def test_docstring_examples_pass() -> None:
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for obj in (token_dropout, TokenDropout):
        for test in finder.find(obj, globs={"torch": torch, **globals()}):
            result = runner.run(test)
            assert result.failed == 0, test.name
            attempted += result.attempted
    assert attempted > 0


# --8<-- [end:tests]
