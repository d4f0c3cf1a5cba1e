r"""Penalties (L1, L2, elastic net, group lasso) and their proximal operators, in pure torch.

`alpha` and `l1_ratio` mean what they mean in scikit-learn: `L1(alpha)` is $\alpha\|\theta\|_1$,
`L2(alpha)` is $\frac{\alpha}{2}\|\theta\|_2^2$ (torch's `weight_decay=alpha`) and
`ElasticNet(alpha, l1_ratio)` is $\alpha(\rho\|\theta\|_1 + \frac{1-\rho}{2}\|\theta\|_2^2)$.

Each penalty offers its value (to add to a loss), an in-place (sub)gradient and an in-place proximal
operator, all over lists of tensors. [`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook] applies them to a
LightningModule; this package does not import Lightning.
"""

from reglight.penalties.base import Penalty
from reglight.penalties.elementwise import L1, L2, ElasticNet
from reglight.penalties.functional import (
    elastic_net_coefficients,
    elastic_net_grad_,
    elastic_net_prox_,
    elastic_net_value,
    soft_threshold,
    soft_threshold_,
)
from reglight.penalties.fused import FusedElasticNetGrad
from reglight.penalties.group import (
    GroupLasso,
    group_lasso_grad_,
    group_lasso_prox_,
    group_lasso_value,
    group_norms,
)
from reglight.penalties.loss import penalty_loss
from reglight.penalties.selection import (
    DEFAULT_PENALIZED_TYPES,
    select_named_parameters,
    select_parameters,
)
from reglight.penalties.steps import DiagonalStep, StepSize, optimizer_step_sizes

__all__ = [
    "DEFAULT_PENALIZED_TYPES",
    "L1",
    "L2",
    "DiagonalStep",
    "ElasticNet",
    "FusedElasticNetGrad",
    "GroupLasso",
    "Penalty",
    "StepSize",
    "elastic_net_coefficients",
    "elastic_net_grad_",
    "elastic_net_prox_",
    "elastic_net_value",
    "group_lasso_grad_",
    "group_lasso_prox_",
    "group_lasso_value",
    "group_norms",
    "optimizer_step_sizes",
    "penalty_loss",
    "select_named_parameters",
    "select_parameters",
    "soft_threshold",
    "soft_threshold_",
]
