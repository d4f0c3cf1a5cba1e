"""reglight.nn: dropout family, normalisation layers and Monte-Carlo dropout (pure torch).

Modules go inside models; each has a functional twin in `reglight.nn.functional`. Nothing here
imports Lightning.
"""

from reglight.nn import attention, functional
from reglight.nn.dropout import (
    DROPOUT_TYPES,
    DropBlock2d,
    DropConnect,
    Dropout,
    DropPath,
    GaussianDropout,
    LockedDropout,
    drop_path_rates,
)
from reglight.nn.masked_norm import MaskedBatchNorm1d, masked_batch_norm
from reglight.nn.mc import mc_dropout, mc_predict
from reglight.nn.norm import (
    NORM_KINDS,
    BatchRenorm1d,
    BatchRenorm2d,
    BatchRenorm3d,
    GhostBatchNorm1d,
    GhostBatchNorm2d,
    GhostBatchNorm3d,
    LayerNorm2d,
    convert_norms,
)

__all__ = [
    "DROPOUT_TYPES",
    "NORM_KINDS",
    "BatchRenorm1d",
    "BatchRenorm2d",
    "BatchRenorm3d",
    "DropBlock2d",
    "DropConnect",
    "DropPath",
    "Dropout",
    "GaussianDropout",
    "GhostBatchNorm1d",
    "GhostBatchNorm2d",
    "GhostBatchNorm3d",
    "LayerNorm2d",
    "LockedDropout",
    "MaskedBatchNorm1d",
    "attention",
    "convert_norms",
    "drop_path_rates",
    "functional",
    "masked_batch_norm",
    "mc_dropout",
    "mc_predict",
]
