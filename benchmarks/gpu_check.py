"""One short run through every device path of reglight, each compared against a float64/CPU reference.

Checks (each prints pass / fail / skip, its time, its largest error and its tolerance):

- ``ghost_bn_backward``: `GhostBatchNorm2d` forward + backward on the device in float32 (on CUDA the
  backward writes each virtual batch's input gradient through torch's ``out=`` batch-norm backward)
  against ``F.batch_norm`` per virtual batch in float64 on the CPU;
- ``ghost_bn_fused``: the same with ``fused=True`` (the ``torch.compile``'d one-pass input gradient);
- ``penalty_hook_gradient`` / ``penalty_hook_fused`` / ``penalty_hook_proximal``: `PenaltyHook`
  (elastic net; L1 for the proximal step) driven as a ``Trainer`` drives it, against the gradient of
  the penalty's value by autograd in float64 on the CPU (the proximal step: against soft-thresholding);
- ``trainer_bf16_mixed`` / ``trainer_fp16_mixed``: a tiny Lightning ``Trainer`` fit with a
  `PenaltyHook` under ``precision="bf16-mixed"`` / ``"16-mixed"`` (autocast; ``16-mixed`` also runs
  torch's ``GradScaler``, CUDA only) against the same fit with ``precision="32-true"``;
- ``enet_path`` / ``logistic_path``: the linear solvers with tensors on the device, against
  scikit-learn's ``enet_path`` (tight tolerance) and against the float64 CPU solution;
- ``ddp_nccl``: two processes, one GPU each, `PenaltyHook` on a ``DistributedDataParallel`` model,
  against one process on the whole batch (needs 2 GPUs; on the CPU it runs with gloo as ``ddp_gloo``).

The ``torch.compile`` checks are skipped, with the reason, where a compile probe fails (on the CPU
``torch.compile`` needs a C++ toolchain). The exit code is 1 when any check fails.

    python benchmarks/gpu_check.py                 # on CUDA (the default when a GPU is present)
    python benchmarks/gpu_check.py --device cpu    # the same checks on the CPU (CI)
    python benchmarks/gpu_check.py --json gpu_check.json
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _report import Report, add_json_argument

PASS, FAIL, SKIP = "pass", "FAIL", "skip"


@dataclass
class Outcome:
    status: str
    error: float | None = None
    tol: float | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """Raised by a check that cannot run here; its message says why."""


def _compare(pairs: list[tuple[Tensor, Tensor]], rtol: float, atol: float) -> tuple[float, bool]:
    """Largest ``|got - want| / (atol + rtol·|want|)``-style error: (max abs error, all within tol)."""
    worst, ok = 0.0, True
    for got, want in pairs:
        got, want = got.detach().double().cpu(), want.detach().double().cpu()
        if got.shape != want.shape:
            raise AssertionError(f"shape {tuple(got.shape)} != reference {tuple(want.shape)}")
        if not torch.isfinite(got).all():
            return float("inf"), False
        diff = (got - want).abs()
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        ok &= bool((diff <= atol + rtol * want.abs()).all())
    return worst, ok


def _outcome(
    pairs: list[tuple[Tensor, Tensor]], rtol: float, atol: float, note: str = ""
) -> Outcome:
    err, ok = _compare(pairs, rtol, atol)
    return Outcome(PASS if ok else FAIL, err, atol, note or f"rtol={rtol:g}")


# ------------------------------------------------------------------------------ compile probe


def compile_probe(device: torch.device) -> str | None:
    """``None`` when ``torch.compile`` builds a kernel on `device`, else the reason it cannot."""
    torch._dynamo.reset()

    def bump(x: Tensor) -> None:
        x.add_(1.0)

    try:
        x = torch.zeros(4, device=device)
        torch.compile(bump)(x)
        if float(x.sum()) != 4.0:
            return "the compiled probe computed a wrong result"
    except Exception as exc:
        return f"torch.compile cannot build a {device.type} kernel here: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


# ------------------------------------------------------------------------------ ghost batch norm


def _ghost_reference(x: Tensor, w: Tensor, b: Tensor, chunk: int, g: Tensor) -> list[Tensor]:
    x, w, b = (t.detach().double().cpu().requires_grad_() for t in (x, w, b))
    out = torch.cat([F.batch_norm(p, None, None, w, b, True, 0.0, 1e-5) for p in x.split(chunk)])
    return [out.detach(), *torch.autograd.grad(out, (x, w, b), g.double().cpu())]


def check_ghost_bn(device: torch.device, fused: bool) -> Outcome:
    from reglight.nn import GhostBatchNorm2d

    torch.manual_seed(0)
    chunk = 8
    layer = GhostBatchNorm2d(16, virtual_batch_size=chunk, fused=fused).to(device)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    x = (torch.randn(30, 16, 12, 12) * 2 + 0.5).to(device).requires_grad_()  # last chunk of 6
    g = torch.randn(30, 16, 12, 12).to(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = layer(x)
        got = [out, *torch.autograd.grad(out, (x, layer.weight, layer.bias), g)]
    fallback = [str(w.message) for w in caught if "could not be compiled" in str(w.message)]
    if fallback:
        return Outcome(FAIL, note="the compiled kernel fell back to eager: " + fallback[0][:120])
    want = _ghost_reference(x, layer.weight, layer.bias, chunk, g)
    names = ["output", "grad input", "grad weight", "grad bias"]
    outcome = _outcome(list(zip(got, want)), rtol=1e-4, atol=1e-4)
    outcome.details = {n: _compare([(a, c)], 1e-4, 1e-4)[0] for n, a, c in zip(names, got, want)}
    if device.type == "cuda":
        outcome.note += ", backward through native_batch_norm_backward.out"
    return outcome


# ------------------------------------------------------------------------------ PenaltyHook


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))


def _drive_hook(hook: Any, net: nn.Module, opt: torch.optim.Optimizer) -> None:
    """What ``Trainer.fit`` does around one step: ``on_fit_start`` once, the hook before the step."""
    hook.on_fit_start(SimpleNamespace(optimizers=[opt]), net)
    hook.on_before_optimizer_step(None, net, opt)


def check_penalty_gradient(device: torch.device, fused: bool) -> Outcome:
    from reglight.callbacks import PenaltyHook
    from reglight.penalties import ElasticNet

    torch.manual_seed(0)
    net = _tiny_net().to(device)
    penalty = ElasticNet(1e-2, 0.5)
    hook = PenaltyHook(penalty, fused=fused)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    before = {id(p): p.grad.clone() for p in net.parameters()}  # type: ignore[union-attr]
    _drive_hook(hook, net, opt)
    penalized = {id(p) for p in hook.parameters}
    if not penalized:
        return Outcome(FAIL, note="the hook selected no parameter")
    # reference: the data gradient plus the gradient of the penalty's value, float64 on the CPU
    pairs = []
    for p in net.parameters():
        want = before[id(p)].double().cpu()
        if id(p) in penalized:
            q = p.detach().double().cpu().requires_grad_()
            want = want + torch.autograd.grad(penalty.value([q]), q)[0]
        pairs.append((p.grad, want))
    return _outcome(pairs, rtol=1e-5, atol=1e-6, note=f"{penalty!r}, {len(penalized)} tensors")  # type: ignore[arg-type]


def check_penalty_proximal(device: torch.device) -> Outcome:
    from reglight.callbacks import PenaltyHook
    from reglight.penalties import L1

    torch.manual_seed(0)
    alpha, lr = 5e-2, 0.1
    net = _tiny_net().to(device)
    hook = PenaltyHook(L1(alpha), method="proximal")
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    start = {id(p): (p.detach().double().cpu(), p.grad.double().cpu()) for p in net.parameters()}  # type: ignore[union-attr]
    _drive_hook(hook, net, opt)
    opt.step()  # the proximal step runs here, as an optimizer step post-hook
    hook.on_fit_end(None, net)  # type: ignore[arg-type]
    penalized = {id(p) for p in hook.parameters}
    pairs = []
    for p in net.parameters():
        w0, g0 = start[id(p)]
        want = w0 - lr * g0
        if id(p) in penalized:  # soft-thresholding: the prox of lr·α‖·‖₁
            want = want.sign() * (want.abs() - lr * alpha).clamp_min(0.0)
        pairs.append((p, want))
    return _outcome(pairs, rtol=1e-5, atol=1e-6, note=f"L1 prox, {len(penalized)} tensors")


# ------------------------------------------------------------------------------ Trainer, autocast


def _fit(device: torch.device, precision: str, root: str) -> tuple[dict[str, Tensor], Any]:
    import lightning.pytorch as pl

    from reglight.callbacks import PenaltyHook
    from reglight.penalties import L1

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            return F.mse_loss(self.net(x).float(), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    y = (x[:, :4].sum(1, keepdim=True) + 0.1 * torch.randn(256, 1, generator=g)).float()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    model = Tiny()
    trainer = pl.Trainer(
        accelerator=device.type,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        max_epochs=3,
        callbacks=[PenaltyHook(L1(2e-2), log=False)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(model, data)
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    return state, trainer


def check_trainer(device: torch.device, precision: str) -> Outcome:
    if precision == "16-mixed" and device.type != "cuda":
        raise Skip(
            "float16 autocast with GradScaler needs CUDA (on the CPU Lightning offers bf16-mixed)"
        )
    if precision == "bf16-mixed" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU has no bfloat16 support")
    with tempfile.TemporaryDirectory() as root:
        ref, _ = _fit(device, "32-true", root)
        got, trainer = _fit(device, precision, root)
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    note = f"{precision} vs 32-true, L1 PenaltyHook, 24 steps"
    if precision == "16-mixed":
        if scaler is None:
            return Outcome(FAIL, note="precision='16-mixed' ran without a GradScaler")
        note += f", GradScaler scale {scaler.get_scale():g}"
    zeros = sum(int((v == 0).sum()) for k, v in got.items() if k.endswith("weight"))
    outcome = _outcome([(got[k], ref[k]) for k in ref], rtol=0.0, atol=5e-3, note=note)
    outcome.details = {"zero weights": zeros}
    return outcome


# ------------------------------------------------------------------------------ linear solvers


def check_enet_path(device: torch.device) -> Outcome:
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import enet_path as sk_enet_path

    from reglight.linear import enet_path

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    y = y - y.mean()
    alphas = np.geomspace(10.0, 0.01, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, sk_coefs, _ = sk_enet_path(
            X, y, l1_ratio=0.5, alphas=alphas, tol=1e-12, max_iter=100_000
        )
    pairs = []
    for dtype, tol in ((torch.float64, 1e-6), (torch.float32, 2e-2)):
        Xd = torch.as_tensor(X, dtype=dtype, device=device)
        yd = torch.as_tensor(y, dtype=dtype, device=device)
        grid = torch.as_tensor(alphas, dtype=dtype, device=device)
        _, coefs = enet_path(Xd, yd, l1_ratio=0.5, alphas=grid)
        if coefs.device.type != device.type:
            return Outcome(FAIL, note=f"the {dtype} path came back on {coefs.device}")
        err, ok = _compare([(coefs, torch.from_numpy(sk_coefs))], 0.0, tol)
        pairs.append((str(dtype).removeprefix("torch."), err, ok, tol))
    ok = all(p[2] for p in pairs)
    note = "vs scikit-learn enet_path (tol=1e-12): " + ", ".join(
        f"{d} {e:.1e} (≤ {t:g})" for d, e, _, t in pairs
    )
    return Outcome(
        PASS if ok else FAIL, max(p[1] for p in pairs), None, note
    )  # tolerance per dtype


def check_logistic_path(device: torch.device) -> Outcome:
    from sklearn.datasets import load_breast_cancer

    from reglight.linear import logistic_path

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    kw: dict[str, Any] = {"l1_ratio": 0.5, "n_alphas": 8, "eps": 1e-2}
    _, ref_coefs, ref_b = logistic_path(X, y, dtype=torch.float64, device="cpu", **kw)
    _, coefs, b = logistic_path(
        torch.as_tensor(X, dtype=torch.float32, device=device),
        torch.as_tensor(y, device=device),
        **kw,
    )
    if coefs.device.type != device.type:
        return Outcome(FAIL, note=f"the path came back on {coefs.device}")
    return _outcome(
        [(coefs, torch.as_tensor(ref_coefs)), (b, torch.as_tensor(ref_b))],
        rtol=0.0,
        atol=1e-2,
        note="float32 on the device vs float64 on the CPU, 8 alphas",
    )


# ------------------------------------------------------------------------------ DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, backend: str, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from reglight.callbacks import PenaltyHook
    from reglight.penalties import ElasticNet

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.manual_seed(0)
        net = _tiny_net().to(device)
        ddp = DistributedDataParallel(net, device_ids=[rank] if device.type == "cuda" else None)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        hook = PenaltyHook(ElasticNet(1e-2, 0.5))
        hook.on_fit_start(SimpleNamespace(optimizers=[opt]), net)  # type: ignore[arg-type]
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(16, 32, generator=g), torch.randint(0, 8, (16,), generator=g)
        part = slice(rank * 16 // world, (rank + 1) * 16 // world)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(ddp(x[part].to(device)), y[part].to(device)).backward()
            hook.on_before_optimizer_step(None, net, opt)  # type: ignore[arg-type]
            opt.step()
        torch.save({k: v.cpu() for k, v in net.state_dict().items()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def check_ddp(device: torch.device) -> Outcome:
    import torch.multiprocessing as mp

    from reglight.callbacks import PenaltyHook
    from reglight.penalties import ElasticNet

    if device.type == "cuda":
        if torch.cuda.device_count() < 2:
            raise Skip(f"DDP with NCCL needs 2 GPUs, {torch.cuda.device_count()} visible")
        import torch.distributed as dist

        if not dist.is_nccl_available():
            raise Skip("this torch build has no NCCL")
        backend = "nccl"
    else:
        backend = "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "state")
        mp.start_processes(
            _ddp_worker, args=(2, backend, _free_port(), out), nprocs=2, start_method="spawn"
        )
        states = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    # reference: one process, the whole batch, float64 on the CPU
    torch.manual_seed(0)
    net = _tiny_net().double()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    hook = PenaltyHook(ElasticNet(1e-2, 0.5))
    hook.on_fit_start(SimpleNamespace(optimizers=[opt]), net)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 32, generator=g), torch.randint(0, 8, (16,), generator=g)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x.double()), y).backward()
        hook.on_before_optimizer_step(None, net, opt)  # type: ignore[arg-type]
        opt.step()
    ref = net.state_dict()
    pairs = [(s[k], ref[k]) for s in states for k in ref]
    return _outcome(
        pairs, rtol=1e-5, atol=1e-5, note=f"{backend}, 2 processes vs 1 on the whole batch"
    )


# ------------------------------------------------------------------------------ main


def checks(
    device: torch.device, compile_skip: str | None
) -> list[tuple[str, Callable[[], Outcome]]]:
    def needs_compile(fn: Callable[[], Outcome]) -> Callable[[], Outcome]:
        def run() -> Outcome:
            if compile_skip:
                raise Skip(compile_skip)
            return fn()

        return run

    ddp_name = "ddp_nccl" if device.type == "cuda" else "ddp_gloo"
    return [
        ("ghost_bn_backward", lambda: check_ghost_bn(device, fused=False)),
        ("ghost_bn_fused", needs_compile(lambda: check_ghost_bn(device, fused=True))),
        ("penalty_hook_gradient", lambda: check_penalty_gradient(device, fused=False)),
        ("penalty_hook_fused", needs_compile(lambda: check_penalty_gradient(device, fused=True))),
        ("penalty_hook_proximal", lambda: check_penalty_proximal(device)),
        ("trainer_bf16_mixed", lambda: check_trainer(device, "bf16-mixed")),
        ("trainer_fp16_mixed", lambda: check_trainer(device, "16-mixed")),
        ("enet_path", lambda: check_enet_path(device)),
        ("logistic_path", lambda: check_logistic_path(device)),
        (ddp_name, lambda: check_ddp(device)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when present"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--only", default=None, help="run the checks whose name contains this text")
    parser.add_argument(
        "--no-ddp", action="store_true", help="skip the DDP check (it starts two processes)"
    )
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        print("FAIL: --device cuda but torch.cuda.is_available() is False")
        return 1
    device = torch.device(name)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    report = Report("gpu_check", {**vars(args), "device": str(device)})
    report.devices = [str(device)]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__} on {where}, {torch.get_num_threads()} CPU threads")

    start = time.perf_counter()
    compile_skip = compile_probe(device)
    probe_s = time.perf_counter() - start
    print(
        f"compile probe: {'ok' if compile_skip is None else compile_skip} ({probe_s:.1f} s)",
        flush=True,
    )
    table = report.table(
        "", ["check", "status", "time (s)", "max error", "tolerance", "note"], "--rrr-"
    )
    failed = 0
    for check, fn in checks(device, compile_skip):
        if args.only and args.only not in check:
            continue
        start = time.perf_counter()
        try:
            if args.no_ddp and check.startswith("ddp"):
                raise Skip("--no-ddp")
            outcome = fn()
        except Skip as reason:
            outcome = Outcome(SKIP, note=str(reason))
        except Exception as exc:
            outcome = Outcome(FAIL, note=f"{type(exc).__name__}: {exc}"[:300])
            traceback.print_exc()
        seconds = time.perf_counter() - start
        failed += outcome.status == FAIL
        table.row(
            [
                check,
                outcome.status,
                f"{seconds:.2f}",
                "" if outcome.error is None else f"{outcome.error:.1e}",
                "" if outcome.tol is None else f"{outcome.tol:g}",
                outcome.note.replace("|", "/"),
            ],
            labels={"check": check, "device": str(device)},
            medians={"seconds": seconds},
            extra={
                "status": outcome.status,
                "max_error": outcome.error,
                "tolerance": outcome.tol,
                "note": outcome.note,
                **outcome.details,
            },
        )
    print(f"\n{'FAILED' if failed else 'ALL PASSED'}: {failed} check(s) failed", flush=True)
    report.write(args.json)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
