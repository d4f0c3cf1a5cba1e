"""Curvature and loss slices: `reglight.landscape` against PyHessian, hessian-eigenthings and loss-landscapes.

Two models, CPU float32, one batch, evaluation mode (PyHessian puts the model in eval mode itself; the
others are handed a model already in eval mode):

- CNN: the medical-image recipe's `SmallCNN` (width 8, hidden 32), on BreastMNIST images when the
  ``.npz`` is found (``--root`` or ``REGLIGHT_DATA``), else random images;
- MLP: 784 -> 128 -> 128 -> 10 on random data;

each after 30 Adam steps on its batch (weights near a minimum of the batch's loss, as in practice).

Tables:

1. Hessian-vector product: one ``hvp`` call with one vector, double backward against forward-over-reverse
   (``torch.func.jvp`` over ``torch.func.grad``). Within one call of the iterative functions, double
   backward also reuses the gradient's graph for every further product (one batch), which
   forward-over-reverse cannot.
2. Top eigenvalue, each library with its default stopping rule: reglight Lanczos (``tol=1e-3``),
   PyHessian power iteration (``maxIter=100, tol=1e-3``), hessian-eigenthings ``lanczos(k=1)`` (its
   default: 2 Lanczos steps); then PyHessian with ``tol=1e-6``, which reaches about reglight's error.
   Error: relative to SciPy's ARPACK ``eigsh`` at ``tol=1e-8`` on plain autograd Hessian-vector products.
   (PyHessian's ``maxIter`` is raised to 1000 so that the tolerance, not the cap, stops it.)
3. Hessian trace, each with its default rule: reglight Hutchinson (stops when the standard error is below
   1 % of the estimate, 10 to 100 samples), the same with a rank-10 Hutch++ sketch (``sketch=10``: 20
   more products, then Hutchinson on the deflated Hessian), PyHessian Hutchinson (``maxIter=100, tol=1e-3``: stops when the
   running mean changes by less than 0.1 %), hessian-eigenthings ``trace`` (Hutch++, 100 products).
   Error: relative to a Hutchinson reference with ``--ref-samples`` Rademacher samples (its own standard
   error is printed); "expected error" (plain Hutchinson only) is $s/\\sqrt{n}$ with $s$ the reference's per-sample standard
   deviation and $n$ the samples used. A second block runs both Hutchinson codes with the same number of
   samples (no early stop), which compares the cost per sample.
4. 2-D slice on a 21 x 21 grid of filter-normalized directions: reglight ``slice_2d`` against
   loss-landscapes ``random_plane`` (``deepcopy_model=True``: it moves the weights in place otherwise).

Every measurement is repeated ``--repeats`` times, round robin between the libraries, with a new seed per
repeat; the table gives medians and ratios (ours / anchor; below 1 is faster).

    python benchmarks/bench_landscape.py --threads 1
    python benchmarks/bench_landscape.py --quick     # tiny sizes, smoke run
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _report import Report, add_json_argument
from reglight import landscape as ls

# benchmarks/medmnist.py would shadow the medmnist package that the recipe imports
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (_HERE, "")]
from reglight.recipes.medical_cnn import SmallCNN  # noqa: E402

sys.path.insert(0, _HERE)

Batch = tuple[Tensor, Tensor]

# --quick caps every iteration count at this (a smoke run of the script, not a measurement)
CAP = {"iterations": 1000}


def loss_fn(model: nn.Module, batch: Batch) -> Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


# --------------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------------
def _breastmnist(root: str | None, n: int) -> Batch | None:
    folder = root or os.environ.get("REGLIGHT_DATA")
    if not folder:
        return None
    path = Path(folder) / "breastmnist.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        x = torch.tensor(data["train_images"][:n], dtype=torch.float32)[:, None] / 255.0
        y = torch.tensor(data["train_labels"][:n, 0], dtype=torch.long)
    return (x - 0.5) / 0.25, y


def problems(quick: bool, root: str | None) -> list[tuple[str, nn.Module, Batch, str]]:
    torch.manual_seed(0)
    n_cnn = 4 if quick else 32
    real = _breastmnist(root, n_cnn)
    if real is None:
        cnn_batch = (torch.randn(n_cnn, 1, 28, 28), torch.randint(0, 2, (n_cnn,)))
        cnn_data = "random images"
    else:
        cnn_batch, cnn_data = real, "BreastMNIST"
    width, hidden = (4, 8) if quick else (8, 32)
    cnn = SmallCNN(width=width, hidden=hidden).eval()
    units = 16 if quick else 128
    n_mlp = 32 if quick else 256
    mlp = nn.Sequential(
        nn.Linear(784, units), nn.ReLU(), nn.Linear(units, units), nn.ReLU(), nn.Linear(units, 10)
    ).eval()
    mlp_batch = (torch.randn(n_mlp, 784), torch.randint(0, 10, (n_mlp,)))
    # a few optimizer steps on the batch: weights near a minimum of it, as in practice (at
    # initialization the batch-norm biases are all zero, on which loss-landscapes divides by zero)
    for model, batch in ((cnn, cnn_batch), (mlp, mlp_batch)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(5 if quick else 30):
            opt.zero_grad()
            loss_fn(model, batch).backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        model.eval()
    return [
        (f"CNN ({cnn_data}, batch {n_cnn})", cnn, cnn_batch, "cnn"),
        (f"MLP (batch {n_mlp})", mlp, mlp_batch, "mlp"),
    ]


# --------------------------------------------------------------------------------------------------
# references (plain autograd, SciPy)
# --------------------------------------------------------------------------------------------------
class PlainHVP:
    """Hessian-vector products with plain autograd on flat float64 numpy vectors (for SciPy)."""

    def __init__(self, model: nn.Module, batch: Batch) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        loss = loss_fn(model, batch)
        self.grads = torch.autograd.grad(loss, self.params, create_graph=True)
        self.n = sum(p.numel() for p in self.params)
        self.count = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.count += 1
        parts = [
            t.view_as(p) for t, p in zip(v.split([p.numel() for p in self.params]), self.params)
        ]
        hv = torch.autograd.grad(self.grads, self.params, grad_outputs=parts, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv])

    def numpy(self, v: np.ndarray) -> np.ndarray:
        return self(torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(-1))).double().numpy()


def reference_top_eigenvalue(model: nn.Module, batch: Batch) -> float:
    from scipy.sparse.linalg import LinearOperator, eigsh

    op = PlainHVP(model, batch)
    lin = LinearOperator((op.n, op.n), matvec=op.numpy, dtype=np.float64)
    values = eigsh(lin, k=1, which="LA", tol=1e-8, return_eigenvectors=False)
    return float(values[0])


def reference_trace(model: nn.Module, batch: Batch, samples: int) -> tuple[float, float, float]:
    """Hutchinson with many samples: (estimate, its standard error, per-sample standard deviation)."""
    op = PlainHVP(model, batch)
    g = torch.Generator().manual_seed(12345)
    vals = []
    for _ in range(samples):
        v = torch.randint(0, 2, (op.n,), generator=g).float() * 2 - 1
        vals.append(float(torch.dot(v, op(v))))
    s = statistics.stdev(vals)
    return statistics.fmean(vals), s / math.sqrt(samples), s


# --------------------------------------------------------------------------------------------------
# the anchors
# --------------------------------------------------------------------------------------------------
def pyhessian_top(
    model: nn.Module, batch: Batch, seed: int, tol: float = 1e-3, max_iter: int = 100
) -> tuple[float, int]:
    from pyhessian import hessian

    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    h = hessian(m, nn.CrossEntropyLoss(), data=batch, cuda=False)
    counter = _count_pyhessian(h)
    values, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=1)
    return float(values[0]), counter()


def pyhessian_trace(
    model: nn.Module, batch: Batch, seed: int, fixed: int | None = None
) -> tuple[float, int]:
    from pyhessian import hessian

    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    h = hessian(m, nn.CrossEntropyLoss(), data=batch, cuda=False)
    if fixed is None:
        samples = h.trace(maxIter=min(100, CAP["iterations"]), tol=1e-3)  # its defaults
    else:
        # one sample per call: no tolerance stops it early (its test divides by the signed running
        # mean, so a negative trace passes any negative tolerance)
        samples = [h.trace(maxIter=1)[0] for _ in range(fixed)]
    return float(np.mean(samples)), len(samples)


def _count_pyhessian(h: Any) -> Callable[[], int]:
    module = sys.modules["pyhessian.hessian"]  # the package's `hessian` attribute is the class
    calls = {"n": 0}
    original = module.hessian_vector_product

    def counted(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        return original(*a, **k)

    module.hessian_vector_product = counted

    def done() -> int:
        module.hessian_vector_product = original
        return calls["n"]

    return done


def eigenthings_top(model: nn.Module, batch: Batch, seed: int) -> tuple[float, int]:
    from hessian_eigenthings import HessianOperator, lanczos

    op = HessianOperator(model, [batch], loss_fn)
    res = lanczos(op, k=1, seed=seed)
    return float(res.eigenvalues[0]), int(getattr(res, "iterations", 0) or 2)


def eigenthings_trace(model: nn.Module, batch: Batch, seed: int) -> tuple[float, int]:
    from hessian_eigenthings import HessianOperator, trace

    op = HessianOperator(model, [batch], loss_fn)
    res = trace(op, num_matvecs=min(100, CAP["iterations"]), seed=seed)  # its default: 100
    return float(res.estimate), min(100, CAP["iterations"])


def ours_top(model: nn.Module, batch: Batch, seed: int) -> tuple[float, int]:
    res = ls.top_eigenvalues(model, loss_fn, [batch], generator=torch.Generator().manual_seed(seed))
    return float(res.eigenvalues[0]), res.n_hvp


def ours_trace(model: nn.Module, batch: Batch, seed: int, **kw: Any) -> tuple[float, int]:
    kw.setdefault("n_samples", min(100, CAP["iterations"]))  # its default: 100
    res = ls.hessian_trace(
        model, loss_fn, [batch], generator=torch.Generator().manual_seed(seed), **kw
    )
    return res.trace, res.n_hvp


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def round_robin(
    runs: dict[str, Callable[[int], Any]], repeats: int
) -> dict[str, list[tuple[float, Any]]]:
    """Each run once per repeat (seed = repeat), in an order that rotates every repeat."""
    names = list(runs)
    out: dict[str, list[tuple[float, Any]]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            out[n].append(timed(lambda n=n, r=r: runs[n](r)))
    return out


def fmt(x: float, digits: int = 3) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"


# --------------------------------------------------------------------------------------------------
# the four measurements, one problem at a time
# --------------------------------------------------------------------------------------------------
def bench_hvp(table: Any, title: str, model: nn.Module, batch: Batch, key: str, k: int) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    vec = [torch.randn_like(p) for p in model.parameters()]

    def run(method: str) -> Callable[[int], Any]:
        return lambda _r: ls.hvp(model, loss_fn, [batch], vec, method=method)

    res = round_robin({m: run(m) for m in ("double_backward", "forward_over_reverse")}, k)
    db = statistics.median(t for t, _ in res["double_backward"]) * 1e3
    fr = statistics.median(t for t, _ in res["forward_over_reverse"]) * 1e3
    table.row(
        [title, n_params, f"{db:.1f}", f"{fr:.1f}", f"{db / fr:.2f}"],
        labels={"model": key, "measure": "hvp"},
        medians={"double_backward_ms": db, "forward_over_reverse_ms": fr},
        ratios={"double_backward / forward_over_reverse": db / fr},
    )


def bench_top(
    table: Any, title: str, model: nn.Module, batch: Batch, key: str, repeats: int
) -> None:
    ref = reference_top_eigenvalue(model, batch)
    res = round_robin(
        {
            "reglight": lambda r: ours_top(model, batch, r),
            "PyHessian": lambda r: pyhessian_top(model, batch, r),
            "hessian-eigenthings": lambda r: eigenthings_top(model, batch, r),
            # the same error as reglight's default: PyHessian with a tighter tolerance
            "PyHessian tol=1e-6": lambda r: pyhessian_top(
                model, batch, r, tol=1e-6, max_iter=CAP["iterations"]
            ),
        },
        repeats,
    )
    ours_t = statistics.median(t for t, _ in res["reglight"])
    for lib, runs in res.items():
        tm = statistics.median(t for t, _ in runs)
        err = statistics.median(abs(v - ref) / abs(ref) for _, (v, _) in runs)
        n = statistics.median(c for _, (_, c) in runs)
        ratio = ours_t / tm
        table.row(
            [
                title,
                lib,
                fmt(tm),
                f"{n:.0f}",
                f"{err:.1e}",
                "—" if lib == "reglight" else f"{ratio:.2f}",
            ],
            labels={"model": key, "measure": "top_eigenvalue", "library": lib},
            medians={"time_s": tm, "products": n},
            ratios={} if lib == "reglight" else {"time ours / anchor": ratio},
            extra={"reference": ref, "median_rel_error": err},
        )


def bench_trace(
    table: Any,
    title: str,
    model: nn.Module,
    batch: Batch,
    key: str,
    repeats: int,
    ref_samples: int,
    fixed: int,
) -> None:
    ref, ref_se, sd = reference_trace(model, batch, ref_samples)
    print(f"\n{title}: reference trace {ref:.4g} ± {ref_se:.2g} ({ref_samples} samples)\n")
    blocks: dict[str, dict[str, Callable[[int], Any]]] = {
        "default": {
            "reglight": lambda r: ours_trace(model, batch, r),
            "reglight sketch=10": lambda r: ours_trace(model, batch, r, sketch=10),
            "PyHessian": lambda r: pyhessian_trace(model, batch, r),
            "hessian-eigenthings": lambda r: eigenthings_trace(model, batch, r),
        },
        f"{fixed} samples": {
            "reglight": lambda r: ours_trace(model, batch, r, n_samples=fixed, tol=0),
            "PyHessian": lambda r: pyhessian_trace(model, batch, r, fixed=fixed),
        },
    }
    for rule, runs_def in blocks.items():
        res = round_robin(runs_def, repeats)
        ours_t = statistics.median(t for t, _ in res["reglight"])
        for lib, runs in res.items():
            tm = statistics.median(t for t, _ in runs)
            err = statistics.median(abs(v - ref) / abs(ref) for _, (v, _) in runs)
            n = statistics.median(c for _, (_, c) in runs)
            plain = lib in ("reglight", "PyHessian")  # plain Hutchinson: s / sqrt(n)
            expected = sd / math.sqrt(n) / abs(ref) if plain else math.nan
            ratio = ours_t / tm
            table.row(
                [
                    title,
                    lib,
                    rule,
                    fmt(tm),
                    f"{n:.0f}",
                    f"{err:.1e}",
                    "n/a" if math.isnan(expected) else f"{expected:.1e}",
                    "—" if lib == "reglight" else f"{ratio:.2f}",
                ],
                labels={"model": key, "measure": "trace", "library": lib, "rule": rule},
                medians={"time_s": tm, "products": n},
                ratios={} if lib == "reglight" else {"time ours / anchor": ratio},
                extra={
                    "reference": ref,
                    "reference_se": ref_se,
                    "median_rel_error": err,
                    "expected_rel_error": expected,
                },
            )


def bench_slice(
    table: Any, title: str, model: nn.Module, batch: Batch, key: str, repeats: int, steps: int
) -> None:
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    coords = torch.linspace(-1.0, 1.0, steps)
    metric = Loss(nn.CrossEntropyLoss(), batch[0], batch[1])

    def ours(r: int) -> Any:
        g = torch.Generator().manual_seed(r)
        dx = ls.random_directions(model, generator=g)
        dy = ls.random_directions(model, generator=g)
        return ls.slice_2d(model, loss_fn, [batch], dx, dy, coords, coords).losses

    def theirs(r: int) -> Any:
        # its filter normalization divides by the norm of each scalar "filter" of the second
        # (orthogonalized) direction, which is sometimes exactly 0: draw again then
        for attempt in range(10):
            torch.manual_seed(r + 1000 * attempt)
            try:
                with torch.no_grad():
                    return loss_landscapes.random_plane(
                        model,
                        metric,
                        distance=1,
                        steps=steps,
                        normalization="filter",
                        deepcopy_model=True,
                    )
            except ZeroDivisionError:
                continue
        raise RuntimeError("loss-landscapes failed 10 times")

    res = round_robin({"reglight": ours, "loss-landscapes": theirs}, repeats)
    a = statistics.median(t for t, _ in res["reglight"])
    b = statistics.median(t for t, _ in res["loss-landscapes"])
    table.row(
        [title, fmt(a), fmt(b), f"{a / b:.2f}"],
        labels={"model": key, "measure": "slice_2d"},
        medians={"reglight_s": a, "loss_landscapes_s": b},
        ratios={"time ours / loss-landscapes": a / b},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny models and grids, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per measurement")
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--ref-samples", type=int, default=None, help="samples of the reference trace"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="grid points per axis of the 2-D slice"
    )
    parser.add_argument(
        "--root", default=None, help="folder with breastmnist.npz (else REGLIGHT_DATA)"
    )
    parser.add_argument(
        "--only",
        default="hvp,top,trace,slice",
        help="comma-separated parts to run (hvp, top, trace, slice); default all",
    )
    add_json_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings(
        "ignore", category=UserWarning
    )  # PyHessian's backward(create_graph=True)
    warnings.filterwarnings("ignore", category=FutureWarning)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.quick:
        CAP["iterations"] = 12
    ref_samples = args.ref_samples or (20 if args.quick else 400)
    steps = args.steps or (5 if args.quick else 21)
    report = Report(
        "bench_landscape",
        {
            "quick": args.quick,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
            "ref_samples": ref_samples,
            "slice_steps": steps,
            "json": str(args.json) if args.json else None,
            "only": args.only,
        },
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU float32, {repeats} repeats"
    )
    probs = problems(args.quick, args.root)

    parts = {p.strip() for p in args.only.split(",")}
    unknown = parts - {"hvp", "top", "trace", "slice"}
    if unknown:
        parser.error(f"--only: unknown parts {sorted(unknown)}")
    if "hvp" in parts:
        hvp_table(report, probs, args.quick)
    if "top" in parts:
        top_table(report, probs, repeats)
    if "trace" in parts:
        trace_table(report, probs, repeats, ref_samples, args.quick)
    if "slice" in parts:
        slice_table(report, probs, repeats, steps)
    report.write(args.json)
    return 0


def hvp_table(report: Report, probs: list[Any], quick: bool) -> None:
    t1 = report.table(
        "Hessian-vector product, one `hvp` call with one vector (median ms)",
        ["model", "parameters", "double backward", "forward-over-reverse", "ratio"],
        "--rrr",
    )
    for title, model, batch, key in probs:
        bench_hvp(t1, title, model, batch, key, 3 if quick else 10)


def top_table(report: Report, probs: list[Any], repeats: int) -> None:
    t2 = report.table(
        "Top eigenvalue, default stopping rules (median time; error relative to ARPACK)",
        ["model", "library", "time (s)", "products", "rel. error", "time ratio (ours / it)"],
        "--rrrr",
    )
    for title, model, batch, key in probs:
        bench_top(t2, title, model, batch, key, repeats)


def trace_table(
    report: Report, probs: list[Any], repeats: int, ref_samples: int, quick: bool
) -> None:
    t3 = report.table(
        "Hessian trace (median time; error relative to a Hutchinson reference)",
        [
            "model",
            "library",
            "rule",
            "time (s)",
            "products",
            "rel. error",
            "expected rel. error",
            "time ratio (ours / it)",
        ],
        "---rrrrr",
    )
    for title, model, batch, key in probs:
        bench_trace(t3, title, model, batch, key, repeats, ref_samples, 4 if quick else 20)


def slice_table(report: Report, probs: list[Any], repeats: int, steps: int) -> None:
    t4 = report.table(
        f"2-D slice, {steps} x {steps} grid, filter-normalized directions (median s)",
        ["model", "reglight slice_2d", "loss-landscapes random_plane", "ratio (ours / it)"],
        "-rrr",
    )
    for title, model, batch, key in probs:
        bench_slice(t4, title, model, batch, key, repeats, steps)


if __name__ == "__main__":
    raise SystemExit(main())
