"""Recipe: a small decoder-only Transformer on generated tasks, with its regularizers as options.

`reglight run grokking` trains [TransformerClassifier][reglight.recipes.transformer.TransformerClassifier]
on modular arithmetic ([ModularArithmeticDataModule][reglight.recipes.transformer.ModularArithmeticDataModule],
`(a + b) mod 97` with 30 % of the equations for training, full batch); `reglight run sequence` on
variable-length padded sequences ([RunningMaxDataModule][reglight.recipes.transformer.RunningMaxDataModule]);
`reglight run counting` on padded sequences batched by length
([RunningCountDataModule][reglight.recipes.transformer.RunningCountDataModule]).
`reglight ablate grokking` / `reglight ablate sequence` / `reglight ablate counting` compare normalizations (`norm` × `norm_position`).

Examples:
    >>> import torch
    >>> net = MiniTransformer(vocab_size=103, num_classes=97, max_len=4, d_model=32, heads=4)
    >>> net(torch.randint(0, 103, (2, 4))).shape
    torch.Size([2, 4, 97])
"""

from __future__ import annotations

from .data import (
    IGNORE_INDEX,
    OPERATIONS,
    LengthBucketBatchSampler,
    ModularArithmeticDataModule,
    RunningCountDataModule,
    RunningMaxDataModule,
    is_prime,
    modular_arithmetic,
    running_count_sequences,
    running_max_sequences,
    split_indices,
)
from .model import TransformerClassifier, weight_decay_groups
from .network import (
    NORM_POSITIONS,
    NORMS,
    POSITIONS,
    Block,
    CausalSelfAttention,
    MiniTransformer,
    TokenNorm,
    sinusoidal_positions,
)

__all__ = [
    "IGNORE_INDEX",
    "NORMS",
    "NORM_POSITIONS",
    "OPERATIONS",
    "POSITIONS",
    "Block",
    "CausalSelfAttention",
    "LengthBucketBatchSampler",
    "MiniTransformer",
    "ModularArithmeticDataModule",
    "RunningCountDataModule",
    "RunningMaxDataModule",
    "TokenNorm",
    "TransformerClassifier",
    "is_prime",
    "modular_arithmetic",
    "running_count_sequences",
    "running_max_sequences",
    "sinusoidal_positions",
    "split_indices",
    "weight_decay_groups",
]
