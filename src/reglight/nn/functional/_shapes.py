"""Shape helpers of the batch-statistics norms (values per channel, reduced dimensions)."""

from __future__ import annotations

from torch import Tensor


def _values_per_channel(input: Tensor) -> int:
    return input.numel() // input.shape[1] if input.shape[1] else 0


def _reduce_dims(input: Tensor) -> list[int]:
    return [0, *range(2, input.dim())]
