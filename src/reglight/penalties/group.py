r"""Group lasso: structured sparsity that switches off whole neurons or channels.

For a tensor $\theta$ and a dimension `dim`, group $g$ is the slice
`theta.select(dim, g)`: with `dim=0` a row of a `Linear` weight (all inputs of one output
neuron) or an output channel of a convolution; with `dim=1` a column of a `Linear` weight (one
input feature, i.e. feature selection). The penalty (Yuan & Lin, 2006) is

$$
\alpha \sum_g \sqrt{|g|}\, \|\theta_g\|_2 .
$$

Its proximal operator with step $t$ is group soft-thresholding,
$\theta_g \leftarrow \max(0, 1 - t\alpha\sqrt{|g|} / \|\theta_g\|_2)\, \theta_g$, which zeroes
a whole group when $\|\theta_g\|_2 \le t\alpha\sqrt{|g|}$.

With per-coordinate steps $t_i$ (Adam) the prox in the metric $\operatorname{diag}(1/t)$
has no closed form. With $c = \alpha\sqrt{|g|}$ its solution is $x_g = 0$ if
$\|v_g / t_g\|_2 \le c$ and otherwise $x_i = v_i\, r / (r + c t_i)$, where $r > 0$
solves the secular equation $\sum_i v_i^2 / (r + c t_i)^2 = 1$. We solve it with Newton's method
on $1/\|w(r)\| - 1$, $w_i = v_i / (r + c t_i)$, started at $r = 0$ (the approach of
Moré & Sorensen, 1983, for the trust-region equation of the same form): the iteration is monotone,
exact in one step when all $t_i$ are equal and converges quadratically, so
`NEWTON_ITERATIONS` fixed iterations reach float32 accuracy without host synchronization.

Group norms need one reduction per tensor, so these functions loop over tensors (one norm kernel and
one in-place multiply each) rather than using `torch._foreach_*` kernels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from reglight._validation import check_nonnegative
from reglight.penalties.base import (
    Params,
    Penalty,
    as_real,
    as_tensor_list,
    normalize_step,
    params_and_grads,
)
from reglight.penalties.steps import StepSize

__all__ = [
    "NEWTON_ITERATIONS",
    "GroupLasso",
    "group_lasso_grad_",
    "group_lasso_prox_",
    "group_lasso_value",
    "group_norms",
]

#: Newton iterations of the secular equation for per-coordinate steps (float32-exact after ~4).
NEWTON_ITERATIONS: int = 6


def _check_dim(x: Tensor, dim: int) -> int:
    if not -x.dim() <= dim < max(x.dim(), 1):
        raise ValueError(
            f"`dim` must index a dimension of every penalized tensor, got dim={dim} "
            f"for a tensor of shape {tuple(x.shape)}"
        )
    return dim % max(x.dim(), 1)


def _group_shape(x: Tensor, dim: int) -> list[int]:
    """Shape that broadcasts a per-group vector along `dim`."""
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    return shape


def group_norms(x: Tensor, dim: int = 0) -> Tensor:
    """The L2 norm of every group `x.select(dim, g)`.

    Args:
        x: a tensor with at least one dimension.
        dim: the dimension that indexes the groups.

    Returns:
        A tensor of shape `(x.shape[dim],)` (differentiable; its gradient at a zero group is 0).

    Raises:
        ValueError: if `dim` is not a dimension of `x`.

    Examples:
        >>> import torch
        >>> group_norms(torch.tensor([[3.0, 4.0], [0.0, 0.0]]), dim=0)
        tensor([5., 0.])
    """
    d = _check_dim(x, dim)
    if x.dim() <= 1:
        return x.abs()
    others = [i for i in range(x.dim()) if i != d]
    return torch.linalg.vector_norm(x, 2, dim=others)


def _group_weight(x: Tensor, dim: int) -> float:
    return math.sqrt(x.numel() / x.shape[dim]) if x.dim() > 1 else 1.0


def group_lasso_value(params: Params, alpha: float, dim: int = 0) -> Tensor:
    r"""The group-lasso penalty $\alpha \sum_k \sum_g \sqrt{|g|}\,\|\theta_{k,g}\|_2$.

    Args:
        params: the penalized tensors.
        alpha: $\alpha \ge 0$.
        dim: the dimension that indexes the groups of every tensor.

    Returns:
        A scalar tensor (differentiable).

    Examples:
        >>> import torch
        >>> group_lasso_value([torch.tensor([[3.0, 4.0], [0.0, 1.0]])], alpha=1.0)
        tensor(8.4853)
    """
    alpha = check_nonnegative("alpha", as_real(alpha))
    ts = as_tensor_list(params)
    if not ts:
        return torch.zeros(())
    terms = [group_norms(p, dim).sum() * _group_weight(p, dim % max(p.dim(), 1)) for p in ts]
    return alpha * torch.stack(terms).sum()


@torch.no_grad()
def group_lasso_grad_(params: Params, grads: Sequence[Tensor], alpha: float, dim: int = 0) -> None:
    r"""Add $\alpha\sqrt{|g|}\,\theta_g / \|\theta_g\|_2$ (0 for a zero group) to the gradients.

    Args:
        params: the penalized tensors.
        grads: their gradients (same shapes), updated in place.
        alpha: $\alpha \ge 0$.
        dim: the dimension that indexes the groups.

    Examples:
        >>> import torch
        >>> p, g = torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.zeros(2, 2)
        >>> group_lasso_grad_([p], [g], alpha=1.0)
        >>> g
        tensor([[0.8485, 1.1314],
                [0.0000, 0.0000]])
    """
    ps = as_tensor_list(params)
    gs = as_tensor_list(grads)
    if len(ps) != len(gs):
        raise ValueError(f"`grads` must have one entry per tensor ({len(ps)}), got {len(gs)}")
    if not check_nonnegative("alpha", as_real(alpha)):
        return
    for p, g in zip(ps, gs):
        d = _check_dim(p, dim)
        norms = group_norms(p, d)
        c = alpha * _group_weight(p, d)
        coef = torch.where(norms > 0, c / norms, torch.zeros_like(norms))
        g.addcmul_(p, coef.view(_group_shape(p, d)))


@torch.no_grad()
def group_lasso_prox_(params: Params, step: StepSize, alpha: float, dim: int = 0) -> None:
    r"""Group soft-thresholding in place: the proximal operator of the group lasso.

    Scalar step $t$: $\theta_g \leftarrow \max(0, 1 - t\alpha\sqrt{|g|}/\|\theta_g\|)\,
    \theta_g$. Per-coordinate steps: the exact prox in the metric $\operatorname{diag}(1/t)$
    (see the module docstring).

    Args:
        params: the penalized tensors.
        step: a positive float, one per tensor, one tensor of per-coordinate steps per tensor, or a
            [`DiagonalStep`][reglight.penalties.DiagonalStep].
        alpha: $\alpha \ge 0$.
        dim: the dimension that indexes the groups.

    Examples:
        >>> import torch
        >>> p = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
        >>> group_lasso_prox_([p], step=1.0, alpha=1.0 / 2**0.5)
        >>> p
        tensor([[2.4000, 3.2000],
                [0.0000, 0.0000]])
    """
    ps = as_tensor_list(params)
    steps = normalize_step(step, len(ps))
    if not check_nonnegative("alpha", as_real(alpha)):
        return
    for k, p in enumerate(ps):
        d = _check_dim(p, dim)
        c = alpha * _group_weight(p, d)
        if isinstance(steps, list):
            norms = group_norms(p, d)
            tau = steps[k] * c
            scale = torch.where(norms > tau, 1.0 - tau / norms, torch.zeros_like(norms))
            p.mul_(scale.view(_group_shape(p, d)))
        else:
            _diagonal_group_prox_(p, steps.tensor(k), c, d)


def _diagonal_group_prox_(p: Tensor, t: Tensor, c: float, dim: int) -> None:
    """Group prox of `c * ||x_g||` in the metric diag(1/t), solved by Newton (see module doc)."""
    if p.dim() <= 1:  # every coordinate is its own group: soft-thresholding at c * t
        p.sub_(torch.minimum(torch.maximum(p, -c * t), c * t))
        return
    moved = p.movedim(dim, 0)
    v = moved.reshape(moved.shape[0], -1)
    a = (c * t).movedim(dim, 0).reshape(v.shape)
    zero = torch.linalg.vector_norm(v / a, 2, dim=1, keepdim=True) <= 1.0  # ||v/t|| <= c
    r = torch.zeros_like(v[:, :1])
    for _ in range(NEWTON_ITERATIONS):
        den = r + a
        w = v / den
        nw = torch.linalg.vector_norm(w, 2, dim=1, keepdim=True)
        s = (w * w / den).sum(dim=1, keepdim=True)
        r = (r + (nw - 1.0) * nw * nw / s).clamp_min_(0.0)
        r = torch.where(zero, torch.zeros_like(r), r)
    x = torch.where(zero, torch.zeros_like(v), v * (r / (r + a)))
    moved.copy_(x.view(moved.shape))


class GroupLasso(Penalty):
    r"""Group-lasso penalty $\alpha \sum_g \sqrt{|g|}\,\|\theta_g\|_2$ (Yuan & Lin, 2006).

    Groups are the slices along `dim` of every penalized tensor: `dim=0` groups rows of
    `Linear` weights and output channels of convolutions (whole neurons/channels switch off),
    `dim=1` groups input features. See `reglight.penalties.group` for the prox.

    `alpha` is the lasso's $\alpha$: each group's Euclidean norm is weighted by $\sqrt{|g|}$, the
    square root of its number of coordinates (Yuan & Lin's weighting, which puts groups of
    different sizes on one scale), so groups of one coordinate (a 1-d tensor) give exactly
    [`L1`][reglight.penalties.L1]`(alpha)`. scikit-learn has no group lasso; its
    `MultiTaskLasso(alpha)` is the unweighted $\alpha\sum_j\|W_{:,j}\|_2$.

    Args:
        alpha: $\alpha \ge 0$.
        dim: the dimension that indexes the groups (negative values count from the end).

    Raises:
        ValueError: if `alpha` is negative or not finite.
        TypeError: if `dim` is not an integer.

    Examples:
        >>> import torch
        >>> w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
        >>> penalty = GroupLasso(alpha=0.5)
        >>> penalty.prox_([w], step=1.0)
        >>> w
        tensor([[2.5757, 3.4343],
                [0.0000, 0.0000]])
        >>> penalty.sparsity([w])["dead_group_fraction"]
        tensor(0.5000)
    """

    def __init__(self, alpha: float, dim: int = 0) -> None:
        super().__init__(alpha)
        self.dim = dim

    @property
    def dim(self) -> int:
        """The dimension that indexes the groups (settable)."""
        return self._dim

    @dim.setter
    def dim(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"`dim` must be an int, got {value!r}")
        self._dim = value

    def hparams(self) -> dict[str, float | int]:
        """The penalty's hyperparameters (what `state_dict` saves)."""
        return {"alpha": self.alpha, "dim": self.dim}

    def value(self, params: Params) -> Tensor:
        """The penalty (differentiable).

        Args:
            params: the penalized tensors.

        Returns:
            A scalar tensor.
        """
        return group_lasso_value(params, self.alpha, self.dim)

    def add_grad_(self, params: Params, grads: Iterable[Tensor] | None = None) -> None:
        """Add the (sub)gradient to `grads` (default: each tensor's `.grad`) in place.

        Args:
            params: the penalized tensors.
            grads: the gradients to update; by default `.grad` (tensors without one are skipped).
        """
        ps, gs = params_and_grads(params, grads)
        group_lasso_grad_(ps, gs, self.alpha, self.dim)

    def prox_(self, params: Params, step: StepSize) -> None:
        """Group soft-thresholding with step `step` in place.

        Args:
            params: the penalized tensors.
            step: a positive float, one per tensor, one tensor of per-coordinate steps per tensor,
                or a [`DiagonalStep`][reglight.penalties.DiagonalStep].
        """
        group_lasso_prox_(params, step, self.alpha, self.dim)

    @torch.no_grad()
    def sparsity(self, params: Params) -> dict[str, Tensor]:
        """Fractions of exactly-zero entries and of dead (all-zero) groups.

        Args:
            params: the penalized tensors.

        Returns:
            `{"zero_fraction": ..., "dead_group_fraction": ...}` as tensors.
        """
        ts = as_tensor_list(params)
        stats = super().sparsity(ts)
        if not ts:
            stats["dead_group_fraction"] = torch.zeros(())
            return stats
        dead = torch.stack([(group_norms(p, self.dim) == 0).sum() for p in ts]).sum()
        total = sum(p.shape[_check_dim(p, self.dim)] if p.dim() else 1 for p in ts)
        stats["dead_group_fraction"] = dead.to(torch.float32) / total
        return stats
