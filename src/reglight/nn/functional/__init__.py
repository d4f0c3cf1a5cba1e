r"""Pure tensor functions behind the modules of `reglight.nn`.

Each function takes the tensors and the hyperparameters explicitly and keeps no state, in the style of
`torch.nn.functional`; the modules in `reglight.nn` store the hyperparameters and call them. Random
masks are built without gradient tracking and without host synchronisation (no `.item()`, no
data-dependent shapes), so the functions run under DDP and `torch.compile(fullgraph=True)`.

| topic | functions |
|---|---|
| dropout family | `dropout`, `gaussian_dropout`, `drop_connect`, `locked_dropout`, `drop_path` |
| DropBlock | `drop_block2d`, `drop_block2d_gamma` |
| normalisation | `ghost_batch_norm`, `batch_renorm`, `layer_norm2d` |

The only process-wide state is the cache of `torch.compile`'d kernels used by
`ghost_batch_norm(..., fused=True)`, kept in `reglight._compile`.

Examples:
    >>> import torch
    >>> from reglight.nn import functional as RF
    >>> x = torch.randn(8, 4, 6, 6)
    >>> y = RF.drop_path(RF.drop_block2d(x, p=0.1, block_size=3), p=0.2)
    >>> torch.equal(RF.drop_path(x, p=0.2, training=False), x), y.shape
    (True, torch.Size([8, 4, 6, 6]))
"""

from reglight.nn.functional._dropblock import drop_block2d, drop_block2d_gamma
from reglight.nn.functional._dropout import (
    DROPOUT_SCALINGS,
    drop_connect,
    drop_path,
    dropout,
    gaussian_dropout,
    locked_dropout,
)
from reglight.nn.functional._norm import batch_renorm, ghost_batch_norm, layer_norm2d

__all__ = [
    "DROPOUT_SCALINGS",
    "batch_renorm",
    "drop_block2d",
    "drop_block2d_gamma",
    "drop_connect",
    "drop_path",
    "dropout",
    "gaussian_dropout",
    "ghost_batch_norm",
    "layer_norm2d",
    "locked_dropout",
]
