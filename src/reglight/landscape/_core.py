"""What every landscape function shares: parameter selection, batches, the state-preserving context,
the (optionally data-parallel) mean loss, its gradient and Hessian-vector products."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from reglight._validation import check_choice
from reglight.penalties.selection import (
    Pattern,
    _owner_types,
    _select,
    normalize_patterns,
)

__all__ = [
    "LossFn",
    "Reduce",
    "preserved",
    "select_landscape_parameters",
]

LossFn = Callable[[nn.Module, Any], Tensor]
"""`loss_fn(model, batch) -> scalar Tensor`: the loss of `model` on one batch."""

Reduce = Callable[[Tensor], Tensor]
"""A function that sums a tensor over processes (e.g. `all_reduce` with `SUM`) and returns the sum."""

Patterns = Pattern | Sequence[Pattern] | None

HVP_METHODS = ("auto", "double_backward", "forward_over_reverse")


@contextmanager
def second_order_attention() -> Iterator[None]:
    """Run `scaled_dot_product_attention` with its math kernel, the one that can be differentiated twice.

    PyTorch's fused attention kernels (flash, memory-efficient, and the CPU flash kernel) have no double
    backward and no forward-mode derivative, so a Hessian-vector product through a Transformer that calls
    `torch.nn.functional.scaled_dot_product_attention` fails with "derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented". The math kernel
    computes the same attention with differentiable operations.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


# --------------------------------------------------------------------------------------------------
# parameter selection and argument checks
# --------------------------------------------------------------------------------------------------
def select_landscape_parameters(
    model: nn.Module, include: Patterns = None, exclude: Patterns = None
) -> list[tuple[str, nn.Parameter]]:
    """The parameters a landscape function differentiates with respect to.

    Unlike the penalties' default (weights of linear and convolution layers), the default here is every
    parameter with `requires_grad`: the loss landscape is usually taken over all trained parameters.
    `include` replaces that default (it may name frozen parameters too) and `exclude` removes from it, with
    the vocabulary of [`select_parameters`][reglight.penalties.select_parameters] (name globs, module
    classes, class names; a class selects every parameter its modules own, biases included).

    Args:
        model: The model.
        include: What to take instead of every trainable parameter: a pattern or a sequence of patterns.
        exclude: What to leave out afterwards.

    Returns:
        `(name, parameter)` pairs in `model.named_parameters()` order.

    Raises:
        ValueError: If an `include` entry matches nothing, or if nothing is left selected.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
        >>> [n for n, _ in select_landscape_parameters(model, exclude="1.*")]
        ['0.weight', '0.bias', '2.weight', '2.bias']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    inc = normalize_patterns("include", include)
    exc = normalize_patterns("exclude", exclude)
    owners = _owner_types(model)
    named = [(n, p) for n, p in model.named_parameters() if inc or p.requires_grad]
    chosen = _select(
        [(n, owners.get(n)) for n, _ in named],
        inc,
        exc,
        default=None,
        by_type=lambda _: True,
        kind=f"parameter of {type(model).__name__}",
    )
    if not chosen:
        raise ValueError(
            f"no parameter selected (include={include!r}, exclude={exclude!r}); the model has "
            f"{sum(1 for _ in model.parameters())} parameters, "
            f"{sum(1 for p in model.parameters() if p.requires_grad)} with requires_grad"
        )
    return [named[i] for i in chosen]


def materialize_batches(batches: Iterable[Any]) -> list[Any]:
    """`batches` as a list; a tensor or a mapping (one batch given where batches are expected) is an error."""
    if isinstance(batches, (Tensor, Mapping, str, bytes)) or not isinstance(batches, Iterable):
        raise TypeError(
            "`batches` must be an iterable of batches (a list or a DataLoader), got "
            f"{type(batches).__name__}; wrap a single batch as [batch]"
        )
    out = list(batches)
    if not out:
        raise ValueError(f"`batches` is empty (got {type(batches).__name__} with no batch)")
    return out


def check_generator(generator: Any) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {generator!r}")
    return generator


def check_callable(name: str, fn: Any, *, optional: bool = False) -> None:
    if fn is None and optional:
        return
    if not callable(fn):
        raise TypeError(f"`{name}` must be callable, got {fn!r}")


# --------------------------------------------------------------------------------------------------
# the state-preserving context
# --------------------------------------------------------------------------------------------------
_BN = nn.modules.batchnorm._BatchNorm


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors of equal dtype and shape hold the same bits (NaNs and signed zeros included)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    size = a.element_size()
    int_type = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}.get(size)
    if int_type is None or a.is_complex() or not (a.is_contiguous() and b.is_contiguous()):
        return False
    if a.dtype == torch.bool:
        return bool(torch.equal(a, b))
    return bool(torch.equal(a.view(int_type), b.view(int_type)))


@contextmanager
def preserved(model: nn.Module, *, train_mode: bool = False) -> Iterator[nn.Module]:
    """Run a computation on `model` and leave it exactly as it was found.

    On entry the model is put in evaluation mode (`train_mode=False`), or, with `train_mode=True`, in
    evaluation mode except its batch-norm layers, which normalize with the batch statistics **without
    updating** their running statistics (dropout stays off: the loss is a deterministic function of the
    weights). On exit, also when the body raises, everything is restored: parameter values (bit-exact),
    buffers, `requires_grad` flags, the train/eval mode of every submodule, batch-norm settings and the
    `.grad` of every parameter (`None` included). Values are written back only where they changed, so
    the usual case leaves tensors' version counters alone.

    Args:
        model: The model.
        train_mode: Use batch statistics in batch-norm layers (see above).

    Yields:
        The model.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5)).train()
        >>> with preserved(model, train_mode=True):
        ...     model[1].training, model[2].training
        ...     _ = model(torch.randn(4, 2))
        (True, False)
        >>> model.training, float(model[1].running_mean.abs().sum())
        (True, 0.0)
    """
    params = list(model.parameters())
    buffers = list(model.buffers())
    saved_params = [p.detach().clone() for p in params]
    saved_buffers = [b.detach().clone() for b in buffers]
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    bn_tracking = [(m, m.track_running_stats) for m in model.modules() if isinstance(m, _BN)]
    try:
        model.eval()
        if train_mode:
            # batch statistics; the running buffers are neither read nor written
            for bn, _ in bn_tracking:
                bn.training = True
                bn.track_running_stats = False
        yield model
    finally:
        with torch.no_grad():
            for t, saved in zip(params + buffers, saved_params + saved_buffers, strict=True):
                if not _same_bits(t.detach(), saved):
                    t.detach().copy_(saved)
        for p, flag, grad in zip(params, flags, grads, strict=True):
            p.requires_grad_(flag)
            p.grad = grad
        for bn, tracking in bn_tracking:
            bn.track_running_stats = tracking
        for module, mode in modes:
            module.training = mode


# --------------------------------------------------------------------------------------------------
# the objective: mean loss over batches (and processes), gradient, Hessian-vector products
# --------------------------------------------------------------------------------------------------
class _LossModule(nn.Module):
    """`forward(batch) = loss_fn(model, batch)`, so `torch.func.functional_call` can swap parameters."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.model, batch)


def check_loss(loss: Any) -> Tensor:
    if not isinstance(loss, Tensor):
        raise TypeError(f"`loss_fn` must return a scalar Tensor, got {type(loss).__name__}")
    if loss.dim() != 0:
        raise ValueError(
            f"`loss_fn` must return a scalar Tensor (0 dimensions), got shape {tuple(loss.shape)}"
        )
    if not (loss.is_floating_point() or loss.is_complex()):
        raise TypeError(f"`loss_fn` must return a floating-point Tensor, got dtype {loss.dtype}")
    return loss


class Objective:
    """The mean loss $L(\\theta) = \\frac1N \\sum_b \\ell(\\theta; b)$ over the batches of every process.

    Holds the selected parameters (made differentiable, the others frozen, inside a
    [`preserved`][reglight.landscape.preserved] block) and computes the loss, its gradient and
    Hessian-vector products, summing over local batches, reducing the sums and the batch count with
    `reduce` in one collective, and dividing.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: list[Any],
        named: list[tuple[str, nn.Parameter]],
        reduce: Reduce | None,
        method: str = "auto",
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.batches = batches
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.reduce = reduce
        self.method = "double_backward" if method == "auto" else method
        self.n_hvp = 0
        self._wrapper = _LossModule(model, loss_fn)
        self._graph_cache: list[tuple[Tensor, ...]] | None = None
        selected = {id(p) for p in self.params}
        for p in model.parameters():
            p.requires_grad_(id(p) in selected)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.dim = sum(self.numels)

    # ---- flat <-> list ----------------------------------------------------------------------------
    def split(self, flat: Tensor) -> list[Tensor]:
        return [
            t.view(s).to(p.dtype)
            for t, s, p in zip(flat.split(self.numels), self.shapes, self.params, strict=True)
        ]

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        return torch.cat([t.reshape(-1).to(self.dtype) for t in tensors])

    # ---- reductions --------------------------------------------------------------------------------
    def mean(self, sums: list[Tensor]) -> list[Tensor]:
        """`sums` (per-batch sums over this process's batches) divided by the batch count, over processes."""
        n = len(self.batches)
        if self.reduce is None:
            return [s / n for s in sums]
        dtype = self.dtype
        for s in sums:
            dtype = torch.promote_types(dtype, s.dtype)
        count = torch.full((1,), float(n), dtype=dtype, device=self.device)
        flat = torch.cat([s.reshape(-1).to(dtype) for s in sums] + [count])
        total = self.reduce(flat)
        if not isinstance(total, Tensor) or total.shape != flat.shape:
            raise ValueError(
                "`reduce` must return a tensor shaped like its input (the sum over processes), got "
                f"{type(total).__name__} {getattr(total, 'shape', '')}"
            )
        total_count = total[-1]
        out, start = [], 0
        for s in sums:
            out.append((total[start : start + s.numel()].view(s.shape) / total_count).to(s.dtype))
            start += s.numel()
        return out

    # ---- loss and gradient -------------------------------------------------------------------------
    def _batch_loss(self, batch: Any) -> Tensor:
        return check_loss(self.loss_fn(self.model, batch))

    def loss(self) -> Tensor:
        """The mean loss (a 0-dim tensor, identical on every process)."""
        with torch.no_grad():
            losses = [self._batch_loss(b).detach() for b in self.batches]
        return self.mean([torch.stack(losses).sum()])[0]

    def loss_and_gradient(self) -> tuple[Tensor, list[Tensor]]:
        total: Tensor | None = None
        grads = [torch.zeros_like(p) for p in self.params]
        with torch.enable_grad():
            for b in self.batches:
                loss = self._batch_loss(b)
                g = torch.autograd.grad(loss, self.params, allow_unused=True)
                torch._foreach_add_(
                    grads,
                    [
                        gi if gi is not None else torch.zeros_like(p)
                        for gi, p in zip(g, self.params, strict=True)
                    ],
                )
                total = loss.detach() if total is None else total + loss.detach()
        assert total is not None
        out = self.mean([total, *grads])
        return out[0], out[1:]

    # ---- Hessian-vector products ------------------------------------------------------------------
    def _grads_with_graph(self, batch: Any) -> tuple[Tensor, ...]:
        with second_order_attention():
            loss = self._batch_loss(batch)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        return tuple(
            g if g is not None else torch.zeros_like(p)
            for g, p in zip(grads, self.params, strict=True)
        )

    def _hvp_double_backward(self, vectors: Sequence[Tensor]) -> list[Tensor]:
        cache = len(self.batches) == 1
        out = [torch.zeros_like(p) for p in self.params]
        with torch.enable_grad():
            for b in self.batches:
                if cache:
                    if self._graph_cache is None:
                        self._graph_cache = [self._grads_with_graph(b)]
                    grads = self._graph_cache[0]
                else:
                    grads = self._grads_with_graph(b)
                live = [i for i, g in enumerate(grads) if g.requires_grad]
                if not live:
                    continue
                hv = torch.autograd.grad(
                    [grads[i] for i in live],
                    self.params,
                    grad_outputs=[vectors[i] for i in live],
                    retain_graph=cache,
                    allow_unused=True,
                )
                torch._foreach_add_(
                    out,
                    [
                        h if h is not None else torch.zeros_like(p)
                        for h, p in zip(hv, self.params, strict=True)
                    ],
                )
        return out

    def _hvp_forward_over_reverse(self, vectors: Sequence[Tensor]) -> list[Tensor]:
        names = ["model." + n for n in self.names]
        wrapper = self._wrapper

        def loss_of(params: tuple[Tensor, ...], batch: Any) -> Tensor:
            return check_loss(
                functional_call(wrapper, dict(zip(names, params, strict=True)), (batch,))
            )

        primals = tuple(p.detach() for p in self.params)
        tangents = tuple(v.to(p.dtype) for v, p in zip(vectors, self.params, strict=True))
        out = [torch.zeros_like(p) for p in self.params]
        for b in self.batches:
            with second_order_attention():
                hv = torch.func.jvp(
                    lambda *ps, b=b: torch.func.grad(loss_of)(ps, b), primals, tangents
                )[1]
            torch._foreach_add_(out, list(hv))
        return out

    def hvp(self, vectors: Sequence[Tensor]) -> list[Tensor]:
        """$Hv$ for `vectors` shaped like the selected parameters (mean over all batches)."""
        self.n_hvp += 1
        if self.method == "forward_over_reverse":
            sums = self._hvp_forward_over_reverse(vectors)
        else:
            sums = self._hvp_double_backward(vectors)
        return self.mean(sums)

    def matvec(self, flat: Tensor) -> Tensor:
        """$Hv$ on flat vectors (the concatenation of the selected parameters)."""
        return self.flatten(self.hvp(self.split(flat)))

    # ---- randomness ---------------------------------------------------------------------------------
    def common_generator(self, generator: torch.Generator | None) -> torch.Generator:
        """`generator`, or (when `None`) a fresh one seeded from the global RNG, the seed being made
        common to all processes with `reduce` (every process must draw the same random vectors)."""
        if generator is not None:
            return generator
        seed = torch.randint(0, 2**40, (1,)).to(torch.float64)
        if self.reduce is not None:
            seed = self.reduce(seed.to(self.device)).cpu()
        return torch.Generator().manual_seed(int(seed.item()))

    def rademacher(self, generator: torch.Generator) -> Tensor:
        v = torch.randint(0, 2, (self.dim,), generator=generator, device=generator.device)
        return (v.to(self.dtype) * 2 - 1).to(self.device)

    def gaussian(self, generator: torch.Generator) -> Tensor:
        v = torch.randn(self.dim, generator=generator, device=generator.device, dtype=self.dtype)
        return v.to(self.device)


def prepare(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Any],
    include: Patterns,
    exclude: Patterns,
    generator: torch.Generator | None,
    reduce: Reduce | None,
    method: str = "auto",
) -> tuple[list[tuple[str, nn.Parameter]], list[Any]]:
    """Validate the arguments every function shares; return the selected parameters and the batches."""
    check_callable("loss_fn", loss_fn)
    check_callable("reduce", reduce, optional=True)
    check_generator(generator)
    check_choice("method", method, HVP_METHODS)
    named = select_landscape_parameters(model, include, exclude)
    return named, materialize_batches(batches)
