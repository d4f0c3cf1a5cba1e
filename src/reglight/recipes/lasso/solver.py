r"""The full-batch proximal gradient method of the lasso recipe: one exact (F)ISTA step per epoch.

The gradient of the mean loss is summed over the epoch's minibatches (memory bounded by the batch
size) and divided by the number of rows; the optimizer's SGD step and the penalty's proximal step
(by [`PenaltyHook`][reglight.callbacks.penalty.PenaltyHook]) then make one ISTA step

$$
x_{k+1} = \operatorname{prox}_{t\alpha R}\bigl(y_k - t\,\nabla f(y_k)\bigr),
$$

with $y_k = x_k$ (ISTA) or FISTA's extrapolation
$y_{k+1} = x_{k+1} + \frac{t_k - 1}{t_{k+1}}(x_{k+1} - x_k)$,
$t_{k+1} = \tfrac12\bigl(1 + \sqrt{1 + 4t_k^2}\bigr)$ (Beck & Teboulle 2009), restarted
($t_k = 1$) when the momentum points uphill, $(y_k - x_{k+1})^\top(x_{k+1} - x_k) > 0$
(O'Donoghue & Candès 2015). With the step $t = 1/L$ this converges to the minimizer.

[`FullBatchProximalGradient`][reglight.recipes.lasso.solver.FullBatchProximalGradient] holds this
state; it is pure torch and knows nothing of Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from reglight._validation import check_nonnegative

__all__ = ["FullBatchProximalGradient"]


class FullBatchProximalGradient:
    """Gradient accumulation over an epoch, FISTA extrapolation with restart, and the stopping rule.

    Use per epoch: [`begin_batch`][reglight.recipes.lasso.solver.FullBatchProximalGradient.begin_batch]
    before each batch's forward pass,
    [`accumulate`][reglight.recipes.lasso.solver.FullBatchProximalGradient.accumulate] after its
    backward pass of the *summed* loss, then
    [`mean_gradient_`][reglight.recipes.lasso.solver.FullBatchProximalGradient.mean_gradient_], the
    optimizer step (SGD + prox), and
    [`update`][reglight.recipes.lasso.solver.FullBatchProximalGradient.update].

    Args:
        accelerated: FISTA's extrapolation (with restart); `False` is plain ISTA.
        tol: converged when a step changes no coefficient of the first tensor by more than `tol`
            times its largest entry (0: never).

    Examples:
        >>> import torch
        >>> w = torch.zeros(2, requires_grad=True)
        >>> solver = FullBatchProximalGradient(accelerated=True, tol=1e-8)
        >>> solver.start([w])
        >>> opt = torch.optim.SGD([w], lr=0.5)
        >>> for epoch in range(200):  # minimize ½‖w - (1, 2)‖² in batches of one coordinate
        ...     solver.begin_batch([w])
        ...     for k in range(2):
        ...         loss = 0.5 * (w[k] - (k + 1.0)) ** 2
        ...         loss.backward()
        ...         solver.accumulate(loss.detach(), 1)
        ...     mean_loss = solver.mean_gradient_([w])
        ...     opt.step(); opt.zero_grad()
        ...     if solver.update([w]):
        ...         break
        >>> [round(v, 6) for v in w.tolist()]
        [1.0, 2.0]
    """

    def __init__(self, accelerated: bool = True, tol: float = 1e-6) -> None:
        self.accelerated = bool(accelerated)
        self.tol = check_nonnegative("tol", tol)
        self._x: list[Tensor] | None = None
        self._y: list[Tensor] | None = None
        self._t = 1.0
        self.last_change = math.inf
        """The last step's largest coefficient change over the largest coefficient (`inf` before one)."""
        self.steps = 0
        """Number of steps since `start`."""
        self._reset_sums()

    def _reset_sums(self) -> None:
        self.rows = 0
        self._loss_sum: Tensor | float = 0.0

    @torch.no_grad()
    def start(self, params: Sequence[Tensor]) -> None:
        """Start from the current parameters (no momentum, empty sums)."""
        self._x = [p.detach().clone() for p in params]
        self._y = None
        self._t = 1.0
        self.last_change = math.inf
        self.steps = 0
        self._reset_sums()

    @torch.no_grad()
    def begin_batch(self, params: Sequence[Tensor]) -> None:
        """At the epoch's first batch, move the parameters to the extrapolated point $y_k$."""
        if self.rows == 0 and self._y is not None:
            torch._foreach_copy_(list(params), self._y)

    def accumulate(self, loss_sum: Tensor, rows: int) -> None:
        """Count a batch whose summed loss has been backpropagated.

        Args:
            loss_sum: the batch's summed loss (detached).
            rows: its number of rows.
        """
        self.rows += rows
        self._loss_sum = self._loss_sum + loss_sum

    @torch.no_grad()
    def mean_gradient_(self, params: Sequence[Tensor]) -> Tensor:
        """Divide the summed gradients by the number of rows, in place; return the mean loss.

        Raises:
            RuntimeError: if no batch was accumulated.
        """
        if self.rows == 0:
            raise RuntimeError("no batch was accumulated this epoch")
        grads = [p.grad for p in params if p.grad is not None]
        torch._foreach_div_(grads, float(self.rows))
        mean = torch.as_tensor(self._loss_sum) / self.rows
        self._reset_sums()
        return mean

    @torch.no_grad()
    def update(self, params: Sequence[Tensor]) -> bool:
        """After the optimizer's (proximal) step: the next extrapolated point and the stopping test.

        Returns:
            `True` when the step changed no coefficient by more than `tol` times the largest.
        """
        x_old = self._x or [p.detach().clone() for p in params]
        x_new = [p.detach().clone() for p in params]
        if self.accelerated:
            y_old = self._y or x_old
            # gradient-based restart: momentum is dropped when it points uphill
            uphill = sum(
                float(((yo - xn) * (xn - xo)).sum()) for yo, xn, xo in zip(y_old, x_new, x_old)
            )
            t = 1.0 if uphill > 0 else self._t
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            beta = (t - 1.0) / t_next
            self._y = [xn + beta * (xn - xo) for xn, xo in zip(x_new, x_old)]
            self._t = t_next
        change = float((x_new[0] - x_old[0]).abs().max())
        size = float(x_new[0].abs().max())
        self._x = x_new
        self.steps += 1
        self.last_change = change / size if size > 0 else (0.0 if change == 0 else math.inf)
        return self.tol > 0 and change <= self.tol * size
