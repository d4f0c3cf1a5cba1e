"""Cache-blocked iteration over lists of tensors for the multi-tensor (`torch._foreach_*`) kernels.

A penalty update is memory-bound: it reads the weights once and writes the gradient (or the weights)
once. Run naively over whole tensors, `torch._foreach_sign(params)` allocates a temporary as large as
the whole model, which costs one more write and read of main memory (and page faults) before the
update even starts. Here the tensors are cut into blocks of at most `block_numel()` elements and
the foreach kernels run block by block, so their temporaries stay in the CPU's L2 cache and main
memory sees only the unavoidable traffic. Small tensors are batched into one block, so a model with
many small tensors still gets one multi-tensor kernel per block instead of one kernel per tensor.
On accelerators (CUDA, ...) the lists are not cut: there each foreach kernel covers the whole list in
a few launches, and blocks would only add launches.

Measured on the 14.2 M weights of a 4 x 2048 MLP (2-core Xeon, float32), relative to the per-tensor
`grad.add_(param.sign(), alpha=λ)`: blocked L1 gradient 0.6x and L1 prox 0.35x with 2 threads on
an idle machine (0.85x and 0.6x with 1 thread on a loaded one); the same foreach kernels over whole
tensors: 1.1x and 1.6x. On an oversubscribed machine (more runnable threads than cores) many short
parallel regions can each wait for a descheduled thread; the block size therefore grows with the
number of intra-op threads (`BLOCK_NUMEL` elements per thread) to keep their number small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["BLOCK_NUMEL", "block_numel", "iter_blocks"]

#: Elements per block and intra-op thread (512 KiB of float32): each thread's share of a block and of
#: its temporaries stays in that core's L2 cache.
BLOCK_NUMEL: int = 1 << 17


def block_numel() -> int:
    """The block size for the current intra-op thread count (`BLOCK_NUMEL` per thread).

    Scaling with the threads keeps each thread's share cache-sized while keeping the number of
    parallel regions (each a synchronization of all threads) as small as possible.
    """
    return BLOCK_NUMEL * max(1, torch.get_num_threads())


def _flat_views(tensors: Sequence[Tensor]) -> list[Tensor] | None:
    if all(t.is_contiguous() for t in tensors):
        return [t.view(-1) for t in tensors]
    return None


def iter_blocks(
    *lists: Sequence[Tensor], max_numel: int | None = None
) -> Iterator[tuple[list[int], list[list[Tensor]]]]:
    """Yield aligned blocks of the given lists of same-shaped tensors.

    Args:
        *lists: lists of tensors; the `k`-th tensors of all lists have the same shape.
        max_numel: largest number of elements of one list in one block (default:
            `block_numel()`); a single tensor that cannot be
            flattened without a copy (e.g. a channels-last weight) forms a block of its own.

    Yields:
        `(index, blocks)` where `blocks[j]` is a list of views into `lists[j]` (flattened
        chunks or whole tensors) and `index[i]` is the position in the input lists of the tensor
        that `blocks[j][i]` comes from (to look up per-tensor scalars).
    """
    if lists and lists[0] and lists[0][0].device.type != "cpu":
        # Accelerators run each foreach kernel over the whole list in a few launches and have no
        # cache to protect: cutting into blocks would only multiply the launches.
        yield list(range(len(lists[0]))), [list(ts) for ts in lists]
        return
    limit = block_numel() if max_numel is None else max_numel
    index: list[int] = []
    blocks: list[list[Tensor]] = [[] for _ in lists]
    filled = 0
    for k, tensors in enumerate(zip(*lists)):
        n = tensors[0].numel()
        if n == 0:
            continue
        flat = _flat_views(tensors) if n > limit else None
        if flat is None:
            if filled + n > limit and index:
                yield index, blocks
                index, blocks, filled = [], [[] for _ in lists], 0
            index.append(k)
            for block, t in zip(blocks, tensors):
                block.append(t)
            filled += n
            if filled >= limit:
                yield index, blocks
                index, blocks, filled = [], [[] for _ in lists], 0
            continue
        for start in range(0, n, limit):
            if filled + min(limit, n - start) > limit and index:
                yield index, blocks
                index, blocks, filled = [], [[] for _ in lists], 0
            stop = min(start + limit, n)
            index.append(k)
            for block, f in zip(blocks, flat):
                block.append(f[start:stop])
            filled += stop - start
            if filled >= limit:
                yield index, blocks
                index, blocks, filled = [], [[] for _ in lists], 0
    if index:
        yield index, blocks
