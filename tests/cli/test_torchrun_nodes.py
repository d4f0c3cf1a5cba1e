"""Two `torchrun` "nodes" on 127.0.0.1 run one recipe together and end with identical weights.

The commands are those of docs/scaling_out.md: one `torchrun --nnodes 2 --node-rank R
--nproc-per-node 1 ... -m reglight run tiny` per node, each in its own working folder as on two
machines, over DDP (gloo) with reglight's `EarlyStopping(restore_best_weights=True)` and an L1
`PenaltyHook`. A small callback saves each process's weights after fit and test; the reference is
the other node: both must hold the very same tensors, changed by training, after the same steps.
Only global rank 0 (node 0) writes checkpoints and the W&B run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TIMEOUT_S = 150  # both nodes together; a run takes ~15 s on an idle 2-core machine

SAVE_WEIGHTS = '''
"""Saves this process's weights and trainer state, in its working folder, after fit and test."""
from pathlib import Path

import lightning.pytorch as pl
import torch


def _state(trainer, module):
    return {
        "weights": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "global_rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "global_step": trainer.global_step,
    }


class SaveWeights(pl.Callback):
    def on_fit_start(self, trainer, pl_module):
        torch.save(_state(trainer, pl_module), Path.cwd() / "initial.pt")

    def on_test_end(self, trainer, pl_module):
        torch.save(_state(trainer, pl_module), Path.cwd() / "final.pt")
'''

CALLBACKS = """
trainer:
  callbacks:
    - class_path: reglight.callbacks.EarlyStopping
      init_args:
        monitor: val/loss
        patience: 1
        restore_best_weights: true
    - class_path: reglight.callbacks.PenaltyHook
      init_args:
        penalty:
          class_path: reglight.penalties.L1
          init_args:
            alpha: 0.001
    - class_path: save_weights.SaveWeights
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_command(node_rank: int, port: int, config: Path) -> list[str]:
    """`torchrun ... -m reglight run tiny ...` for one node (torchrun is `python -m torch.distributed.run`)."""
    return [
        *(sys.executable, "-m", "torch.distributed.run"),
        *("--nnodes", "2", "--node-rank", str(node_rank), "--nproc-per-node", "1"),
        *("--master-addr", "127.0.0.1", "--master-port", str(port)),
        *("-m", "reglight", "run", "tiny", "--config", str(config)),
        *("--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "2"),
        *("--trainer.strategy", "ddp", "--trainer.max_epochs", "3"),
        *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
        *("--data.n_samples", "256", "--data.batch_size", "32"),
    ]


@pytest.mark.ddp
def test_two_torchrun_nodes_end_with_identical_weights(tmp_path: Path) -> None:
    (tmp_path / "save_weights.py").write_text(textwrap.dedent(SAVE_WEIGHTS))
    config = tmp_path / "callbacks.yaml"
    config.write_text(CALLBACKS)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_DIR", "PYTEST_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]),
        WANDB_MODE="offline",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    nodes = [tmp_path / f"node{r}" for r in (0, 1)]
    procs = []
    try:
        for rank, folder in enumerate(nodes):
            folder.mkdir()
            log = (folder / "output.txt").open("w")
            procs.append(
                subprocess.Popen(
                    node_command(rank, port, config),
                    cwd=folder,
                    env={**env, "WANDB_DIR": str(folder)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: killed whole on failure
                )
            )
            log.close()
        for proc in procs:
            proc.wait(timeout=TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    outputs = [(folder / "output.txt").read_text() for folder in nodes]
    for rank, proc in enumerate(procs):
        assert proc.returncode == 0, f"node {rank}:\n{outputs[rank][-4000:]}"

    initial = [torch.load(f / "initial.pt") for f in nodes]
    final = [torch.load(f / "final.pt") for f in nodes]
    assert [s["global_rank"] for s in final] == [0, 1]
    assert {(s["world_size"], s["num_nodes"]) for s in final} == {(2, 2)}
    assert final[0]["global_step"] == final[1]["global_step"] > 0
    assert final[0]["weights"].keys() == final[1]["weights"].keys()
    for name, tensor in final[0]["weights"].items():
        assert torch.equal(tensor, final[1]["weights"][name]), name
        assert torch.equal(initial[0]["weights"][name], initial[1]["weights"][name]), name
    assert any(
        not torch.equal(initial[0]["weights"][n], t) for n, t in final[0]["weights"].items()
    ), "training changed no weight"

    # one summary, one checkpoint folder, one W&B run: all on the node of global rank 0
    assert outputs[0].count("final metrics") == 1 and "final metrics" not in outputs[1]
    assert list(nodes[0].rglob("*.ckpt")) and not list(nodes[1].rglob("*.ckpt"))
    assert list(nodes[0].rglob("*.wandb")) and not list(nodes[1].rglob("*.wandb"))
