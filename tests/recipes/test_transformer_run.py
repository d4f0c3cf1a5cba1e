"""End to end: `reglight run grokking` (one process and DDP) and `reglight ablate sequence`, tiny settings."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reglight.ablation import load_ablation
from reglight.cli import find_recipe, main

TINY_GROKKING = [
    "--data.p=11",
    "--model.d_model=16",
    "--model.heads=2",
    "--trainer.max_steps=3",
    "--trainer.enable_progress_bar=false",
]
TINY_SEQUENCE = [
    "--data.n_train=32",
    "--data.n_val=16",
    "--data.n_test=16",
    "--data.max_len=8",
    "--data.batch_size=16",
    "--model.d_model=8",
    "--model.heads=2",
    "--trainer.max_epochs=1",
]


def test_grokking_run_logs_accuracy_and_weight_norm_every_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    code = main(
        [
            "run",
            "grokking",
            *TINY_GROKKING,
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={logs}",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    assert code == 0
    assert "test/acc" in capsys.readouterr().out
    with next(logs.rglob("metrics.csv")).open() as fh:
        rows = list(csv.DictReader(fh))
    for key in ("train/acc", "train/weight_norm", "val/acc"):
        steps = {int(r["step"]) for r in rows if r.get(key)}
        assert steps == {0, 1, 2} if key != "val/acc" else len(steps) == 3, (key, steps)
    norms = [float(r["train/weight_norm"]) for r in rows if r.get("train/weight_norm")]
    assert all(n > 0 for n in norms)


@pytest.mark.parametrize("recipe", ["grokking", "sequence", "counting"])
def test_ablations_declare_norm_and_norm_position(recipe: str) -> None:
    ablation = load_ablation(find_recipe(recipe))
    settings = {
        (v.overrides.get("model.norm", "layer"), v.overrides.get("model.norm_position", "pre"))
        for v in ablation.variants.values()
    }
    assert {("layer", "pre"), ("layer", "post"), ("batch", "pre"), ("none", "pre")} <= settings
    assert "test/acc" in ablation.metrics


def test_sequence_ablation_runs_on_tiny_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "ablation.json"
    variants = ["pre_batch", "pre_batch_unmasked", "post_layer"]
    code = main(
        [
            "ablate",
            "sequence",
            "--seeds",
            "1",
            "--variants",
            ",".join(variants),
            "--logger",
            "none",
            "--save_dir",
            str(tmp_path / "abl"),
            "--json",
            str(output),
            *TINY_SEQUENCE,
        ]
    )
    assert code == 0
    summary = capsys.readouterr().out.split("## Ablation runs")[0]
    for name in variants:
        assert any(line.startswith(f"| {name} |") for line in summary.splitlines())
    runs = json.loads(output.read_text())["runs"]
    trained = {
        name: (r[0]["config"]["model.norm"], r[0]["config"]["model.norm_position"])
        for name, r in runs.items()
    }
    assert trained == {
        "pre_batch": ("batch", "pre"),
        "pre_batch_unmasked": ("batch_unmasked", "pre"),
        "post_layer": ("layer", "post"),
    }
    assert all(0.0 <= r[0]["metrics"]["test/acc"] <= 1.0 for r in runs.values())


@pytest.mark.ddp
def test_grokking_ddp_two_cpu_processes(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglight",
            "run",
            "grokking",
            *TINY_GROKKING,
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("final metrics") == 1
    assert "val/acc" in proc.stdout and "train/weight_norm" in proc.stdout
