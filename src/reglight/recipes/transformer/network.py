r"""A small decoder-only Transformer, written to be read.

token embedding (+ positions) → `depth` × [attention, MLP] blocks → head. Each block is

- pre-norm: $x \leftarrow x + \mathrm{DropPath}(\mathrm{Drop}(\mathrm{Attn}(\mathrm{Norm}(x))))$, then the same
  with the MLP; a final norm before the head (Xiong et al., 2020, "On Layer Normalization in the
  Transformer Architecture");
- post-norm: $x \leftarrow \mathrm{Norm}(x + \mathrm{Drop}(\mathrm{Attn}(x)))$, then the same with the MLP
  (Vaswani et al., 2017).

Attention goes through `torch.nn.functional.scaled_dot_product_attention` with a causal mask and, for
padded batches, a key padding mask. Its dropout rate is the float attribute `dropout_p` of
[CausalSelfAttention][reglight.recipes.transformer.CausalSelfAttention], the attribute that
[DropoutRate][reglight.callbacks.DropoutRate] schedules and
[mc_dropout][reglight.nn.mc_dropout] samples (see [reglight.nn.attention][reglight.nn.attention]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reglight._validation import check_choice, check_positive, check_positive_int, check_probability
from reglight.nn import Dropout, DropPath, MaskedBatchNorm1d, drop_path_rates

__all__ = [
    "NORMS",
    "NORM_POSITIONS",
    "POSITIONS",
    "Block",
    "CausalSelfAttention",
    "MiniTransformer",
    "TokenNorm",
    "sinusoidal_positions",
]

NORMS = ("layer", "rms", "batch", "batch_unmasked", "none")
"""The `norm` choices: LayerNorm, RMSNorm, batch norm over the real tokens (padding masked out of the
statistics), batch norm over every token including padding, no normalization."""
NORM_POSITIONS = ("pre", "post")
"""The `norm_position` choices."""
POSITIONS = ("learned", "sinusoidal")
"""The `positions` choices."""


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    r"""The fixed positional code of Vaswani et al. (2017): $\sin$/$\cos$ of $t / 10000^{2i/d}$.

    Args:
        length: Number of positions.
        dim: Feature dimension (even).

    Returns:
        `(length, dim)` float32.

    Examples:
        >>> sinusoidal_positions(3, 4)[0]
        tensor([0., 1., 0., 1.])
    """
    t = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(t * freq)
    out[:, 1::2] = torch.cos(t * freq)
    return out


class TokenNorm(nn.Module):
    """One normalization of token features `(N, T, C)`, chosen by name, called as `norm(x, mask)`.

    Args:
        kind: One of [NORMS][reglight.recipes.transformer.network.NORMS]: `"layer"` (`nn.LayerNorm`),
            `"rms"` (`nn.RMSNorm`), `"batch"` ([MaskedBatchNorm1d][reglight.nn.MaskedBatchNorm1d], statistics
            over the real tokens), `"batch_unmasked"` (the same module fed no mask: padding counted, as
            `nn.BatchNorm1d` over the `N·T` tokens would), `"none"` (identity).
        dim: Number of features `C`.

    Examples:
        >>> import torch
        >>> TokenNorm("batch", 8)(torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)).shape
        torch.Size([2, 3, 8])
    """

    def __init__(self, kind: str, dim: int) -> None:
        super().__init__()
        self.kind = check_choice("norm", kind, NORMS)
        self.norm: nn.Module
        if kind == "layer":
            self.norm = nn.LayerNorm(dim)
        elif kind == "rms":
            self.norm = nn.RMSNorm(dim)
        elif kind in ("batch", "batch_unmasked"):
            self.norm = MaskedBatchNorm1d(dim)
        else:
            self.norm = nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Normalize `x`; `mask` (true on real tokens) only matters to `"batch"`."""
        if self.kind == "batch":
            return self.norm(x, mask)
        return self.norm(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class CausalSelfAttention(nn.Module):
    r"""Multi-head causal self-attention through `scaled_dot_product_attention`.

    $\mathrm{softmax}(QK^\top/\sqrt{d_h} + M)\,V$ per head, with $M$ the causal mask (no position attends to
    a later one) combined with the key padding mask; a position always attends to itself, so no row is
    fully masked. Attention weights are dropped with probability `dropout_p` in training mode: the float
    attribute named as SDPA's argument, read at every call, that
    [DropoutRate][reglight.callbacks.DropoutRate] schedules and [mc_dropout][reglight.nn.mc_dropout]
    switches on (the protocol of [reglight.nn.attention][reglight.nn.attention]).

    Args:
        dim: Model width $d$.
        heads: Number of heads (divides `dim`).
        dropout_p: Attention-weight dropout probability.
        bias: Biases in the projections.

    Examples:
        >>> import torch
        >>> attn = CausalSelfAttention(16, heads=4, dropout_p=0.1)
        >>> attn(torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 16])
    """

    def __init__(self, dim: int, heads: int, dropout_p: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        check_positive_int("heads", heads)
        if dim % heads:
            raise ValueError(f"`heads` must divide the width d_model={dim}, got heads={heads}")
        self.heads = heads
        self.dropout_p = check_probability("attn_dropout", dropout_p)
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, last_only: bool = False) -> Tensor:
        """Attend over `x` `(N, T, d)`; `mask` `(N, T)` is true on real tokens (`None`: no padding).

        With `last_only` only the last position queries (it sees every position, so no mask is needed
        without padding) and the output is `(N, 1, d)`: what the last layer of a model scored at its last
        token needs, at a fraction of the cost.
        """
        n, t, d = x.shape
        h = d // self.heads
        p = self.dropout_p if self.training else 0.0
        if last_only and mask is None:
            q = F.linear(
                x[:, -1:], self.qkv.weight[:d], None if self.qkv.bias is None else self.qkv.bias[:d]
            )
            kv = F.linear(
                x, self.qkv.weight[d:], None if self.qkv.bias is None else self.qkv.bias[d:]
            )
            k, v = kv.view(n, t, 2, self.heads, h).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(
                q.view(n, 1, self.heads, h).transpose(1, 2), k, v, dropout_p=p
            )
            return self.proj(out.transpose(1, 2).reshape(n, 1, d))
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, h).permute(2, 0, 3, 1, 4)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            eye = torch.eye(t, dtype=torch.bool, device=x.device)
            allowed = causal & (mask[:, None, None, :] | eye)  # (N, 1, T, T), true = may attend
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        out = self.proj(out.transpose(1, 2).reshape(n, t, d))
        return out[:, -1:] if last_only else out

    def extra_repr(self) -> str:
        return f"heads={self.heads}, dropout_p={self.dropout_p}"


class Block(nn.Module):
    """One Transformer block: attention and MLP, each a residual branch with its norm.

    Args:
        dim: Model width.
        heads: Attention heads.
        mlp_ratio: MLP hidden width as a multiple of `dim`.
        norm: Normalization kind (see [TokenNorm][reglight.recipes.transformer.TokenNorm]).
        norm_position: `"pre"` or `"post"`.
        attn_dropout: Attention-weight dropout.
        resid_dropout: Dropout on each residual branch's output.
        drop_path: DropPath rate of both branches.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        norm: str = "layer",
        norm_position: str = "pre",
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm_position = check_choice("norm_position", norm_position, NORM_POSITIONS)
        hidden = max(1, round(mlp_ratio * dim))
        self.norm1 = TokenNorm(norm, dim)
        self.attn = CausalSelfAttention(dim, heads, attn_dropout)
        self.norm2 = TokenNorm(norm, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop1 = Dropout(resid_dropout)
        self.drop2 = Dropout(resid_dropout)
        self.path1 = DropPath(drop_path)
        self.path2 = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor | None = None, last_only: bool = False) -> Tensor:
        """`x` `(N, T, d)`, `mask` `(N, T)` true on real tokens or `None`.

        `last_only`: return only the last position `(N, 1, d)`, computing the attention queries and the MLP
        there alone (exact for per-token norms; batch norms need every token, so they compute all of them).
        """
        if last_only and self.norm1.kind in ("batch", "batch_unmasked"):
            return self(x, mask)[:, -1:]
        if self.norm_position == "pre":
            branch = self.path1(self.drop1(self.attn(self.norm1(x, mask), mask, last_only)))
            x = (x[:, -1:] if last_only else x) + branch
            mask = mask[:, -1:] if last_only and mask is not None else mask
            return x + self.path2(self.drop2(self.mlp(self.norm2(x, mask))))
        branch = self.path1(self.drop1(self.attn(x, mask, last_only)))
        x = self.norm1((x[:, -1:] if last_only else x) + branch, mask)
        mask = mask[:, -1:] if last_only and mask is not None else mask
        return self.norm2(x + self.path2(self.drop2(self.mlp(x))), mask)


class MiniTransformer(nn.Module):
    """A small decoder-only Transformer: logits for every position of a token sequence.

    Args:
        vocab_size: Number of input tokens.
        num_classes: Number of output classes per position.
        max_len: Longest sequence (size of the position table).
        d_model: Width $d$.
        depth: Number of blocks.
        heads: Attention heads per block.
        mlp_ratio: MLP hidden width as a multiple of `d_model`.
        norm: `"layer"`, `"rms"`, `"batch"`, `"batch_unmasked"` or `"none"`.
        norm_position: `"pre"` (and a final norm before the head) or `"post"`.
        positions: `"learned"` (an embedding table) or `"sinusoidal"` (fixed).
        attn_dropout: Dropout on the attention weights (`dropout_p` of each attention module).
        resid_dropout: Dropout on the output of every residual branch.
        embed_dropout: Dropout on the sum of the token and position embeddings.
        embed_init_std: Standard deviation of the normal initialization of the token and learned position
            tables (1: `nn.Embedding`'s default). Small tables speed grokking up.
        drop_path: Largest DropPath rate; block $l$ of $L$ gets `drop_path·l/L`
            ([drop_path_rates][reglight.nn.drop_path_rates]).

    Examples:
        >>> import torch
        >>> net = MiniTransformer(vocab_size=10, num_classes=7, max_len=4, d_model=16, heads=2)
        >>> net(torch.randint(0, 10, (3, 4))).shape
        torch.Size([3, 4, 7])
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        max_len: int,
        d_model: int = 128,
        depth: int = 1,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        norm: str = "layer",
        norm_position: str = "pre",
        positions: str = "learned",
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.0,
        embed_dropout: float = 0.0,
        drop_path: float = 0.0,
        embed_init_std: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive("embed_init_std", embed_init_std)
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("num_classes", num_classes)
        check_positive_int("max_len", max_len)
        check_positive_int("d_model", d_model)
        check_positive_int("depth", depth)
        check_choice("norm", norm, NORMS)
        check_choice("norm_position", norm_position, NORM_POSITIONS)
        self.positions = check_choice("positions", positions, POSITIONS)
        check_probability("resid_dropout", resid_dropout)
        check_probability("embed_dropout", embed_dropout)
        check_probability("drop_path", drop_path)
        self.norm, self.norm_position = norm, norm_position
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        if positions == "learned":
            self.position_embedding: nn.Embedding | None = nn.Embedding(max_len, d_model)
        else:
            self.position_embedding = None
        self.position_code: Tensor | None
        self.register_buffer(
            "position_code",
            sinusoidal_positions(max_len, d_model) if positions == "sinusoidal" else None,
            persistent=False,
        )
        if embed_init_std != 1.0:  # 1: nn.Embedding's own N(0, 1), random stream unchanged
            for table in (self.token_embedding, self.position_embedding):
                if table is not None:
                    nn.init.normal_(table.weight, std=embed_init_std)
        self.embed_drop = Dropout(embed_dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, heads, mlp_ratio, norm, norm_position, attn_dropout, resid_dropout, p)
            for p in drop_path_rates(drop_path, depth)
        )
        self.final_norm = TokenNorm(norm if norm_position == "pre" else "none", d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(
        self, tokens: Tensor, mask: Tensor | None = None, last_only: bool = False
    ) -> Tensor:
        """Logits `(N, T, num_classes)` of tokens `(N, T)`; `mask` `(N, T)` true on real tokens.

        `last_only=True` returns the logits of the last position only, `(N, num_classes)`, and spares the
        last block's queries and MLP at the other positions (the same numbers as `forward(tokens)[:, -1]`).
        """
        if last_only and self.norm in ("batch", "batch_unmasked"):
            return self(tokens, mask)[:, -1]  # batch statistics need every token
        t = tokens.shape[1]
        x = self.token_embedding(tokens)
        if self.position_embedding is not None:
            x = x + self.position_embedding.weight[:t]
        elif self.position_code is not None:
            x = x + self.position_code[:t]
        x = self.embed_drop(x)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only and i == last)
        if last_only:
            return self.head(self.final_norm(x))[:, 0]
        return self.head(self.final_norm(x, mask))
