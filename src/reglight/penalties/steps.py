"""Step sizes for proximal updates, and how to read them off a torch optimizer.

A proximal-gradient step first takes the optimizer's step on the loss and then applies the proximal
operator of the penalty with *the step size that optimizer used*. For plain SGD that step is the
learning rate and the pair is ISTA. Adaptive optimizers precondition the gradient with a diagonal
matrix: Adam moves coordinate `i` by `lr / (sqrt(v̂_i) + eps)` times the (averaged) gradient, so the
matching proximal step uses the same per-coordinate step sizes, i.e. the proximal operator in the
metric of the preconditioner (Yun, Lozano & Yang, "Adaptive proximal gradient methods for structured
neural networks", NeurIPS 2021). [`DiagonalStep`][reglight.penalties.DiagonalStep] describes such steps without materializing them;
[`optimizer_step_sizes`][reglight.penalties.optimizer_step_sizes] builds it from an optimizer's state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["DiagonalStep", "StepSize", "optimizer_step_sizes"]


class DiagonalStep:
    r"""Per-coordinate step sizes of a diagonal preconditioner, computed lazily block by block.

    For tensor `k` with second-moment estimate $v_k$ the step of coordinate `i` is

    $$
    t_{k,i} = \frac{\mathrm{lr}_k}{\sqrt{v_{k,i} / c_k} + \varepsilon_k},
    $$

    with $c_k$ the bias correction ($1 - \beta_2^t$ for Adam, 1 for Adagrad/RMSprop).

    Args:
        second_moments: one tensor per penalized tensor, same shapes (e.g. Adam's `exp_avg_sq`).
        lr: learning rate per tensor.
        eps: `eps` per tensor.
        bias_correction: divisor of the second moment per tensor; `None` means 1 for all.

    Raises:
        ValueError: if the per-tensor lists do not all have the length of `second_moments`.

    Examples:
        >>> import torch
        >>> step = DiagonalStep([torch.tensor([4.0, 0.0])], lr=[0.1], eps=[1e-8])
        >>> step.tensor(0)
        tensor([5.0000e-02, 1.0000e+07])
    """

    def __init__(
        self,
        second_moments: Sequence[Tensor],
        lr: Sequence[float],
        eps: Sequence[float],
        bias_correction: Sequence[float] | None = None,
    ) -> None:
        n = len(second_moments)
        bc = [1.0] * n if bias_correction is None else list(bias_correction)
        for name, values in (("lr", lr), ("eps", eps), ("bias_correction", bc)):
            if len(values) != n:
                raise ValueError(
                    f"`{name}` must have one entry per second moment ({n}), got {len(values)}"
                )
        self.second_moments = list(second_moments)
        self.lr = [float(x) for x in lr]
        self.eps = [float(x) for x in eps]
        self.bias_correction = [float(x) for x in bc]

    def __len__(self) -> int:
        return len(self.second_moments)

    def lists(self) -> list[Sequence[Tensor]]:
        """The tensor lists to cut into blocks alongside the parameters."""
        return [self.second_moments]

    def compute(self, index: Sequence[int], blocks: Sequence[Sequence[Tensor]]) -> list[Tensor]:
        """Step sizes for one block (new tensors, safe to modify).

        Args:
            index: position of each block entry's tensor in the full lists.
            blocks: the blocks of `lists` (here: of the second moments).

        Returns:
            One step-size tensor per block entry.
        """
        (moments,) = blocks
        denom = list(torch._foreach_sqrt(list(moments)))
        bc = [math.sqrt(self.bias_correction[k]) for k in index]
        if any(c != 1.0 for c in bc):
            torch._foreach_div_(denom, bc)
        torch._foreach_add_(denom, [self.eps[k] for k in index])
        torch._foreach_reciprocal_(denom)
        torch._foreach_mul_(denom, [self.lr[k] for k in index])
        return denom

    def tensor(self, k: int) -> Tensor:
        """The full step-size tensor of tensor `k`.

        Args:
            k: position in the lists.

        Returns:
            A new tensor shaped like `second_moments[k]`.
        """
        return self.compute([k], [[self.second_moments[k]]])[0]


class _ExplicitStep:
    """Step sizes given as tensors (one per parameter, same shapes)."""

    def __init__(self, tensors: Sequence[Tensor]) -> None:
        self.tensors = list(tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def lists(self) -> list[Sequence[Tensor]]:
        return [self.tensors]

    def compute(self, index: Sequence[int], blocks: Sequence[Sequence[Tensor]]) -> list[Tensor]:
        return list(blocks[0])  # read-only views: kernels must not modify them in place

    def tensor(self, k: int) -> Tensor:
        return self.tensors[k]


#: What a proximal operator accepts as its step: one positive float for all tensors, one float per
#: tensor, one tensor of per-coordinate steps per tensor, or a [`DiagonalStep`][reglight.penalties.DiagonalStep].
StepSize = float | Sequence[float] | Sequence[Tensor] | DiagonalStep


def _to_float(x: Any) -> float:
    # Optimizer hyperparameters and Adam's `step` counter live on the CPU unless the optimizer is
    # `capturable`/`fused` on an accelerator, so reading them is not a device synchronization.
    return float(x.item()) if isinstance(x, Tensor) else float(x)


def _adam_like(group: dict[str, Any], state: dict[str, Any]) -> bool:
    return "exp_avg_sq" in state and "betas" in group and "eps" in group


_warned: set[type] = set()


def optimizer_step_sizes(
    optimizer: torch.optim.Optimizer,
    params: Sequence[Tensor],
    adaptive: bool = True,
) -> tuple[list[Tensor], list[float] | DiagonalStep]:
    """The step sizes the optimizer's last `step()` used for the given parameters.

    Call it right after `optimizer.step()`. Parameters that are not in the optimizer, or that it did
    not update (no gradient, or a group with `lr == 0`), are left out.

    - Adam, AdamW, NAdam and other optimizers whose state holds `exp_avg_sq` next to `betas` and
      `eps`: the per-coordinate step `lr / (sqrt(exp_avg_sq / (1 - beta2**t)) + eps)`
      (`max_exp_avg_sq` under AMSGrad). For NAdam and RAdam this is the preconditioner of the update,
      not its exact scale.
    - Adagrad: `lr / (1 + (t - 1) * lr_decay) / (sqrt(sum) + eps)`.
    - RMSprop (not centered): `lr / (sqrt(square_avg) + eps)`.
    - everything else (SGD with or without momentum, ...), or `adaptive=False`: the group's `lr`.

    Args:
        optimizer: the optimizer that just stepped.
        params: the candidate parameters (e.g. the penalized ones).
        adaptive: use the per-coordinate steps of adaptive optimizers; `False` uses `lr` always.

    Returns:
        `(stepped, steps)`: the parameters the optimizer updated and either one float step per
        parameter or a [`DiagonalStep`][reglight.penalties.DiagonalStep].

    Examples:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> opt = torch.optim.SGD([w], lr=0.1)
        >>> w.grad = torch.ones(2)
        >>> opt.step()
        >>> optimizer_step_sizes(opt, [w])[1]
        [0.1]
    """
    wanted = {id(p) for p in params}
    stepped: list[Tensor] = []
    # One entry per stepped parameter: (second moment or None, lr, eps, bias correction).
    entries: list[tuple[Tensor | None, float, float, float]] = []
    for group in optimizer.param_groups:
        lr = _to_float(group["lr"])
        if lr <= 0.0:  # a frozen group: the optimizer did not move its parameters
            continue
        for p in group["params"]:
            if id(p) not in wanted or p.grad is None:
                continue
            state = optimizer.state.get(p, {})
            stepped.append(p)
            if not adaptive:
                entries.append((None, lr, 1.0, 1.0))
            elif _adam_like(group, state):
                beta2 = _to_float(group["betas"][1])
                t = _to_float(state["step"]) if "step" in state else 1.0
                v = state.get("max_exp_avg_sq") if group.get("amsgrad") else None
                v = state["exp_avg_sq"] if v is None else v
                entries.append((v, lr, _to_float(group["eps"]), 1.0 - beta2**t))
            elif isinstance(optimizer, torch.optim.Adagrad) and "sum" in state:
                t = _to_float(state["step"])
                clr = lr / (1.0 + (t - 1.0) * _to_float(group["lr_decay"]))
                entries.append((state["sum"], clr, _to_float(group["eps"]), 1.0))
            elif isinstance(optimizer, torch.optim.RMSprop) and "square_avg" in state:
                if group.get("centered", False):
                    _warn_once(optimizer, "centered RMSprop")
                    entries.append((None, lr, 1.0, 1.0))
                else:
                    entries.append((state["square_avg"], lr, _to_float(group["eps"]), 1.0))
            else:
                entries.append((None, lr, 1.0, 1.0))
    if all(v is None for v, *_ in entries):
        return stepped, [lr for _, lr, _, _ in entries]
    # Some (usually all) steps are per-coordinate. A scalar step lr is lr / (sqrt(0) + 1).
    moments = [torch.zeros_like(p) if v is None else v for p, (v, *_) in zip(stepped, entries)]
    return stepped, DiagonalStep(
        moments,
        lr=[e[1] for e in entries],
        eps=[e[2] for e in entries],
        bias_correction=[e[3] for e in entries],
    )


def _warn_once(optimizer: torch.optim.Optimizer, what: str) -> None:
    if type(optimizer) not in _warned:
        _warned.add(type(optimizer))
        warnings.warn(
            f"{type(optimizer).__name__}: no per-coordinate step known for {what}; "
            "the proximal step uses the group's `lr`.",
            stacklevel=3,
        )
