"""torch.compile (CPU inductor, fullgraph) on the stochastic modules.

``fullgraph=True`` fails on any graph break, so it also proves that the masks need no host
synchronisation (``.item()``) and no data-dependent shapes: what DDP needs as well.
"""

from __future__ import annotations

import torch
from torch import nn

from reglight.nn import DropBlock2d, Dropout, DropPath


def test_compile_dropout_droppath_dropblock() -> None:
    torch._dynamo.reset()
    net = nn.Sequential(
        DropBlock2d(0.2, 3),  # sparse sampler at this size
        DropBlock2d(0.9, 2, shared_channels=True),  # dense sampler
        Dropout(0.3, scaling="classic"),
        DropPath(0.25),
    )
    compiled = torch.compile(net, backend="inductor", fullgraph=True)
    x = (torch.rand(64, 4, 8, 8) + 1).requires_grad_()
    y = compiled(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad * x, y.detach())  # the gradient is the mask times the scale
    zeros = (y == 0).float().mean().item()
    assert 0.5 < zeros < 1.0  # all four masks at work (their product keeps roughly 0.1-0.3)
    dropped_samples = (y.flatten(1) == 0).all(1).float().mean().item()
    assert 0.1 < dropped_samples < 0.45  # DropPath: about a quarter of the samples
    net.eval()  # eval: identity except classic's (1-p) (eager: a compiled eval graph costs ~10 s)
    torch.testing.assert_close(net(x), x * 0.7)
