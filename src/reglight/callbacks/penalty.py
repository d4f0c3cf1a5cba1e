r"""A Lightning callback that applies a `reglight.penalties` penalty to any LightningModule.

Two ways to minimize $\mathcal{L}(\theta) + R(\theta)$, where $R$ is the penalty (e.g.
$R(\theta) = \alpha\lVert\theta\rVert_1$ for `L1`):

- `method="gradient"` adds $\nabla R(\theta)$ to the gradients in `on_before_optimizer_step`: after AMP
  unscaling and DDP's gradient averaging, before gradient clipping, once per real optimizer step under
  `accumulate_grad_batches`. The result is the same as adding `penalty.value(params)` to the loss, without
  the extra autograd graph. Like any (sub)gradient method it never makes a weight exactly zero.
- `method="proximal"` lets the optimizer step on the loss alone and then applies the penalty's proximal
  operator with the step size $\eta$ that optimizer used, $\theta \leftarrow \operatorname{prox}_{\eta R}(\theta)$:
  SGD's `lr` turns the pair into proximal gradient descent (ISTA for L1) and produces exact zeros;
  Adam-family optimizers get the per-coordinate step $\eta_i = \text{lr} / (\sqrt{\hat v_i} + \epsilon)$
  from their state (the proximal operator in the metric of Adam's diagonal preconditioner; see
  [`optimizer_step_sizes`][reglight.penalties.optimizer_step_sizes]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from reglight._validation import check_choice
from reglight.penalties import (
    L1,
    L2,
    ElasticNet,
    FusedElasticNetGrad,
    Penalty,
    optimizer_step_sizes,
    select_parameters,
)
from reglight.penalties.base import params_and_grads
from reglight.penalties.selection import Pattern, normalize_patterns

__all__ = ["PenaltyHook"]

# the penalties whose gradient `FusedElasticNetGrad` computes (`fused=True`)
_FUSABLE = (L1, L2, ElasticNet)


def _is_log_step(trainer: pl.Trainer) -> bool:
    r"""Whether step metrics are due after this optimizer step, by the Trainer's `log_every_n_steps`.

    Called in `on_train_batch_end`, where `trainer.global_step` already counts the step just taken: with
    one optimizer this is the rule by which the Trainer writes step metrics to its loggers (steps
    $n, 2n, \dots$, and the last one when training stops).
    """
    # a Trainer argument that the Trainer stores outside its __init__ (so type checkers miss it)
    n = int(getattr(trainer, "log_every_n_steps", 50))
    return n > 0 and (trainer.global_step % n == 0 or trainer.should_stop)


class PenaltyHook(Callback):
    r"""Regularize a LightningModule's parameters with a penalty, by gradient or proximal steps.

    The penalized parameters are chosen at the start of `fit` with
    [`select_parameters`][reglight.penalties.select_parameters] (default: weights of Linear/Conv/attention
    projections; biases, norms and embeddings excluded). `include`/`exclude` use the library's one selector
    vocabulary: a glob on qualified **parameter** names (`"encoder.*.weight"`), an `nn.Module` subclass, or a
    class name / import path (`"Linear"`, `"torch.nn.Linear"`); see
    `reglight.penalties.selection`. Each optimizer step touches only the
    penalized parameters that belong to the optimizer being stepped, so several optimizers and parameter
    groups (with their own learning rates) work. `penalty.alpha` is read at every step, so a schedule
    may change it during training; it is saved in the callback's `state_dict` and restored when training
    resumes from a checkpoint.

    Logged every `log_every_n_steps` optimizer steps (computed only then, so no per-step host sync):
    `{name}/value` ($R(\theta)$), `{name}/alpha`, `{name}/zero_fraction` (exact zeros among penalized
    entries) and, for group penalties, `{name}/dead_group_fraction`.

    Under DDP every rank holds the same weights and averaged gradients, so every rank makes the same
    update and the weights stay identical. Sharded strategies (FSDP, DeepSpeed) are not supported.

    Args:
        penalty: the penalty, e.g. `L1(1e-4)`; available afterwards as `hook.penalty`.
        method: `"gradient"` (add the penalty's gradient before the optimizer step) or `"proximal"`
            (apply its proximal operator after the optimizer step).
        include: which parameters to penalize: a pattern or a sequence of patterns; `None` for the
            default of [`select_parameters`][reglight.penalties.select_parameters].
        exclude: which parameters not to penalize: a pattern or a sequence of patterns.
        log: log the penalty's value and sparsity.
        adaptive: with `method="proximal"`, use the per-coordinate steps of adaptive optimizers (Adam,
            AdamW, NAdam, Adagrad, RMSprop); `False` uses the group's `lr` for every optimizer.
        name: prefix of the logged keys; also distinguishes several hooks in a checkpoint.
        fused: `method="gradient"` with `L1`, `L2` or `ElasticNet` only: add the penalty's gradient with
            one `torch.compile`'d pass over each weight and its gradient
            ([`FusedElasticNetGrad`][reglight.penalties.FusedElasticNetGrad]) instead of the eager
            kernels' two (L1) or three (elastic net). Compiled at the first step (a few seconds); falls back
            to the eager kernels with a warning if compilation fails.

    Raises:
        ValueError: if `method` is unknown, `name` is empty, or `fused` is asked for with
            `method="proximal"` or a penalty other than `L1`, `L2` and `ElasticNet`; at the start of `fit`,
            if an `include` entry matches no parameter (the message lists the parameter names).
        TypeError: if `penalty` is not a [`Penalty`][reglight.penalties.Penalty] or an
            `include`/`exclude` entry is not a pattern.

    Examples:
        >>> from reglight.penalties import L1
        >>> hook = PenaltyHook(L1(1e-3), method="proximal", exclude="head.*")
        >>> hook.penalty.alpha = 5e-3  # e.g. from a schedule, between steps
        >>> hook.state_dict()
        {'penalty': {'alpha': 0.005}}
    """

    def __init__(
        self,
        penalty: Penalty,
        method: str = "gradient",
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        log: bool = True,
        adaptive: bool = True,
        name: str = "penalty",
        fused: bool = False,
    ) -> None:
        if not isinstance(penalty, Penalty):
            raise TypeError(f"`penalty` must be a reglight Penalty, got {type(penalty).__name__}")
        self.penalty = penalty
        self.method = check_choice("method", method, ("gradient", "proximal"))
        self.include = normalize_patterns("include", include)
        self.exclude = normalize_patterns("exclude", exclude)
        # not `self.log`: Lightning replaces every callback's `log` with the module's `log` method at fit start
        self.log_values = bool(log)
        self.adaptive = bool(adaptive)
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got {name!r}")
        self.name = name
        self.fused = bool(fused)
        if self.fused and (self.method != "gradient" or not isinstance(penalty, _FUSABLE)):
            raise ValueError(
                "`fused=True` needs method='gradient' and an L1, L2 or ElasticNet penalty, got "
                f"method={self.method!r} and {type(penalty).__name__}"
            )
        self._fused = FusedElasticNetGrad() if self.fused else None
        self._params: list[nn.Parameter] = []
        self._by_optimizer: dict[int, tuple[int, list[nn.Parameter]]] = {}
        self._handles: list[RemovableHandle] = []
        self._last_logged_step = -1

    @property
    @override
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint (unique per name, penalty type and method)."""
        return self._generate_state_key(
            name=self.name,
            penalty=type(self.penalty).__name__,
            method=self.method,
            include=[p if isinstance(p, str) else p.__qualname__ for p in self.include],
            exclude=[p if isinstance(p, str) else p.__qualname__ for p in self.exclude],
        )

    @property
    def parameters(self) -> list[nn.Parameter]:
        """The penalized parameters (filled at the start of `fit`)."""
        return list(self._params)

    # ----------------------------------------------------------------------------------- set-up

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Select the penalized parameters and, with `method="proximal"`, hook into every optimizer."""
        self._check_log_names(trainer)
        self._remove_handles()
        self._by_optimizer = {}
        self._last_logged_step = -1
        self._params = select_parameters(pl_module, self.include, self.exclude)
        if not self._params:
            rank_zero_warn(f"PenaltyHook({self.penalty!r}): no parameter selected, nothing to do.")
            return
        in_optimizers = {id(p) for opt in trainer.optimizers for p in self._optimizer_params(opt)}
        missing = sum(id(p) not in in_optimizers for p in self._params)
        if missing:
            rank_zero_warn(
                f"PenaltyHook: {missing} of {len(self._params)} penalized parameters are in no "
                "optimizer and stay unpenalized."
            )
        if self.method == "proximal":
            for opt in trainer.optimizers:
                self._handles.append(opt.register_step_post_hook(self._after_optimizer_step))

    def _check_log_names(self, trainer: pl.Trainer) -> None:
        """Refuse a second logging `PenaltyHook` with this one's `name`: its values would overwrite ours."""
        if not self.log_values:
            return
        clash = [
            cb
            for cb in getattr(
                trainer, "callbacks", ()
            )  # a hand-driven hook may get a stand-in trainer
            if isinstance(cb, PenaltyHook)
            and cb is not self
            and cb.log_values
            and cb.name == self.name
        ]
        if clash:
            raise ValueError(
                f"{len(clash) + 1} PenaltyHook callbacks log under the same `name`={self.name!r} "
                f"(keys `{self.name}/value`, ...), so only one's values would be kept; give each its own "
                "`name` (e.g. name='penalty_encoder') or pass log=False"
            )

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remove the optimizer hooks."""
        self._remove_handles()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the optimizer hooks (also after an exception)."""
        self._remove_handles()

    def _remove_handles(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @staticmethod
    def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
        return [p for group in optimizer.param_groups for p in group["params"]]

    def _params_of(self, optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
        """The penalized parameters of `optimizer` (cached; refreshed if its groups change)."""
        signature = sum(len(group["params"]) for group in optimizer.param_groups)
        cached = self._by_optimizer.get(id(optimizer))
        if cached is None or cached[0] != signature:
            ids = {id(p) for p in self._optimizer_params(optimizer)}
            cached = (signature, [p for p in self._params if id(p) in ids])
            self._by_optimizer[id(optimizer)] = cached
        return cached[1]

    # ------------------------------------------------------------------------------- the updates

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """`method="gradient"`: add the penalty's gradient (unscaled, averaged, not yet clipped)."""
        if self.method != "gradient" or self.penalty.alpha == 0.0:
            return
        params, grads = params_and_grads(self._params_of(optimizer), None)
        if not params:
            return
        if self._fused is not None and isinstance(self.penalty, _FUSABLE):
            self._fused(params, grads, self.penalty.alpha, self.penalty.l1_ratio)
        else:
            self.penalty.add_grad_(params, grads)

    def _after_optimizer_step(
        self, optimizer: torch.optim.Optimizer, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """`method="proximal"`: prox with the step the optimizer just took (a torch step post-hook)."""
        if self.penalty.alpha == 0.0:
            return
        params, steps = optimizer_step_sizes(optimizer, self._params_of(optimizer), self.adaptive)
        if params:
            self.penalty.prox_(params, steps)

    # --------------------------------------------------------------------------------- logging

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Log value and sparsity at the Trainer's log interval (tensors; no host sync here)."""
        if not self.log_values or not self._params or not _is_log_step(trainer):
            return
        if trainer.global_step == self._last_logged_step:
            return  # several micro-batches of one accumulated step
        self._last_logged_step = trainer.global_step
        with torch.no_grad():
            metrics = {"value": self.penalty.value(self._params)}
            metrics.update(self.penalty.sparsity(self._params))
        pl_module.log(f"{self.name}/alpha", self.penalty.alpha, on_step=True, on_epoch=False)
        for key, value in metrics.items():
            pl_module.log(f"{self.name}/{key}", value.detach(), on_step=True, on_epoch=False)

    # ---------------------------------------------------------------------------- checkpointing

    @override
    def state_dict(self) -> dict[str, Any]:
        """The penalty's hyperparameters (its current `alpha` included)."""
        return {"penalty": self.penalty.state_dict()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the penalty's hyperparameters from a checkpoint.

        Args:
            state_dict: what `state_dict` returned.
        """
        self.penalty.load_state_dict(state_dict["penalty"])

    def __repr__(self) -> str:
        return f"PenaltyHook({self.penalty!r}, method={self.method!r}, name={self.name!r})"
