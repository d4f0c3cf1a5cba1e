"""The recipes log epoch-level values so that Lightning has no `sync_dist` advice to give under DDP.

Lightning warns ("It is recommended to use `self.log(..., sync_dist=True)`") when a tensor is logged
per epoch without `sync_dist` while `torch.distributed` is initialized: one-epoch runs of the
recipes on two CPU processes (gloo) must not print it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNS = {
    "tiny": [],
    "lasso": ["--model.alpha=1.0", "--model.path_figure=false", "--data.batch_size=64"],
}
# medical_cnn: its own two-process run (tests/recipes/test_medical_cnn_run.py) checks the same


@pytest.mark.ddp
@pytest.mark.parametrize(
    "recipe",
    ["lasso", "tiny"],
)
def test_one_epoch_ddp_run_gives_no_sync_dist_advice(recipe: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglight",
            "run",
            recipe,
            *RUNS[recipe],
            "--trainer.max_epochs=1",
            "--trainer.accelerator=cpu",
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    advice = [line for line in proc.stderr.splitlines() if "sync_dist=True" in line]
    assert advice == [], "\n".join(advice)
