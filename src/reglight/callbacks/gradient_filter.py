r"""Gradient filters that speed up grokking: Grokfast's EMA amplifier and the ⊥Grad projection.

- [`GradientFilter`][reglight.callbacks.GradientFilter] (Lee et al., 2024, "Grokfast: Accelerated Grokking by
  Amplifying Slow Gradients") adds an exponential moving average of past gradients to each gradient,
  amplifying its slow (low-frequency) component:
  $\mu_t = m\,\mu_{t-1} + (1 - m)\,g_t$ ($\mu_1 = g_1$), $\hat g_t = g_t + \lambda\,\mu_t$.
- [`OrthogonalGradient`][reglight.callbacks.OrthogonalGradient] (Prieto et al., 2025, "Grokking at the Edge
  of Numerical Stability") removes from each parameter's gradient its component along the parameter, the
  direction that only rescales the weights:
  $g_\perp = g - \frac{\langle g, w\rangle}{\lVert w\rVert^2}\,w$, rescaled to $\lVert g\rVert$.

Both act in `on_before_optimizer_step`: after AMP unscaling and DDP's gradient averaging, before gradient
clipping, once per real optimizer step under `accumulate_grad_batches`. The functional forms
[`grokfast_ema_`][reglight.callbacks.gradient_filter.grokfast_ema_] and
[`orthogonalize_gradients_`][reglight.callbacks.gradient_filter.orthogonalize_gradients_] work on plain
tensors, without Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer
from typing_extensions import override

from reglight._validation import check_nonnegative, check_probability
from reglight.penalties.selection import Pattern, normalize_patterns, select_named_parameters

__all__ = [
    "GradientFilter",
    "OrthogonalGradient",
    "grokfast_ema_",
    "orthogonalize_gradients_",
]


@torch.no_grad()
def grokfast_ema_(
    grads: Sequence[Tensor],
    ema: Sequence[Tensor] | None,
    momentum: float = 0.98,
    gain: float = 2.0,
) -> list[Tensor]:
    r"""Grokfast's EMA filter, in place: $\mu \leftarrow m\,\mu + (1-m)\,g$, then $g \leftarrow g + \lambda\,\mu$.

    Lee et al. (2024), "Grokfast: Accelerated Grokking by Amplifying Slow Gradients" (`gradfilter_ema`). At
    the first step (`ema=None`) the average starts at the gradient itself, $\mu_1 = g_1$, so the first
    filtered gradient is $(1 + \lambda)\,g_1$.

    Args:
        grads: The gradients, modified in place.
        ema: The running averages, one per gradient, modified in place; `None` at the first step.
        momentum: $m$, the EMA's decay in $[0, 1)$ (Grokfast's $\alpha$).
        gain: $\lambda \ge 0$, the amplification of the slow component (Grokfast's $\lambda$).

    Returns:
        The averages (new tensors at the first step, else `ema` itself).

    Examples:
        >>> import torch
        >>> g = [torch.tensor([1.0, -2.0])]
        >>> ema = grokfast_ema_(g, None, momentum=0.5, gain=2.0)  # mu = g, g = g + 2 mu
        >>> g[0], ema[0]
        (tensor([ 3., -6.]), tensor([ 1., -2.]))
        >>> g = [torch.tensor([3.0, 0.0])]
        >>> _ = grokfast_ema_(g, ema, momentum=0.5, gain=2.0)  # mu = (1, -2)/2 + (3, 0)/2 = (2, -1)
        >>> g[0], ema[0]
        (tensor([ 7., -2.]), tensor([ 2., -1.]))
    """
    grads = list(grads)
    if ema is None:
        out = [g.detach().clone() for g in grads]
    else:
        out = list(ema)
        if len(out) != len(grads):
            raise ValueError(f"`ema` has {len(out)} tensors for {len(grads)} gradients")
        if out:
            torch._foreach_lerp_(out, grads, 1.0 - momentum)
    if gain != 0.0 and grads:
        torch._foreach_add_(grads, out, alpha=gain)
    return out


@torch.no_grad()
def orthogonalize_gradients_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor] | None = None,
    renormalize: bool = True,
    eps: float = 1e-30,
) -> None:
    r"""⊥Grad, in place: remove from each gradient its component along its parameter.

    Prieto et al. (2025), "Grokking at the Edge of Numerical Stability": for each tensor $w$ with gradient
    $g$, $g_\perp = g - \frac{\langle g, w\rangle}{\lVert w\rVert^2 + \epsilon}\,w$; with `renormalize`
    (the authors' `OrthoGrad`), $g_\perp$ is then rescaled to the norm of $g$. A step along $g_\perp$ does
    not change $\lVert w\rVert$ to first order: the loss can no longer be lowered by scaling the weights up.

    Args:
        params: The parameters $w$.
        grads: Their gradients, modified in place (default: each parameter's `.grad`; `None` grads skipped).
        renormalize: Rescale each projected gradient to the norm of the original one.
        eps: Added to $\lVert w\rVert^2$ and $\lVert g_\perp\rVert$ (a zero tensor keeps its gradient).

    Examples:
        >>> import torch
        >>> w = torch.tensor([3.0, 4.0])
        >>> g = torch.tensor([1.0, 2.0])  # <g, w> / |w|^2 = 11/25
        >>> orthogonalize_gradients_([w], [g], renormalize=False)
        >>> g, abs(float(g @ w)) < 1e-6
        (tensor([-0.3200,  0.2400]), True)
    """
    params = list(params)
    if grads is None:
        pairs = [(w, w.grad) for w in params if w.grad is not None]
    else:
        grads = list(grads)
        if len(grads) != len(params):
            raise ValueError(f"`grads` has {len(grads)} tensors for {len(params)} parameters")
        pairs = [(w, g) for w, g in zip(params, grads, strict=True) if g is not None]
    if not pairs:
        return
    ws = [w.detach().reshape(-1) for w, _ in pairs]
    gs = [g.reshape(-1) for _, g in pairs]
    dots = torch.stack([torch.dot(w, g) for w, g in zip(ws, gs, strict=True)])
    sq = torch.stack([torch.dot(w, w) for w in ws])
    coef = (dots / (sq + eps)).neg()
    g_norms = torch.stack(torch._foreach_norm(gs)) if renormalize else None
    for (w, g), c in zip(pairs, coef.unbind(), strict=True):
        g.add_(w.detach() * c)
    if g_norms is not None:
        new_norms = torch.stack(torch._foreach_norm(gs))
        scale = g_norms / (new_norms + eps)
        torch._foreach_mul_([g for _, g in pairs], list(scale.unbind()))


def _select_all(
    module: nn.Module, include: tuple[Pattern, ...], exclude: tuple[Pattern, ...]
) -> list[tuple[str, nn.Parameter]]:
    """Every trainable parameter by default (`include` empty), else the selected ones."""
    named = select_named_parameters(module, include or ("*",), exclude)
    return [(n, p) for n, p in named if p.requires_grad]


def _optimizer_param_ids(optimizer: Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


class GradientFilter(Callback):
    r"""Grokfast: add an exponential moving average of past gradients to each gradient.

    Lee et al. (2024), "Grokfast: Accelerated Grokking by Amplifying Slow Gradients". The gradient of each
    selected parameter is replaced, before every optimizer step, by

    $$\mu_t = m\,\mu_{t-1} + (1 - m)\,g_t \quad (\mu_1 = g_1), \qquad \hat g_t = g_t + \lambda\,\mu_t,$$

    a low-pass filter that amplifies the slowly varying part of the gradient, the part the authors link to
    generalization. The paper's defaults are $m = 0.98$, $\lambda = 2$. It acts in
    `on_before_optimizer_step` (gradients unscaled, averaged across DDP ranks, before clipping; once per
    real step under gradient accumulation), so every rank keeps the same average. With mixed precision and
    a gradient scaler, a step whose gradients are not finite (skipped by the scaler) leaves the average
    unchanged. The averages are part of the callback's `state_dict` (keyed by parameter name), so a run
    resumed from a checkpoint continues the same filter.

    `gain=0` leaves gradients bit-for-bit unchanged (the average is still kept). The filter interacts
    with the optimizer: in the grokking recipe's setting (AdamW, lr $10^{-2}$, weight decay 1 to 1.5) it
    slowed generalization down; see the grokking recipe's measurements.

    Args:
        momentum: $m$, the decay of the moving average, in $[0, 1)$ (Grokfast's $\alpha$).
        gain: $\lambda \ge 0$, the weight of the average added to the gradient (Grokfast's $\lambda$).
        include: which parameters to filter: a pattern or a sequence of patterns; `None` for every
            trainable parameter.
        exclude: which parameters not to filter.

    Raises:
        ValueError: if `momentum` is not in $[0, 1)$ or `gain` is negative or not finite; at the start of
            `fit`, if an `include` entry matches no parameter.
        TypeError: if an `include`/`exclude` entry is not a pattern.

    Examples:
        >>> cb = GradientFilter(momentum=0.98, gain=2.0, exclude="*.bias")
        >>> cb.state_dict()
        {'momentum': 0.98, 'gain': 2.0, 'steps': 0, 'ema': {}}
        >>> GradientFilter(momentum=1.0)
        Traceback (most recent call last):
            ...
        ValueError: `momentum` must be a probability in [0, 1), got 1.0
    """

    def __init__(
        self,
        momentum: float = 0.98,
        gain: float = 2.0,
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
    ) -> None:
        self.momentum = check_probability("momentum", momentum)
        self.gain = check_nonnegative("gain", gain)
        self.include = normalize_patterns("include", include)
        self.exclude = normalize_patterns("exclude", exclude)
        self.steps = 0
        self._named: list[tuple[str, nn.Parameter]] = []
        self._ema: dict[str, Tensor] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            include=[p if isinstance(p, str) else p.__qualname__ for p in self.include],
            exclude=[p if isinstance(p, str) else p.__qualname__ for p in self.exclude],
        )

    @property
    def ema(self) -> dict[str, Tensor]:
        """The moving averages $\\mu$ by parameter name (empty before the first step)."""
        return dict(self._ema)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Select the filtered parameters."""
        self._named = _select_all(pl_module, self.include, self.exclude)
        if not self._named:
            rank_zero_warn("GradientFilter: no parameter selected, nothing to do.")

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        """Update the averages and add them to the gradients."""
        in_opt = _optimizer_param_ids(optimizer)
        names, grads = [], []
        for name, p in self._named:
            if p.grad is not None and id(p) in in_opt:
                names.append(name)
                grads.append(p.grad)
        if not grads:
            return
        old = [(n, g) for n, g in zip(names, grads, strict=True) if n in self._ema]
        if old:
            ema = [self._ema[n] for n, _ in old]
            olds = [g for _, g in old]
            finite = self._finite_flag(trainer, olds)
            with torch.no_grad():
                if finite is None:
                    torch._foreach_lerp_(ema, olds, 1.0 - self.momentum)
                else:
                    for e, g in zip(ema, olds, strict=True):
                        e.copy_(torch.where(finite, torch.lerp(e, g, 1.0 - self.momentum), e))
        for n, g in zip(names, grads, strict=True):
            if n not in self._ema:  # the first step of this parameter: mu = g
                self._ema[n] = g.detach().clone()
        if self.gain != 0.0:
            with torch.no_grad():
                torch._foreach_add_(grads, [self._ema[n] for n in names], alpha=self.gain)
        self.steps += 1

    @staticmethod
    def _finite_flag(trainer: pl.Trainer, grads: list[Tensor]) -> Tensor | None:
        """A device-side "all gradients finite" flag when a gradient scaler may skip steps, else `None`."""
        plugin = getattr(getattr(trainer, "strategy", None), "precision_plugin", None)
        if getattr(plugin, "scaler", None) is None:
            return None
        return torch.stack([torch.isfinite(g).all() for g in grads]).all()

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "momentum": self.momentum,
            "gain": self.gain,
            "steps": self.steps,
            "ema": {n: e.detach().clone() for n, e in self._ema.items()},
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.momentum = check_probability("momentum", state_dict.get("momentum", self.momentum))
        self.gain = check_nonnegative("gain", state_dict.get("gain", self.gain))
        self.steps = int(state_dict.get("steps", 0))
        self._ema = {n: e.detach().clone() for n, e in state_dict.get("ema", {}).items()}

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Move restored averages to their parameters' device and dtype."""
        params = dict(self._named)
        for n, e in list(self._ema.items()):
            if n in params:
                p = params[n]
                self._ema[n] = e.to(device=p.device, dtype=p.dtype)


class OrthogonalGradient(Callback):
    r"""⊥Grad: remove from each parameter's gradient its component along the parameter.

    Prieto et al. (2025), "Grokking at the Edge of Numerical Stability". Before every optimizer step the
    gradient $g$ of each selected tensor $w$ becomes

    $$g_\perp = g - \frac{\langle g, w\rangle}{\lVert w\rVert^2}\,w, \qquad
      g_\perp \leftarrow g_\perp\,\frac{\lVert g\rVert}{\lVert g_\perp\rVert} \text{ (with `renormalize`)},$$

    the authors' `OrthoGrad`. Once the training data are fit, cross-entropy keeps falling by scaling the
    weights up ("naïve loss minimization"); the projection removes that direction, which the authors find
    to let models generalize without weight decay. Combined with weight decay nothing opposes the decay
    any more, and the weights can shrink until the model collapses. Acts in `on_before_optimizer_step` (unscaled, averaged
    gradients, before clipping; once per real optimizer step), stateless.

    Args:
        include: which parameters to project: a pattern or a sequence of patterns; `None` for every
            trainable parameter.
        exclude: which parameters not to project.
        renormalize: rescale the projected gradient to the original gradient's norm.

    Raises:
        ValueError: at the start of `fit`, if an `include` entry matches no parameter.
        TypeError: if an `include`/`exclude` entry is not a pattern.

    Examples:
        >>> cb = OrthogonalGradient(include="Linear")  # weight matrices of linear layers only
        >>> cb.renormalize
        True
    """

    def __init__(
        self,
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        renormalize: bool = True,
    ) -> None:
        self.include = normalize_patterns("include", include)
        self.exclude = normalize_patterns("exclude", exclude)
        if not isinstance(renormalize, bool):
            raise TypeError(f"`renormalize` must be a bool, got {renormalize!r}")
        self.renormalize = renormalize
        self._named: list[tuple[str, nn.Parameter]] = []

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Select the projected parameters."""
        self._named = _select_all(pl_module, self.include, self.exclude)
        if not self._named:
            rank_zero_warn("OrthogonalGradient: no parameter selected, nothing to do.")

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        """Project the gradients."""
        in_opt = _optimizer_param_ids(optimizer)
        params = [p for _, p in self._named if p.grad is not None and id(p) in in_opt]
        orthogonalize_gradients_(params, renormalize=self.renormalize)
