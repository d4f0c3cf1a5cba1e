r"""`SAM`: sharpness-aware minimization (and ASAM) as a `torch.optim.Optimizer` that wraps a base optimizer.

SAM (Foret et al., 2021) minimizes the worst loss in a neighbourhood of the weights,
$\min_w \max_{\lVert\epsilon\rVert \le \rho} L(w + \epsilon)$, with one ascent step per update:

1. gradient $g = \nabla L(w)$ (first forward/backward pass);
2. perturbation $\epsilon = \rho\, T_w^2 g / \lVert T_w g\rVert_2$, weights moved to $w + \epsilon$;
3. gradient $g_{\text{SAM}} = \nabla L(w + \epsilon)$ (second forward/backward pass);
4. weights put back to $w$ exactly, and the base optimizer steps with $g_{\text{SAM}}$.

$T_w = I$ is SAM; $T_w = \operatorname{diag}(\lvert w\rvert + \eta)$ (`adaptive=True`) is ASAM (Kwon et al.,
2021), whose neighbourhood scales with the weights and so is invariant to rescaling a layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.optim import Optimizer

from reglight._validation import check_nonnegative, check_positive
from reglight.optim.functional import PerturbationGroup, apply_perturbation
from reglight.optim.running_stats import frozen_running_stats
from reglight.penalties.selection import Pattern, select_named_parameters

__all__ = ["NORM_AND_BIAS", "SAM", "perturbation_groups"]

NORM_AND_BIAS: tuple[Pattern, ...] = (
    "bias",
    "*.bias",
    _NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)
"""`exclude` patterns for the parameters that are commonly left unperturbed: every bias and every parameter
of a normalization layer (batch, instance, layer, group and RMS norms, and reglight's ghost and renorm
layers)."""

_SAM_KEYS = ("rho", "adaptive", "eta")


def perturbation_groups(
    model: nn.Module,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups for [`SAM`][reglight.optim.SAM]: perturb what `include`/`exclude` select, not the rest.

    The parameters left out get `rho=0`: they stay at $w$ during the second pass, and the base optimizer
    still updates them (with their gradient from the second pass).

    Patterns follow the library's one selection vocabulary (module `reglight.penalties.selection`): globs on
    parameter names, module classes, class names or import paths (a class matches the parameters that its
    modules own). `include=None` selects every parameter; [`NORM_AND_BIAS`][reglight.optim.NORM_AND_BIAS]
    is the usual `exclude`.

    Args:
        model: the network.
        include: which parameters to perturb (default: all).
        exclude: which parameters not to perturb.

    Returns:
        One group with the perturbed parameters and, if any parameter is left out, a second group with
        `rho=0` and `perturb=False`. Add other per-group options (`weight_decay`, `lr`) to the dictionaries as usual.

    Raises:
        ValueError: if an `include` entry matches no parameter.
        TypeError: if an entry is not a pattern.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
        >>> groups = perturbation_groups(model, exclude=NORM_AND_BIAS)
        >>> [len(g["params"]) for g in groups], groups[1]["rho"]
        ([2, 4], 0.0)
    """
    chosen = select_named_parameters(model, "*" if include is None else include, exclude)
    ids = {id(p) for _, p in chosen}
    groups: list[dict[str, Any]] = [{"params": [p for _, p in chosen]}]
    rest = [p for p in model.parameters() if id(p) not in ids]
    if rest:
        groups.append({"params": rest, "rho": 0.0, "perturb": False})
    return [g for g in groups if g["params"]]


def _buffers(store: dict[Tensor, Tensor], params: Sequence[Tensor]) -> list[Tensor]:
    """One tensor like each parameter, allocated on first use and kept in `store` (keyed by the parameter)."""
    out = []
    for p in params:
        buf = store.get(p)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = store[p] = torch.empty_like(p, memory_format=torch.preserve_format)
        out.append(buf)
    return out


def _check_group(group: dict[str, Any], where: str) -> None:
    if not isinstance(group["perturb"], bool):
        raise TypeError(f"`{where}['perturb']` must be a bool, got {group['perturb']!r}")
    check_nonnegative(f"{where}['rho']", group["rho"])
    check_nonnegative(f"{where}['eta']", group["eta"])
    if not isinstance(group["adaptive"], bool):
        raise TypeError(f"`{where}['adaptive']` must be a bool, got {group['adaptive']!r}")


class SAM(Optimizer):
    r"""Sharpness-aware minimization around any torch optimizer: SAM, and ASAM with `adaptive=True`.

    Each `step(closure)` calls the closure twice: once at $w$, then at $w + \epsilon$ with

    $$\epsilon_i = \rho_i\,\frac{T_i^2\, g_i}{\lVert T g\rVert_2 + \text{eps}}, \qquad
    T_i = 1 \text{ (SAM)}, \quad T_i = \lvert w_i\rvert + \eta \text{ (ASAM)},$$

    the norm running over every perturbed parameter (those of groups with `perturb=True` and $\rho > 0$). The weights are then restored exactly
    and the base optimizer steps with the gradient at $w + \epsilon$ (Foret et al., 2021, "Sharpness-Aware
    Minimization for Efficiently Improving Generalization"; Kwon et al., 2021, "ASAM: Adaptive
    Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural Networks"). `eta=0` gives the
    $T_w = \lvert w\rvert$ of common implementations (`pytorch_optimizer.SAM(adaptive=True)`).

    It works through Lightning's automatic optimization: return it from `configure_optimizers`, and
    Lightning's closure (training step, zero-grad, backward) is what `step` calls twice. The parameter groups
    (`lr`, `weight_decay`, `rho`, ...) are those of the base optimizer, so learning-rate schedulers and
    [`SAMRho`][reglight.callbacks.SAMRho] act on them, and they step once per SAM step. `rho` is per group,
    and a group's `perturb` (default: its initial `rho > 0`) says whether it takes part at all: `perturb=False`
    leaves a group unperturbed whatever its `rho` ([`perturbation_groups`][reglight.optim.perturbation_groups]),
    and [`SAMRho`][reglight.callbacks.SAMRho] schedules the `rho` of the others. When no group is perturbed
    (or all have `rho=0`), a step is one plain base-optimizer step (one pass).

    What to know when training with it (see also [`SAMCallback`][reglight.callbacks.SAMCallback], which
    leaves the optimizer alone):

    - **Normalization statistics**: pass `model` and the running statistics of its batch-norm layers are
      updated by the first pass only ([`frozen_running_stats`][reglight.optim.frozen_running_stats]).
    - **Under Lightning**, the training step runs twice per step, so what it logs is logged twice (the second
      time at $w + \epsilon$; `optimizer.perturbed` is `True` then), and the outputs Lightning hands to
      `on_train_batch_end` are the second pass's. `step` returns the first pass's loss.
    - **DDP**: both passes' gradients are all-reduced, so $\epsilon$ comes from the global batch's gradient
      (SAM with $m$ = global batch), identical on every rank. The per-device $\epsilon$ of the paper
      ($m$-sharpness, no all-reduce in the first pass) needs DDP's `no_sync`, which only
      [`SAMCallback`][reglight.callbacks.SAMCallback] can reach.
    - **Gradient accumulation** is refused: `step` raises if gradients already exist when it starts (the
      closure must compute the whole gradient, twice; [`SAMCallback`][reglight.callbacks.SAMCallback]
      supports accumulation). The gradients are released (`None`) after each step.
    - **Gradient clipping** (Lightning clips inside the closure, after each pass): by norm, $\epsilon$ is
      unchanged (it does not depend on the gradient's scale) and the descent gradient is clipped, as usual;
      by value, $\epsilon$ is computed from the clipped first gradient too.
    - **Mixed precision**: `bf16` works. `fp16` with a gradient scaler does not: the scaler (torch's
      `GradScaler`, Lightning's `precision="16-mixed"`) calls `step()` without a closure, and `step` then
      raises. `first_step`/`second_step` let a hand-written loop do it.

    Args:
        params: parameters or parameter groups (groups may set `rho`, `adaptive`, `eta`, `perturb`).
        base_optimizer: the optimizer class that takes the real step, e.g. `torch.optim.SGD`.
        rho: default radius $\rho \ge 0$ (Foret et al. use 0.05; ASAM papers use larger values, e.g. 0.5-2).
        adaptive: default for ASAM's scale-invariant neighbourhood.
        eta: ASAM's $\eta \ge 0$ (Kwon et al., 2021, use 0.01).
        eps: added to the norm, $> 0$.
        model: the network whose normalization layers' running statistics the second pass must not update.
        **base_kwargs: arguments of `base_optimizer` (`lr`, `momentum`, `weight_decay`, ...).

    Raises:
        TypeError: if `base_optimizer` is not a `torch.optim.Optimizer` subclass, or `model` not a module.
        ValueError: for a negative `rho` or `eta`, or a non-positive `eps`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(3, 1)
        >>> opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
        >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = nn.functional.mse_loss(model(x), y)
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)
        >>> opt.param_groups[0]["lr"], opt.param_groups[0]["rho"]
        (0.1, 0.05)
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.01,
        eps: float = 1e-12,
        model: nn.Module | None = None,
        **base_kwargs: Any,
    ) -> None:
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, Optimizer)):
            raise TypeError(
                "`base_optimizer` must be a torch.optim.Optimizer subclass (the class, e.g. torch.optim.SGD, "
                f"not an instance), got {base_optimizer!r}"
            )
        if issubclass(base_optimizer, SAM):
            raise TypeError(
                f"`base_optimizer` must not be SAM itself, got {base_optimizer.__name__}"
            )
        rho = check_nonnegative("rho", rho)
        eta = check_nonnegative("eta", eta)
        self.eps = check_positive("eps", eps)
        if not isinstance(adaptive, bool):
            raise TypeError(f"`adaptive` must be a bool, got {adaptive!r}")
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be an nn.Module or None, got {type(model).__name__}")
        self.model = model
        # a dict, shared by reference with the LightningOptimizer that wraps this optimizer (a copy of __dict__)
        self._flags = {"perturbed": False}
        self._backup: dict[Tensor, Tensor] = {}
        self._scratch: dict[Tensor, Tensor] = {}
        self._moved: list[Tensor] = []
        super().__init__(params, {"rho": rho, "adaptive": adaptive, "eta": eta})
        self.base_optimizer: Optimizer = base_optimizer(self.param_groups, **base_kwargs)
        # one set of groups and one state, the base optimizer's: schedulers and checkpoints see them
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults = {**self.base_optimizer.defaults, **self.defaults}

    # ------------------------------------------------------------------ groups and state
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (SAM's and the base optimizer's defaults fill missing options).

        Args:
            param_group: the group; may set `rho`, `adaptive`, `eta` and `perturb`.

        Raises:
            ValueError: for a negative `rho` or `eta`.
        """
        for key in _SAM_KEYS:
            param_group.setdefault(key, self.defaults[key])
        param_group.setdefault("perturb", param_group["rho"] > 0)
        _check_group(param_group, f"param_groups[{len(self.param_groups)}]")
        base = getattr(self, "base_optimizer", None)
        if base is None:  # during __init__: the base optimizer adopts these groups afterwards
            super().add_param_group(param_group)
        else:
            base.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict; the groups carry `rho`, `adaptive`, `eta` and `perturb` too."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by `state_dict` (or by the base optimizer alone: SAM's defaults fill in).

        Args:
            state_dict: the saved state.
        """
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        for i, group in enumerate(self.param_groups):
            for key in _SAM_KEYS:
                group.setdefault(key, self.defaults[key])
            group.setdefault("perturb", group["rho"] > 0)
            _check_group(group, f"param_groups[{i}]")

    @property
    def perturbed(self) -> bool:
        """Whether the weights are at $w + \\epsilon$ now (between `first_step` and `second_step`)."""
        return self._flags["perturbed"]

    # ------------------------------------------------------------------ the two half-steps
    def _active(self) -> bool:
        return any(g["perturb"] and g["rho"] > 0 and g["params"] for g in self.param_groups)

    @torch.no_grad()
    def first_step(self) -> None:
        """Save $w$ and move the weights to $w + \\epsilon$, from the gradients now in `.grad`.

        The gradients are used as scratch space and released (set to `None`): compute the gradient at
        $w + \\epsilon$ next, then call `second_step`.

        Raises:
            RuntimeError: if the weights are already perturbed.
        """
        if self._flags["perturbed"]:
            raise RuntimeError("SAM.first_step() called twice without second_step() in between")
        groups: list[PerturbationGroup] = []
        moved: list[Tensor] = []
        for g in self.param_groups:
            if not g["perturb"] or g["rho"] <= 0:
                continue
            params = [p for p in g["params"] if p.grad is not None]
            if params:
                # ASAM with eta > 0 needs T_w = |w| + eta: kept from step to step, like the backup
                # (a fresh allocation per step costs more than the arithmetic on large layers)
                scratch = _buffers(self._scratch, params) if g["adaptive"] and g["eta"] else None
                groups.append(
                    PerturbationGroup(
                        params,
                        [p.grad for p in params],
                        g["rho"],
                        g["adaptive"],
                        g["eta"],
                        scratch,
                    )
                )
                moved.extend(params)
        if moved:
            torch._foreach_copy_(_buffers(self._backup, moved), moved)
            apply_perturbation(groups, self.eps)
        self._moved = moved
        self._flags["perturbed"] = True
        self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def restore(self) -> None:
        """Put the weights back to $w$ exactly (no optimizer step); a no-op when they are not perturbed."""
        if self._flags["perturbed"] and self._moved:
            torch._foreach_copy_(self._moved, [self._backup[p] for p in self._moved])
        self._moved = []
        self._flags["perturbed"] = False

    @torch.no_grad()
    def second_step(self) -> None:
        """Put the weights back to $w$ and let the base optimizer step with the gradients now in `.grad`.

        Raises:
            RuntimeError: if `first_step` was not called.
        """
        if not self._flags["perturbed"]:
            raise RuntimeError("SAM.second_step() called without first_step()")
        self.restore()
        self.base_optimizer.step()

    # ------------------------------------------------------------------ the full step
    def _check_no_grads(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    raise RuntimeError(
                        "SAM.step(closure) found gradients that were computed before it started. SAM needs the "
                        "closure to compute the whole gradient itself, at w and again at w + e, so gradient "
                        "accumulation (Lightning's `accumulate_grad_batches` > 1) is not supported: use a larger "
                        "batch, or reglight.callbacks.SAMCallback. Outside Lightning, do not call backward() "
                        "before step(closure); zero the gradients with set_to_none=True."
                    )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One SAM step: closure at $w$, ascent to $w + \\epsilon$, closure again, restore, base step.

        Args:
            closure: computes the loss and its gradients (zeroing them first); called twice.

        Returns:
            What the first call of the closure returned (the loss at $w$).

        Raises:
            RuntimeError: without a closure (e.g. under a gradient scaler for fp16 training), or if
                gradients exist before the step (gradient accumulation).
        """
        if closure is None:
            raise RuntimeError(
                "SAM.step() needs a closure: it runs the forward and backward passes twice. Under a gradient "
                "scaler (Lightning's precision='16-mixed', torch's GradScaler) the optimizer is stepped "
                "without one: train with precision='bf16-mixed' or '32-true', or call first_step() and "
                "second_step() yourself in a hand-written loop."
            )
        self._check_no_grads()
        with torch.enable_grad():
            loss = closure()
        if not self._active():
            self.base_optimizer.step()
            self.zero_grad(set_to_none=True)
            return loss
        self.first_step()
        context = frozen_running_stats(self.model) if self.model is not None else nullcontext()
        try:
            with context, torch.enable_grad():
                closure()
        except BaseException:
            self.restore()
            raise
        self.second_step()
        self.zero_grad(set_to_none=True)
        return loss

    def __repr__(self) -> str:
        rho = sorted({g["rho"] for g in self.param_groups})
        shown = rho[0] if len(rho) == 1 else rho
        return (
            f"SAM(base_optimizer={type(self.base_optimizer).__name__}, rho={shown}, "
            f"adaptive={self.defaults['adaptive']}, groups={len(self.param_groups)})"
        )
