"""Full-batch lasso / elastic-net paths: reglight.linear against scikit-learn's lasso_path/enet_path.

Three problems, float64, standardized columns and centred targets:

- ``diabetes``: scikit-learn's diabetes data (n = 442, p = 10);
- ``n20000_p500``: Gaussian design with equicorrelation 0.3, 50 informative features, unit noise;
- ``n200_p5000``: the same generator with n = 200, p = 5000 and 20 informative features.

Both libraries compute the same 100-point grid (α_max = max|Xᵀy|/(n·l1_ratio) down to 1e-3·α_max)
and solve the same objective ``1/(2n)‖y - Xw‖² + αρ‖w‖₁ + α(1-ρ)/2‖w‖²`` at every point with warm
starts; scikit-learn with its defaults (coordinate descent, ``tol=1e-4`` on the duality gap, Gram
matrix when n > p, Gap-Safe screening), reglight with its defaults (exact active-set solves). Each
gets its preferred memory layout (Fortran for scikit-learn, C for torch). After one untimed
warm-up call each, the variants alternate round by round and the table reports median wall times, their ratio and the quality of the
solutions: the duality gap at the smallest α (an upper bound on the distance to the optimal
objective) and the largest relative objective difference over the path (negative: reglight lower).

    python benchmarks/bench_lasso_path.py            # 5 rounds
    python benchmarks/bench_lasso_path.py --quick    # 1 round, smaller synthetic problems
    python benchmarks/bench_lasso_path.py --threads 1

When a CUDA device is present, reglight's time on it (tensors already on the device) is added.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_diabetes
from sklearn.linear_model import enet_path as sk_enet_path
from threadpoolctl import threadpool_limits

from _report import Report, Table, add_json_argument
from reglight.linear import enet_dual_gap, enet_objective, enet_path

N_ALPHAS = 100
EPS = 1e-3
# scikit-learn 1.7 takes the grid size as `alphas=<int>` and deprecates `n_alphas`
SK_GRID = (
    {"alphas": N_ALPHAS}
    if tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 7)
    else {"n_alphas": N_ALPHAS}
)


def standardize(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (X - X.mean(0)) / X.std(0), y - y.mean()


def synthetic(n: int, p: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.sqrt(0.7) * rng.standard_normal((n, p)) + np.sqrt(0.3) * rng.standard_normal((n, 1))
    w = np.zeros(p)
    w[rng.choice(p, k, replace=False)] = 2.0 * rng.standard_normal(k)
    return standardize(X, X @ w + rng.standard_normal(n))


def problems(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    X, y = load_diabetes(return_X_y=True)
    if quick:
        return {
            "diabetes": standardize(X, y),
            "n4000_p200": synthetic(4000, 200, 20, 0),
            "n100_p1000": synthetic(100, 1000, 10, 1),
        }
    return {
        "diabetes": standardize(X, y),
        "n20000_p500": synthetic(20_000, 500, 50, 0),
        "n200_p5000": synthetic(200, 5000, 20, 1),
    }


def run_sklearn(X: np.ndarray, y: np.ndarray, l1_ratio: float) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sk_enet_path(X, y, l1_ratio=l1_ratio, eps=EPS, **SK_GRID)


def run_reglight(X: np.ndarray, y: np.ndarray, l1_ratio: float) -> object:
    return enet_path(X, y, l1_ratio=l1_ratio, n_alphas=N_ALPHAS, eps=EPS)


def run_cuda(X: torch.Tensor, y: torch.Tensor, l1_ratio: float) -> object:
    out = enet_path(X, y, l1_ratio=l1_ratio, n_alphas=N_ALPHAS, eps=EPS)
    torch.cuda.synchronize()
    return out


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(rounds: int, quick: bool) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    cuda = torch.cuda.is_available()
    for name, (X, y) in problems(quick).items():
        X_f, X_c = np.asfortranarray(X), np.ascontiguousarray(X)
        for l1_ratio in (1.0, 0.5):
            path = "lasso_path" if l1_ratio == 1.0 else "enet_path(ρ=0.5)"

            variants: dict[str, Callable[[], object]] = {
                "sklearn": partial(run_sklearn, X_f, y, l1_ratio),
                "reglight": partial(run_reglight, X_c, y, l1_ratio),
            }
            if cuda:
                gpu = partial(
                    run_cuda, torch.from_numpy(X_c).cuda(), torch.from_numpy(y).cuda(), l1_ratio
                )
                gpu()  # CUDA context and kernels warm-up
                variants["reglight cuda"] = gpu
            for fn in variants.values():  # warm-up: lazy initialisations, first-touch of memory
                fn()
            times: dict[str, list[float]] = {k: [] for k in variants}
            results: dict[str, object] = {}
            for r in range(rounds):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                for key in order:
                    t, results[key] = timed(variants[key])
                    times[key].append(t)
            sk_alphas, sk_coefs, _ = results["sklearn"]  # type: ignore[misc]
            alphas, coefs = results["reglight"]  # type: ignore[misc]
            assert np.allclose(alphas, sk_alphas, rtol=1e-12), "the grids differ"
            rel = max(
                (
                    enet_objective(X, y, coefs[:, i], a, l1_ratio)
                    - enet_objective(X, y, sk_coefs[:, i], a, l1_ratio)
                )
                / enet_objective(X, y, sk_coefs[:, i], a, l1_ratio)
                for i, a in enumerate(alphas)
            )
            a_min = float(alphas[-1])
            medians = {
                f"{k.replace(' ', '_')}_ms": statistics.median(t) * 1e3 for k, t in times.items()
            }
            rows.append(
                {
                    "problem": name,
                    "path": path,
                    "l1_ratio": l1_ratio,
                    "shape": list(X.shape),
                    "medians": medians,
                    "sklearn_gap": enet_dual_gap(X, y, sk_coefs[:, -1], a_min, l1_ratio),
                    "reglight_gap": enet_dual_gap(X, y, coefs[:, -1], a_min, l1_ratio),
                    "max_rel_objective_diff": rel,
                }
            )
            print("  done:", name, path, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, smaller problems")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and BLAS threads (default: unchanged)"
    )
    add_json_argument(parser)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = Report(
        "bench_lasso_path",
        {
            **vars(args),
            "timed_rounds": rounds,
            "n_alphas": N_ALPHAS,
            "eps": EPS,
            "dtype": "float64",
        },
    )
    cuda = torch.cuda.is_available()
    report.devices = ["cpu", "cuda"] if cuda else ["cpu"]
    with threadpool_limits(limits=args.threads):
        rows = run(rounds, args.quick)
    header = [
        "problem",
        "path",
        "sklearn (ms)",
        "reglight (ms)",
        "ratio",
        "sklearn gap at α_min",
        "reglight gap at α_min",
        "max rel. objective diff",
    ]
    if cuda:
        header.append("reglight cuda (ms)")
    table: Table = report.table(
        f"{N_ALPHAS} alphas, eps={EPS}, float64, torch threads={torch.get_num_threads()}, "
        f"median of {rounds} round(s)",
        header,
    )
    for row in rows:
        med: dict[str, float] = row["medians"]  # type: ignore[assignment]
        t_sk, t_ours = med["sklearn_ms"], med["reglight_ms"]
        cells = [
            row["problem"],
            row["path"],
            f"{t_sk:.1f}",
            f"{t_ours:.1f}",
            f"{t_ours / t_sk:.2f}",
            f"{row['sklearn_gap']:.1e}",
            f"{row['reglight_gap']:.1e}",
            f"{row['max_rel_objective_diff']:+.1e}",
        ]
        ratios = {"reglight/sklearn": t_ours / t_sk}
        if cuda:
            cells.append(f"{med['reglight_cuda_ms']:.1f}")
            ratios["reglight cuda/sklearn"] = med["reglight_cuda_ms"] / t_sk
        table.row(
            cells,
            labels={k: row[k] for k in ("problem", "path", "l1_ratio", "shape")},
            medians=med,
            ratios=ratios,
            extra={k: row[k] for k in ("sklearn_gap", "reglight_gap", "max_rel_objective_diff")},
        )
    report.write(args.json)


if __name__ == "__main__":
    main()
