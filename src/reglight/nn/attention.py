"""Attention dropout: where Transformer modules keep its rate, and what switches it on.

Dropout on attention weights is not always a dropout module. Scaled dot-product attention takes it as an
argument (`F.scaled_dot_product_attention(..., dropout_p=p)`), so the rate lives on the attention module as
a float and the module's own `training` flag decides whether it is applied. Two questions follow for a
library that schedules dropout rates ([DropoutRate][reglight.callbacks.DropoutRate]) and samples dropout at
prediction time ([mc_dropout][reglight.nn.mc_dropout]): where is the rate, and which `training` flag must
be set? This module answers both, for

- **the SDPA protocol**: any module with a float attribute `dropout_p` that it passes to
  `scaled_dot_product_attention` when `self.training` (and whose `training` flag governs nothing else),
  as [CausalSelfAttention][reglight.recipes.transformer.CausalSelfAttention] does. Name the attribute
  `dropout_p` in your own attention module and the library reaches it;
- **`torch.nn.MultiheadAttention`**: the rate is the float attribute `dropout`, applied only when the module
  is in training mode (in evaluation mode it may even take a fused fast path);
- **`torch.nn.TransformerEncoderLayer`**: its dropouts are `nn.Dropout` modules and its attention an
  `nn.MultiheadAttention`, but in evaluation mode (without gradients) the layer takes a fused fast path
  that skips every dropout, so its own `training` flag must be set too;
- **timm's attention** (`timm.layers.Attention` and its relatives): the rate is the `p` of the
  `nn.Dropout` child `attn_drop` (a dropout module, reached as such), but the fused path passes
  `dropout_p=self.attn_drop.p if self.training else 0.` to SDPA: the attention module's own flag governs.
"""

from __future__ import annotations

from torch import nn

__all__ = [
    "ATTENTION_DROPOUT_ATTRIBUTE",
    "attention_dropout_attribute",
    "dropout_follows_own_training_flag",
]

ATTENTION_DROPOUT_ATTRIBUTE = "dropout_p"
"""The attribute of the SDPA protocol: a module's attention-dropout rate, named as SDPA's argument."""


def _is_rate(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def attention_dropout_attribute(module: nn.Module) -> str | None:
    """The name of the float attribute that holds `module`'s attention-dropout rate, if it has one.

    Args:
        module: Any module.

    Returns:
        `"dropout_p"` for a module of the SDPA protocol, `"dropout"` for `nn.MultiheadAttention`, else
        `None` (timm's attention keeps its rate in the dropout module `attn_drop`, reached as a dropout).

    Examples:
        >>> from torch import nn
        >>> attention_dropout_attribute(nn.MultiheadAttention(8, 2, dropout=0.1))
        'dropout'
        >>> attention_dropout_attribute(nn.Linear(2, 2)) is None
        True
    """
    if _is_rate(getattr(module, ATTENTION_DROPOUT_ATTRIBUTE, None)):
        return ATTENTION_DROPOUT_ATTRIBUTE
    if isinstance(module, nn.MultiheadAttention) and _is_rate(getattr(module, "dropout", None)):
        return "dropout"
    return None


def dropout_follows_own_training_flag(module: nn.Module) -> bool:
    """Whether `module` applies (attention) dropout only while its own `training` flag is set.

    These are the modules [mc_dropout][reglight.nn.mc_dropout] puts in training mode by themselves (their
    children keep their own flags): SDPA-protocol modules, `nn.MultiheadAttention`,
    `nn.TransformerEncoderLayer` (whose evaluation fast path skips dropout) and timm-style attention (a
    `fused_attn` attribute and an `attn_drop` dropout module).

    Args:
        module: Any module.

    Returns:
        `True` for the modules above.

    Examples:
        >>> from torch import nn
        >>> dropout_follows_own_training_flag(nn.TransformerEncoderLayer(8, 2))
        True
        >>> dropout_follows_own_training_flag(nn.Dropout(0.1))
        False
    """
    if attention_dropout_attribute(module) is not None:
        return True
    if isinstance(module, nn.TransformerEncoderLayer):
        return True
    attn_drop = getattr(module, "attn_drop", None)
    return hasattr(module, "fused_attn") and isinstance(attn_drop, nn.Module)
