"""Keep the running statistics of normalization layers from changing during a forward pass.

SAM runs the network twice per step, the second time at perturbed weights. Batch normalization updates its
running mean and variance in every training-mode forward pass, so without care the running statistics take
two updates per step, one of them computed at weights the model never holds. The fix is to update them on the
first pass only: [`frozen_running_stats`][reglight.optim.frozen_running_stats] saves every buffer of the
normalization layers before the second pass and copies the saved values back after it.

Saving and restoring is exact for every momentum convention: an exponential average (`momentum` a number), a
cumulative average (`momentum=None`, which reads `num_batches_tracked`), and custom layers with more buffers.
Setting `momentum` to zero, the other common trick, leaves `num_batches_tracked` counting both passes and
silently changes a cumulative average.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

__all__ = ["frozen_running_stats", "running_stat_buffers"]


def running_stat_buffers(model: nn.Module) -> list[Tensor]:
    """The buffers of `model`'s normalization layers that track running statistics.

    Every module derived from torch's `_NormBase` (`BatchNorm*d`, `SyncBatchNorm`, `InstanceNorm*d` with
    `track_running_stats=True`, reglight's `GhostBatchNorm*d` and `BatchRenorm*d`) contributes all its own
    buffers: `running_mean`, `running_var`, `num_batches_tracked` and any other.

    Args:
        model: the network.

    Returns:
        The buffers, in `model.modules()` order.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        >>> [tuple(b.shape) for b in running_stat_buffers(model)]
        [(4,), (4,), ()]
    """
    return [
        b
        for m in model.modules()
        if isinstance(m, _NormBase) and m.track_running_stats
        for b in m.buffers(recurse=False)
    ]


@contextmanager
def frozen_running_stats(model: nn.Module | None) -> Iterator[None]:
    """Run the body with the running statistics of `model`'s normalization layers saved and restored.

    Inside the `with` block the layers still normalize with the statistics of the current batch (training
    mode is unchanged); on exit their running statistics and `num_batches_tracked` are exactly what they were
    on entry. `None` is a no-op.

    Args:
        model: the network, or `None`.

    Yields:
        Nothing.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> bn = nn.BatchNorm1d(2, momentum=None)  # cumulative average
        >>> _ = bn(torch.randn(8, 2))
        >>> before = bn.running_mean.clone(), int(bn.num_batches_tracked)
        >>> with frozen_running_stats(bn):
        ...     _ = bn(torch.randn(8, 2) + 5)
        >>> torch.equal(bn.running_mean, before[0]), int(bn.num_batches_tracked) == before[1]
        (True, True)
    """
    if model is None:
        yield
        return
    buffers = running_stat_buffers(model)
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        if buffers:
            with torch.no_grad():
                torch._foreach_copy_(buffers, saved)
