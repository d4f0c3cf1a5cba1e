r"""Ghost batch norm's autograd function: torch's fused batch-norm kernels per virtual batch.

The forward pass writes every virtual batch into one output; the backward pass reduces each virtual
batch with torch's batch-norm backward and writes the input gradient straight into one tensor (eager
ops, or one `torch.compile`'d pass per virtual batch with `fused`). Private: the public entry point is
[`ghost_batch_norm`][reglight.nn.functional.ghost_batch_norm].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reglight._compile import FallbackCompiled, shared_compiled
from reglight.nn.functional._shapes import _reduce_dims, _values_per_channel


def _chunk_sizes(n: int, chunk: int, like: Tensor) -> Tensor:
    """Samples in each virtual batch of `n` samples, a `(groups, 1)` tensor like `like`."""
    groups = -(-n // chunk)
    sizes = like.new_full((groups, 1), float(chunk))
    if groups:
        sizes[-1] = n - (groups - 1) * chunk
    return sizes


# Largest number of elements per operand in one block of the CPU input-gradient pass
# (`_ghost_input_grad`, eager): the second op of a block reads what the first wrote while it is still
# in cache, and there are few enough blocks for the per-call cost not to matter.
_GHOST_BLOCK = 1 << 20
# Devices on which `_ghost_input_grad` writes the input gradient; elsewhere (CUDA, ...) torch's
# batch-norm backward writes each virtual batch's slice through its `out=` form.
_GHOST_DIRECT_GRAD_DEVICES = ("cpu",)


def _ghost_grad_kernel(out: Tensor, dy: Tensor, x: Tensor, a: Tensor, b: Tensor, c: Tensor) -> None:
    out.copy_(dy * a + x * b + c)


def _ghost_fused_kernel() -> FallbackCompiled:
    """The compiled one-pass input gradient (created at first use, shared by all layers)."""
    return shared_compiled(_ghost_grad_kernel, "the fused ghost batch-norm gradient")


def _ghost_input_grad(
    grad_out: Tensor, x: Tensor, scale: Tensor, means: Tensor, invstds: Tensor,
    sum_dy: Tensor, sum_dy_xhat: Tensor, counts: Tensor, chunk: int, fused: bool = False,
) -> Tensor:  # fmt: skip
    r"""Batch-norm input gradient of every virtual batch, written straight into one tensor.

    Per virtual batch $g$ and channel $c$ (with $s = \gamma\,\sigma^{-1}$, $m$ values per channel):
    $\partial x = s\,(\partial y - \overline{\partial y} - \hat x\,\overline{\partial y\,\hat x})
    = A\,\partial y + B\,x + C$ with $A = s$, $B = -s\,\sigma^{-1}\,\overline{\partial y\,\hat x}$,
    $C = -s\,\overline{\partial y} - B\mu$. torch's batch-norm backward has no kernel that writes
    into a slice (its `out=` form allocates every chunk's gradient and copies it, and on CPU the
    fresh pages of those temporaries cost as much again). Here each block of samples of a virtual batch
    takes two vectorised ops: `A dy + C` by torch's per-channel affine kernel (batch norm in
    evaluation mode with mean 0 and variance 1, which writes into the output slice), then `+= B x`.
    With `fused` one `torch.compile`'d pass per virtual batch computes all three terms (the eager
    ops take over if compilation fails).
    """
    n, channels = x.shape[0], x.shape[1]
    mean_dy, mean_dy_xhat = sum_dy / counts, sum_dy_xhat / counts
    coef_b = -scale * invstds * mean_dy_xhat
    coef_c = -scale * mean_dy - coef_b * means
    grad_x = torch.empty_like(x)
    broadcast = (1, channels) + (1,) * (x.dim() - 2)
    if fused:
        kernel = _ghost_fused_kernel()
        for g, s in enumerate(range(0, n, chunk)):
            part = slice(s, s + chunk)
            coefs = (scale[g].view(broadcast), coef_b[g].view(broadcast), coef_c[g].view(broadcast))
            if not kernel(grad_x[part], grad_out[part], x[part], *coefs):
                break  # could not compile (warned once): the first chunk fails, the eager ops follow
        else:
            return grad_x
    zero, one = means.new_zeros(channels), means.new_ones(channels)
    unused = means.new_empty(0)
    per_sample = max(x.numel() // max(n, 1), 1)
    samples = max(1, _GHOST_BLOCK // per_sample)
    for g, s in enumerate(range(0, n, chunk)):
        b = coef_b[g].view(broadcast)
        stop = min(s + chunk, n)
        for t in range(s, stop, samples):
            u = min(t + samples, stop)
            out = grad_x[t:u]
            torch.ops.aten.native_batch_norm.out(
                grad_out[t:u], scale[g], coef_c[g], zero, one, False, 0.0, 0.0,
                out=out, save_mean=unused, save_invstd=unused,
            )  # fmt: skip
            out.addcmul_(x[t:u], b)
    return grad_x


class _GhostBatchNormFn(torch.autograd.Function):
    """Batch norm of consecutive sub-batches with torch's fused kernels, assembled without `cat`.

    Each chunk `input[s:s+k]` is a contiguous slice, so `native_batch_norm.out` writes straight
    into a slice of one pre-allocated output. Backward: torch's batch-norm backward kernel reduces
    each chunk (the sums of `dy` and `dy * x_hat`, which are also the bias and weight gradients),
    then `_ghost_input_grad` writes the input gradient on CPU (or on any device with `fused`);
    otherwise `native_batch_norm_backward.out` writes each chunk's slice.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        input: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        chunk: int,
        eps: float,
        fused: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        x = input.contiguous()
        out = torch.empty_like(x)
        starts = range(0, x.shape[0], chunk)
        means = x.new_empty(len(starts), x.shape[1])
        invstds = x.new_empty(len(starts), x.shape[1])
        for g, s in enumerate(starts):
            torch.ops.aten.native_batch_norm.out(
                x[s : s + chunk], weight, bias, None, None, True, 0.0, eps,
                out=out[s : s + chunk], save_mean=means[g], save_invstd=invstds[g],
            )  # fmt: skip
        ctx.save_for_backward(x, weight, means, invstds)  # type: ignore[arg-type]
        ctx.chunk, ctx.eps, ctx.fused = chunk, eps, fused  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(means, invstds)
        return out, means, invstds

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor, *_: Tensor
    ) -> tuple[Tensor | None, ...]:
        x, weight, means, invstds = ctx.saved_tensors  # type: ignore[attr-defined]
        chunk, eps, fused = ctx.chunk, ctx.eps, ctx.fused  # type: ignore[attr-defined]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]  # type: ignore[attr-defined]
        grad_out = grad_out.contiguous()
        groups, channels = means.shape
        starts = range(0, x.shape[0], chunk)
        sum_dy_xhat = means.new_empty(groups, channels)  # = weight gradient of each chunk
        sum_dy = means.new_empty(groups, channels)  # = bias gradient of each chunk
        grad_x: Tensor | None = None
        if fused or x.device.type in _GHOST_DIRECT_GRAD_DEVICES or not need_x:
            for g, s in enumerate(starts):
                _, sum_dy_xhat[g], sum_dy[g] = torch.ops.aten.native_batch_norm_backward(
                    grad_out[s : s + chunk], x[s : s + chunk], weight, None, None, means[g],
                    invstds[g], True, eps, [False, True, True],
                )  # fmt: skip
            if need_x:
                per_sample = _values_per_channel(x) // max(x.shape[0], 1)
                counts = _chunk_sizes(x.shape[0], chunk, means) * per_sample
                scale = invstds if weight is None else invstds * weight
                grad_x = _ghost_input_grad(
                    grad_out, x, scale, means, invstds, sum_dy, sum_dy_xhat, counts, chunk, fused
                )
        else:
            # The out= kernel wants a tensor for every output (no "undefined" from Python), so all
            # three are computed; the weight and bias sums come from reductions grad_x needs anyway.
            grad_x = torch.empty_like(x)
            for g, s in enumerate(starts):
                torch.ops.aten.native_batch_norm_backward.out(
                    grad_out[s : s + chunk], x[s : s + chunk], weight, None, None, means[g],
                    invstds[g], True, eps, [True, True, True],
                    out0=grad_x[s : s + chunk], out1=sum_dy_xhat[g], out2=sum_dy[g],
                )  # fmt: skip
        return (
            grad_x,
            sum_dy_xhat.sum(0) if need_w else None,
            sum_dy.sum(0) if need_b else None,
            None,
            None,
            None,
        )


def _ghost_chunks_reference(
    input: Tensor, weight: Tensor | None, bias: Tensor | None, chunk: int, eps: float, *_: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Same contract as `_GhostBatchNormFn` with differentiable torch ops (any dtype/device)."""
    outs, means, invstds = [], [], []
    dims = _reduce_dims(input)
    for part in input.split(chunk):
        outs.append(F.batch_norm(part, None, None, weight, bias, True, 0.0, eps))
        with torch.no_grad():
            var, mean = torch.var_mean(part, dim=dims, correction=0)
        means.append(mean)
        invstds.append((var + eps).rsqrt())
    return torch.cat(outs), torch.stack(means), torch.stack(invstds)
