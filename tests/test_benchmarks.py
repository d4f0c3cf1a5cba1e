"""The benchmark scripts run with their smallest settings and write well-formed JSON reports.

Each script runs as a subprocess, as a user runs it (``python benchmarks/NAME.py ... --json PATH``);
these tests check the report's structure and that every ratio is a positive finite number, not the
timings themselves. ``gpu_check.py --device cpu`` must pass every check that can run on a CPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "benchmarks"
TOP_KEYS = {
    "benchmark",
    "created",
    "command",
    "git_commit",
    "settings",
    "machine",
    "versions",
    "tables",
}
ROW_KEYS = {"cells", "labels", "medians", "ratios", "extra"}


def run_script(
    name: str, *args: str, tmp_path: Path, timeout: float = 240, data_keys: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run ``benchmarks/<name>.py`` with `args` and ``--json``; return the parsed report.

    `data_keys`: top-level keys the script adds to the report (the runs, the curves), kept out of the
    structure check.
    """
    out = tmp_path / f"{name}.json"
    env = dict(os.environ)
    # this checkout's sources first, whichever reglight the interpreter has installed
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("MPLBACKEND", "Agg")
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args, "--json", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    report = json.loads(out.read_text())
    data = {key: report.pop(key) for key in data_keys}
    check_structure(report, name, done.stdout)
    return {**report, **data}


def check_structure(report: dict[str, Any], name: str, stdout: str) -> None:
    assert set(report) == TOP_KEYS
    assert report["benchmark"] == name
    machine = report["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["torch_threads"] >= 1
    assert machine["devices"]
    for when in ("start", "end"):  # the speed probe, to compare runs made on different days
        probe = machine["speed_probe"][when]
        assert probe["matmul_gflops_1_thread"] > 0 and probe["copy_gb_per_s_1_thread"] > 0
        load = machine["load_average"][when]
        assert load is None or (len(load) == 3 and min(load) >= 0)
    assert report["versions"]["torch"] == metadata.version("torch")
    assert report["versions"]["python"] == platform.python_version()
    assert isinstance(report["settings"], dict) and "json" in report["settings"]
    assert report["tables"]
    for table in report["tables"]:
        assert table["columns"] and table["rows"]
        for row in table["rows"]:
            assert set(row) == ROW_KEYS
            assert len(row["cells"]) == len(table["columns"])
            # the markdown table on stdout is the one in the JSON file
            assert "| " + " | ".join(row["cells"]) + " |" in stdout
            for key, value in {**row["medians"], **row["ratios"]}.items():
                assert isinstance(value, (int, float)), (key, value)
                assert math.isfinite(value) and value > 0, (key, value)


def ratios(report: dict[str, Any]) -> list[float]:
    return [v for t in report["tables"] for r in t["rows"] for v in r["ratios"].values()]


def test_bench_lasso_path_quick(tmp_path: Path) -> None:
    report = run_script("bench_lasso_path", "--quick", "--threads", "1", tmp_path=tmp_path)
    (table,) = report["tables"]
    assert len(table["rows"]) == 6  # 3 problems x (lasso, elastic net)
    assert len(ratios(report)) >= 6
    for row in table["rows"]:
        # the solutions agree: reglight's objective is never worse than scikit-learn's by more
        # than rounding, and its duality gap at the smallest alpha is tiny
        assert row["extra"]["max_rel_objective_diff"] < 1e-6
        assert 0 <= row["extra"]["reglight_gap"] < 1e-6


@pytest.mark.slow
def test_bench_nn_quick(tmp_path: Path) -> None:
    report = run_script(
        "bench_nn", "--quick", "--repeats", "2", "--threads", "1", "--device", "cpu",
        tmp_path=tmp_path,
    )  # fmt: skip
    (table,) = report["tables"]
    assert len(table["rows"]) == 9
    assert len(ratios(report)) == 18


@pytest.mark.slow
def test_bench_penalties_quick(tmp_path: Path) -> None:
    report = run_script(
        "bench_penalties", "--quick", "--rounds", "1", "--threads", "1", tmp_path=tmp_path
    )
    training, update = report["tables"]
    assert len(training["rows"]) == 2 * 10  # two models x ten variants
    assert len(update["rows"]) == 9
    baseline = [r for r in training["rows"] if r["labels"]["variant"] == "none"]
    assert [r["ratios"]["step / none step"] for r in baseline] == [1.0, 1.0]


def test_bench_optim_quick(tmp_path: Path) -> None:
    report = run_script("bench_optim", "--quick", "--threads", "1", tmp_path=tmp_path)
    (table,) = report["tables"]
    assert len(table["rows"]) == 2 * 2 * 6  # two models x two base optimizers x six variants
    base = [r for r in table["rows"] if r["labels"]["variant"] == "base"]
    assert [r["ratios"]["step / base step"] for r in base] == [1.0] * 4


@pytest.mark.slow
@pytest.mark.data
def test_medmnist_one_epoch(tmp_path: Path, data_dir: Path) -> None:
    report = run_script(
        "medmnist", "--datasets", "breastmnist", "--seeds", "1", "--threads", "1",
        "--root", str(data_dir), "--trainer.max_epochs=1", tmp_path=tmp_path,
    )  # fmt: skip
    (table,) = report["tables"]
    mean_row = [r for r in table["rows"] if r["ratios"]]
    assert len(mean_row) == 1 and len(ratios(report)) == 2
    assert 0 < mean_row[0]["extra"]["test_auc_mean"] <= 1


def _gpu_check(tmp_path: Path, *args: str) -> dict[str, str]:
    report = run_script("gpu_check", "--device", "cpu", "--threads", "1", *args, tmp_path=tmp_path)
    (table,) = report["tables"]
    status = {r["labels"]["check"]: r["extra"]["status"] for r in table["rows"]}
    assert "FAIL" not in status.values(), status
    return status


def test_gpu_check_on_cpu_passes(tmp_path: Path) -> None:
    status = _gpu_check(tmp_path, "--no-ddp")
    assert set(status) == {
        "ghost_bn_backward",
        "ghost_bn_fused",
        "penalty_hook_gradient",
        "penalty_hook_fused",
        "penalty_hook_proximal",
        "trainer_bf16_mixed",
        "trainer_fp16_mixed",
        "enet_path",
        "logistic_path",
        "ddp_gloo",
    }
    assert status["trainer_fp16_mixed"] == "skip"  # GradScaler: CUDA only
    assert status["ddp_gloo"] == "skip"
    for name in ("ghost_bn_backward", "penalty_hook_gradient", "penalty_hook_proximal",
                 "trainer_bf16_mixed", "enet_path", "logistic_path"):  # fmt: skip
        assert status[name] == "pass", name


@pytest.mark.slow
@pytest.mark.ddp
def test_gpu_check_ddp_on_cpu_with_gloo(tmp_path: Path) -> None:
    assert _gpu_check(tmp_path, "--only", "ddp") == {"ddp_gloo": "pass"}


def test_gpu_check_exits_nonzero_when_a_check_fails(tmp_path: Path) -> None:
    """A failing check turns into exit code 1 (here: a CUDA run asked for on a machine without one)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py"), "--device", "cuda"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "FAIL" in done.stdout


@pytest.mark.slow
def test_bench_landscape_quick(tmp_path: Path) -> None:
    report = run_script("bench_landscape", "--quick", "--threads", "1", tmp_path=tmp_path)
    hvp, top, trace, planes = report["tables"]
    assert len(hvp["rows"]) == 2 and len(planes["rows"]) == 2  # CNN and MLP
    assert (
        len(top["rows"]) == 2 * 4
    )  # x (reglight, PyHessian, hessian-eigenthings, PyHessian tight)
    assert len(trace["rows"]) == 2 * (4 + 2)  # default rules (+ Hutch++), then equal sample counts
    for row in top["rows"]:  # every library found the same eigenvalue's neighbourhood
        assert row["extra"]["median_rel_error"] < 1.0
    ours = [r for r in top["rows"] if r["labels"]["library"] == "reglight"]
    assert all(r["extra"]["median_rel_error"] < 1e-2 for r in ours)


def test_grokking_quick(tmp_path: Path) -> None:
    """The grokking benchmark's smoke run: the recipe's LightningModule, every variant kind, the JSON runs."""
    out = tmp_path / "grokking.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("MPLBACKEND", "Agg")
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "grokking.py"),
            "--quick",
            "--json",
            str(out),
            "--figures",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"grokking exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    report = json.loads(out.read_text())
    runs = report.pop("runs")
    curves = report.pop("curves")
    check_structure(report, "grokking", done.stdout)
    variants = {"default", "no_weight_decay", "gradient_filter_on", "orthogonal_gradient_on"}
    assert {r["variant"] for r in runs} == variants and set(curves) == variants
    for run in runs:
        assert set(run) >= {
            "variant",
            "seed",
            "steps_to_99",
            "final_val_acc",
            "final_train_acc",
            "seconds",
        }
        assert run["steps_to_99"] is None or 1 <= run["steps_to_99"] <= run["steps"]
        assert 0 <= run["final_val_acc"] <= 1 and 0 <= run["final_train_acc"] <= 1
        assert run["seconds"] > 0
    # the budget: every variant 6 steps, no_weight_decay 8 (unless it stopped at 99 %)
    by_name = {r["variant"]: r for r in runs}
    assert by_name["no_weight_decay"]["steps"] in (by_name["no_weight_decay"]["steps_to_99"], 8)
    (timing,) = [t for t in report["tables"] if t["title"].startswith("Seconds per")]
    assert [r["labels"]["loop"] for r in timing["rows"]] == ["plain", "lightning"]
    assert (tmp_path / "grokking_curves.png").stat().st_size > 0
    assert (tmp_path / "grokking_variants.png").stat().st_size > 0


def test_grokking_hessian_series_matches_arpack(tmp_path: Path, monkeypatch: Any) -> None:
    """`--hessian-every`: the JSON's top-eigenvalue series, and its last value against ARPACK on the final model.

    The benchmark runs as a subprocess; the same run (same seed, same settings, without the probe, which
    never changes training) is then rebuilt here, and the largest eigenvalue of the Hessian of its training
    loss on the full training batch is computed by SciPy's ``eigsh`` on Hessian-vector products of
    ``torch.autograd`` (double backward through the math attention kernel).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from scipy.sparse.linalg import LinearOperator, eigsh
    from torch.nn.attention import SDPBackend, sdpa_kernel

    args = ["--quick", "--variants", "default", "--no-stop", "--hessian-every", "3"]
    report = run_script(
        "grokking",
        *args,
        "--timing-steps",
        "0",
        tmp_path=tmp_path,
        timeout=600,
        data_keys=("runs", "curves"),
    )
    (run,) = report["runs"]
    curve = report["curves"]["default"]["0"]
    assert run["steps"] == 6 and run["hessian_probes"] == 2
    assert curve["hessian_steps"] == [3, 6]
    values = curve["top_eigenvalue"]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert 0 < run["hessian_seconds"] < run["seconds"] and run["hessian_overhead"] > 0
    (table,) = [t for t in report["tables"] if t["title"].startswith("Top Hessian")]
    assert [r["labels"]["variant"] for r in table["rows"]] == ["default"]

    # the same run again, here, without the probe
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_grokking", BENCH / "grokking.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(
        sys.modules, "bench_grokking", bench
    )  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    from reglight.cli import find_recipe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark: the same arithmetic, the same weights
    try:
        cli = bench._build(
            find_recipe("grokking").path,
            bench.VARIANTS[0],
            0,
            ["--trainer.check_val_every_n_epoch=2", *bench.QUICK],
            6,
        )
        _, again = bench.run_variant(cli, bench.VARIANTS[0], 0, stop=False)
        # the same training (the probe changes nothing): the same losses and weight norms at every step
        assert again["train_loss"] == pytest.approx(curve["train_loss"], rel=1e-5)
        assert again["weight_norm"] == pytest.approx(curve["weight_norm"], rel=1e-5)
        model = cli.model.eval()
        (tokens, answers) = next(iter(cli.datamodule.train_dataloader()))
        params = [p for p in model.parameters() if p.requires_grad]
        with sdpa_kernel(SDPBackend.MATH):
            loss = F.cross_entropy(model.net(tokens, last_only=True), answers)
            grads = torch.autograd.grad(loss, params, create_graph=True)

        def matvec(v: np.ndarray) -> np.ndarray:
            vs = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32).ravel()).split(
                [p.numel() for p in params]
            )
            hv = torch.autograd.grad(
                grads, params, [x.view_as(p) for x, p in zip(vs, params)], retain_graph=True
            )
            return torch.cat([h.reshape(-1) for h in hv]).double().numpy()

        n = sum(p.numel() for p in params)
        op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        (top,) = eigsh(op, k=1, which="LA", tol=1e-6, v0=np.ones(n), return_eigenvectors=False)
    finally:
        torch.set_num_threads(threads)
    assert values[-1] == pytest.approx(top, rel=5e-3)
