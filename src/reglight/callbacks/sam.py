r"""SAMCallback: sharpness-aware minimization for a LightningModule whose optimizer stays as it is.

The callback turns the gradient of each training step into SAM's (Foret et al., 2021) or ASAM's (Kwon et al.,
2021) before anyone else sees it: right after Lightning's backward pass it moves the weights to
$w + \epsilon$, $\epsilon = \rho\, T_w^2 g / \lVert T_w g\rVert$, runs the training step and the backward pass
again, and puts the weights back. The optimizer of `configure_optimizers` then steps with
$\nabla L(w + \epsilon)$, exactly as [`reglight.optim.SAM`][reglight.optim.SAM] would have it do.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torch import Tensor
from typing_extensions import override

from reglight._validation import check_nonnegative, check_positive
from reglight.optim import SAM, PerturbationGroup, apply_perturbation, frozen_running_stats
from reglight.penalties.selection import Pattern, normalize_patterns, select_named_parameters

__all__ = ["SAMCallback"]


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


class SAMCallback(Callback):
    r"""Sharpness-aware minimization (SAM, ASAM) as a callback: no change to the model or its optimizer.

    After the backward pass of each training step (`on_after_backward`, before any
    `on_before_optimizer_step` hook, gradient clipping or the optimizer step), the callback

    1. computes $\epsilon = \rho\, T_w^2 g / (\lVert T_w g\rVert_2 + \text{eps})$ over the selected
       parameters ($T_w = 1$ for SAM, $T_w = \lvert w\rvert + \eta$ for ASAM) and moves them to
       $w + \epsilon$;
    2. runs the module's `training_step` on the same batch again and back-propagates its loss (with gradient
       accumulation: on every micro-batch of the step, kept since the step began, each loss divided by
       `accumulate_grad_batches` as Lightning does), with
       `self.log` / `self.log_dict` silenced and the running statistics of normalization layers kept from
       changing ([`frozen_running_stats`][reglight.optim.frozen_running_stats]);
    3. restores $w$ exactly. The gradients are now $\nabla L(w + \epsilon)$ for every parameter.

    Everything else stays Lightning's: the logged loss, the step outputs and the progress bar are those of
    the first pass; gradient clipping (by norm or by value) and `on_before_optimizer_step` hooks (e.g.
    [`PenaltyHook`][reglight.callbacks.PenaltyHook]) act on the SAM gradient; learning-rate schedulers and
    checkpoints see the optimizer of `configure_optimizers`, unchanged.

    **Gradient accumulation** (`accumulate_grad_batches = k`) is exact: $g$ is the accumulated gradient of
    the $k$ micro-batches, and the second pass re-runs all $k$ of them at $w + \epsilon$ (the callback holds
    references to them until the step).

    **DDP**: by default ($m$-sharpness, as in Foret et al.) each process computes $\epsilon$ from its own
    gradient, so the first backward pass runs under DDP's `no_sync` (no all-reduce); the second pass's
    gradients are all-reduced as usual, and every process ends the step with the same weights.
    `local_ascent=False` all-reduces the first gradient too ($\epsilon$ from the global batch, what
    [`SAM`][reglight.optim.SAM] does under DDP).

    Trade-offs against [`reglight.optim.SAM`][reglight.optim.SAM]: the callback needs no change to
    `configure_optimizers` and keeps the logs clean, but it calls `training_step` a second time itself, so
    side effects there other than logging (updating a torchmetrics object, counting batches) happen twice.
    Supported: single device and DDP (`ddp`, `ddp_spawn`), precision `32`, `64`, `bf16-mixed`, `bf16-true`,
    automatic optimization with one optimizer, gradient accumulation. Refused at fit start, with an error that
    says so: fp16 with a gradient scaler (`16-mixed`), manual optimization, other strategies, and a
    [`SAM`][reglight.optim.SAM] optimizer (that would be SAM twice).

    Args:
        rho: radius $\rho \ge 0$ (0 turns the second pass off; [`SAMRho`][reglight.callbacks.SAMRho]
            schedules it).
        adaptive: ASAM's scale-invariant neighbourhood.
        eta: ASAM's $\eta \ge 0$ (Kwon et al., 2021, use 0.01).
        include: which parameters to perturb, in the library's selection vocabulary (globs on parameter
            names, module classes or class names); `None` for every parameter.
        exclude: which parameters not to perturb, e.g. [`NORM_AND_BIAS`][reglight.optim.NORM_AND_BIAS].
        local_ascent: under DDP, compute $\epsilon$ from each process's own gradient (no all-reduce in the
            first pass).
        eps: added to the norm, $> 0$.

    Raises:
        ValueError: for a negative `rho` or `eta`, or a non-positive `eps`.
        TypeError: if an `include`/`exclude` entry is not a pattern.

    Examples:
        >>> from reglight.optim import NORM_AND_BIAS
        >>> cb = SAMCallback(rho=0.05, exclude=NORM_AND_BIAS)
        >>> cb.rho, cb.adaptive
        (0.05, False)
    """

    def __init__(
        self,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.01,
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        local_ascent: bool = True,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self._batch: tuple[Any, int] | None = None
        self._micro: list[tuple[Any, int]] = []  # the micro-batches of the current optimizer step
        self._rho = check_nonnegative("rho", rho)
        self.eta = check_nonnegative("eta", eta)
        self.eps = check_positive("eps", eps)
        if not isinstance(adaptive, bool):
            raise TypeError(f"`adaptive` must be a bool, got {adaptive!r}")
        if not isinstance(local_ascent, bool):
            raise TypeError(f"`local_ascent` must be a bool, got {local_ascent!r}")
        self.adaptive = adaptive
        self.local_ascent = local_ascent
        self.include = normalize_patterns("include", include)
        self.exclude = normalize_patterns("exclude", exclude)
        self._params: list[Tensor] = []
        self._backup: dict[Tensor, Tensor] = {}
        self._no_sync = ExitStack()
        self._no_sync_open = False
        self._local_pass = (
            False  # this batch's first pass ran (or may have run) without gradient sync
        )
        self._strategy: Any = None
        self._pass_batch_idx = True

    @property
    def rho(self) -> float:
        """The radius $\\rho$; setting it between batches or in `on_train_batch_start` hooks takes effect for
        the current batch."""
        return self._rho

    @rho.setter
    def rho(self, value: float) -> None:
        self._rho = check_nonnegative("rho", value)
        if (
            self._batch is not None
        ):  # inside a batch, before the backward pass: re-decide the first pass
            self._set_sync()

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _refuse(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise ValueError(
                "SAMCallback needs automatic optimization (the module sets automatic_optimization=False); "
                "with manual optimization use reglight.optim.SAM's first_step() and second_step()"
            )
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            raise ValueError(
                f"SAMCallback does not support fp16 with a gradient scaler (precision={trainer.precision!r}): "
                "the scaler checks and unscales one backward pass per step. Use precision='bf16-mixed' "
                "or '32-true'."
            )
        if not isinstance(trainer.strategy, (SingleDeviceStrategy, DDPStrategy)):
            raise ValueError(
                "SAMCallback supports a single device and DDP ('ddp', 'ddp_spawn', 'ddp_fork'), got the "
                f"strategy {type(trainer.strategy).__name__}"
            )
        if any(isinstance(o, SAM) for o in trainer.optimizers):
            raise ValueError(
                "SAMCallback and a reglight.optim.SAM optimizer together would perturb twice per step: "
                "use one of them"
            )

    # ------------------------------------------------------------------ hooks
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check the setup and select the parameters to perturb."""
        self._refuse(trainer, pl_module)
        chosen = select_named_parameters(
            pl_module, "*" if not self.include else self.include, self.exclude
        )
        self._params = [p for _, p in chosen if p.requires_grad]
        params = list(inspect.signature(pl_module.training_step).parameters.values())
        self._pass_batch_idx = len(params) >= 2 or any(
            p.kind is inspect.Parameter.VAR_POSITIONAL for p in params
        )

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Keep the batch for the second pass; under DDP, start the first pass without gradient sync."""
        self._close_no_sync()
        if batch_idx % trainer.accumulate_grad_batches == 0:  # the first micro-batch of a step
            self._micro = []
            self._local_pass = False
        self._strategy = trainer.strategy
        self._batch = (batch, batch_idx)
        self._micro.append(self._batch)
        self._set_sync()

    @override
    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """On the last micro-batch of a step, replace the gradients by the gradients at $w + \\epsilon$."""
        if self._batch is None:
            return
        _, batch_idx = self._batch
        acc = trainer.accumulate_grad_batches
        last = (batch_idx + 1) % acc == 0 or batch_idx + 1 == trainer.num_training_batches
        self._batch = None
        if last:
            self._second_pass(trainer, pl_module)
        # otherwise DDP's no_sync stays open until on_train_batch_end: Lightning's own no_sync for the
        # micro-batches of an accumulation is nested inside ours and must be left first

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        """A step whose last micro-batch was not recognized (an iterable of unknown length): second pass now."""
        if self._micro:
            self._second_pass(trainer, pl_module)

    def _second_pass(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_no_sync()
        micro, self._micro = self._micro, []
        # a first pass without gradient sync needs the (synced) second pass, even if rho became 0
        if not micro or not (self._rho > 0 or self._local_pass):
            return
        params = [p for p in self._params if p.grad is not None]
        if not params and not self._local_pass:
            return
        backup = self._save(params)
        if self._rho > 0 and params:
            grads: list[Tensor] = [p.grad for p in params]  # type: ignore[misc]
            with torch.no_grad():
                group = PerturbationGroup(params, grads, self._rho, self.adaptive, self.eta)
                apply_perturbation([group], self.eps)
        pl_module.zero_grad(set_to_none=True)
        acc = trainer.accumulate_grad_batches
        try:
            with frozen_running_stats(pl_module), _silenced(pl_module), torch.enable_grad():
                for i, batch in enumerate(micro):
                    with ExitStack() as stack:
                        if i < len(micro) - 1 and isinstance(trainer.strategy, DDPStrategy):
                            stack.enter_context(trainer.strategy.block_backward_sync())
                        loss = self._second_loss(trainer, batch)
                        if loss is not None:
                            pl_module.backward(loss / acc if acc > 1 else loss)
        finally:
            if params:
                with torch.no_grad():
                    torch._foreach_copy_(params, backup)

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Leave DDP's gradient sync on between batches."""
        self._close_no_sync()
        self._batch = None

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Release what a skipped batch may have left."""
        self._close_no_sync()
        self._batch = None
        self._micro = []

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Leave DDP's gradient sync on."""
        self._close_no_sync()

    @override
    def state_dict(self) -> dict[str, Any]:
        """The current `rho` (a schedule may have changed it)."""
        return {"rho": self._rho}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `rho`.

        Args:
            state_dict: what `state_dict` saved.
        """
        self._rho = check_nonnegative("rho", state_dict.get("rho", self._rho))

    # ------------------------------------------------------------------ helpers
    def _set_sync(self) -> None:
        """Open DDP's `no_sync` for this batch's first pass when SAM is on and the ascent is local."""
        want = (
            self._rho > 0
            and bool(self._params)
            and self.local_ascent
            and isinstance(self._strategy, DDPStrategy)
        )
        if want and not self._no_sync_open:
            self._no_sync.enter_context(self._strategy.block_backward_sync())
            self._no_sync_open = self._local_pass = True
        elif not want:
            self._close_no_sync()

    def _close_no_sync(self) -> None:
        self._no_sync.close()
        self._no_sync = ExitStack()
        self._no_sync_open = False

    def _save(self, params: list[Tensor]) -> list[Tensor]:
        backup = []
        for p in params:
            buf = self._backup.get(p)
            if (
                buf is None
                or buf.shape != p.shape
                or buf.dtype != p.dtype
                or buf.device != p.device
            ):
                buf = self._backup[p] = torch.empty_like(p)
            backup.append(buf)
        with torch.no_grad():
            torch._foreach_copy_(backup, params)
        return backup

    def _second_loss(self, trainer: pl.Trainer, batch_and_idx: tuple[Any, int]) -> Tensor | None:
        batch, batch_idx = batch_and_idx
        args = (batch, batch_idx) if self._pass_batch_idx else (batch,)
        out = trainer.strategy.training_step(*args)
        if isinstance(out, Mapping):
            out = out.get("loss")
        return out if isinstance(out, Tensor) else None

    def __repr__(self) -> str:
        return (
            f"SAMCallback(rho={self.rho}, adaptive={self.adaptive}, include={list(self.include)}, "
            f"exclude={list(self.exclude)})"
        )


class _silenced:
    """Context manager: `pl_module.log` and `log_dict` do nothing inside (the second pass logs nothing)."""

    def __init__(self, module: pl.LightningModule) -> None:
        self.module = module
        self.had: dict[str, Any] = {}

    def __enter__(self) -> None:
        for name in ("log", "log_dict"):
            self.had[name] = self.module.__dict__.get(name)
            object.__setattr__(self.module, name, _noop)

    def __exit__(self, *exc: object) -> None:
        for name, previous in self.had.items():
            if previous is None:
                object.__delattr__(self.module, name)
            else:
                object.__setattr__(self.module, name, previous)
