"""End to end: `reglight run medical_cnn` (one process and DDP) and `reglight ablate medical_cnn` on tiny data."""

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
from reglight.recipes.medical_cnn import write_synthetic_medmnist

VARIANTS = list(load_ablation(find_recipe("medical_cnn")).variants)

N_SAMPLES = (48, 16, 16)
FAST = [
    "--trainer.max_epochs=1",
    "--data.batch_size=16",
    "--model.width=8",
    "--model.hidden=16",
]


@pytest.fixture
def tiny_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A generated BreastMNIST-format file, found through REGLIGHT_DATA like the real data."""
    root = tmp_path / "data"
    write_synthetic_medmnist(root / "breastmnist.npz", "breastmnist", n_samples=N_SAMPLES, seed=0)
    monkeypatch.setenv("REGLIGHT_DATA", str(root))
    monkeypatch.chdir(tmp_path)
    return root


def test_one_epoch_run_logs_metrics_confusion_matrix_and_report(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    code = main(
        [
            "run",
            "medical_cnn",
            *FAST,
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={logs}",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for key in (
        "val/auc",
        "test/auc",
        "test/acc",
        "test/gap_auc",
        "test/train_auc",
        "MedMNIST metrics",
    ):
        assert key in out
    assert "Confusion matrix (test)" in out
    log_dir = next(logs.rglob("metrics.csv")).parent
    with (log_dir / "metrics.csv").open() as fh:
        header = next(csv.reader(fh))
    assert {"val/auc", "val/acc", "val/loss", "train/loss", "test/auc", "test/gap_loss"} <= set(
        header
    )
    assert (log_dir / "media" / "test_confusion_matrix.png").stat().st_size > 0
    with (log_dir / "media" / "test_confusion_matrix_table.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["", "pred malignant", "pred normal, benign"]
    assert (
        sum(int(c) for row in rows[1:] for c in row[1:]) == N_SAMPLES[2]
    )  # every test image counted
    assert list(tmp_path.rglob("best-epoch=0.ckpt"))  # model selection on val/auc kept a checkpoint


def _csv_run(tmp_path: Path, recipe: str, *args: str) -> list[dict[str, str]]:
    """`reglight run RECIPE` on the tiny data with a CSV logger; the rows of its metrics.csv."""
    logs = tmp_path / "logs"
    code = main(
        [
            "run",
            recipe,
            *FAST,
            *args,
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={logs}",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    assert code == 0
    with next(logs.rglob("metrics.csv")).open() as fh:
        return list(csv.DictReader(fh))


def test_penalty_hook_instead_of_weight_decay(tiny_root: Path, tmp_path: Path) -> None:
    """The recipe's L2 can come from reglight's PenaltyHook (appended from the command line)."""
    rows = _csv_run(
        tmp_path,
        "medical_cnn",
        "--model.weight_decay=0",
        "--trainer.callbacks+=reglight.callbacks.PenaltyHook",
        "--trainer.callbacks.penalty=reglight.penalties.L2",
        "--trainer.callbacks.penalty.alpha=0.001",
        "--trainer.log_every_n_steps=1",
    )
    values = [float(r["penalty/value"]) for r in rows if r.get("penalty/value")]
    assert values and all(v > 0 for v in values)


def test_ensemble_run_and_its_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    """`--model.ensemble 2`: one run trains two networks; the best checkpoint reloads both."""
    import torch

    from reglight.recipes.medical_cnn import DeepEnsemble, MedicalCNN

    code = main(
        [
            "run",
            "medical_cnn",
            *FAST,
            "--model.ensemble=2",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    assert code == 0
    (ckpt,) = tmp_path.rglob("best-epoch=0.ckpt")
    model = MedicalCNN.load_from_checkpoint(ckpt).eval()
    assert isinstance(model.net, DeepEnsemble) and len(model.net.members) == 2
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        members = [m(x).softmax(-1) for m in model.net.members]
        assert torch.allclose(model(x).softmax(-1), (members[0] + members[1]) / 2, atol=1e-6)


def test_ensemble_recipe_is_medical_cnn_with_member_selection() -> None:
    """`medical_cnn_ensemble.yaml` equals `medical_cnn.yaml` but for the ensemble and what selects it."""
    import yaml

    base = yaml.safe_load(find_recipe("medical_cnn").path.read_text())
    ens = yaml.safe_load(find_recipe("medical_cnn_ensemble").path.read_text())
    base.pop("ablation")
    assert ens["model"]["init_args"].pop("ensemble") == 5
    assert ens["model"]["init_args"].pop("ensemble_selection") == "member"
    assert ens["trainer"]["logger"]["init_args"].pop("name") == "medical_cnn_ensemble"
    base["trainer"]["logger"]["init_args"].pop("name")
    for cb_base, cb_ens in zip(
        base["trainer"]["callbacks"], ens["trainer"]["callbacks"], strict=True
    ):
        if cb_base["init_args"].get("monitor") == "val/auc":
            assert cb_ens["init_args"]["monitor"] == "val/member_best_auc"
            cb_ens["init_args"]["monitor"] = "val/auc"
    assert ens == base


def test_ensemble_recipe_run_logs_each_member(tiny_root: Path, tmp_path: Path) -> None:
    rows = _csv_run(
        tmp_path, "medical_cnn_ensemble", "--model.ensemble=2", "--trainer.max_epochs=2"
    )
    best = [float(r["val/member_best_auc"]) for r in rows if r.get("val/member_best_auc")]
    members = [
        [float(r[f"val/member_{k}/auc"]) for r in rows if r.get(f"val/member_{k}/auc")]
        for k in range(2)
    ]
    assert len(best) == 2 and all(len(m) == 2 for m in members)
    # the mean over members of the best AUC each has reached so far
    for epoch in range(2):
        expected = sum(max(m[: epoch + 1]) for m in members) / 2
        assert best[epoch] == pytest.approx(expected, abs=1e-6)


@pytest.mark.ddp
def test_ddp_run_two_cpu_processes(tiny_root: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "REGLIGHT_DATA": str(tiny_root),
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglight",
            "run",
            "medical_cnn",
            *FAST,
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("final metrics") == 1  # one summary, from rank 0
    for key in ("val/auc", "test/auc", "test/acc", "test/gap_auc", "MedMNIST metrics"):
        assert key in proc.stdout
    # the recipe and its callbacks log epoch-level values with sync_dist: no advice from Lightning
    advice = [line for line in proc.stderr.splitlines() if "sync_dist=True" in line]
    assert advice == [], "\n".join(advice)


def test_ablation_declared_in_the_recipe_yaml() -> None:
    """The medical_cnn YAML declares the full stack, minus each regularizer, and no regularizer at all."""
    assert VARIANTS == [
        "full",
        "no_weight_decay",
        "no_dropout",
        "no_augmentation",
        "no_early_stopping",
        "deeper_network",
        "none",
    ]


def test_ablation_runs_every_variant_over_two_seeds(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "ablation.json"
    code = main(
        [
            "ablate",
            "medical_cnn",
            "--seeds",
            "2",
            "--logger",
            "csv",
            "--save_dir",
            str(tmp_path / "abl"),
            "--json",
            str(output),
            *FAST,
            "--trainer.limit_val_batches=1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    summary = out.split("## Ablation runs")[0]
    assert "Ablation of the medical_cnn regularization stack (mean ± std over seeds)" in summary
    header = next(line for line in summary.splitlines() if line.startswith("| variant |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "variant",
        "test AUC",
        "test ACC",
        "gap AUC (train−test)",
        "gap loss (test−train)",
        "epochs",
        "seeds",
    ]
    for name in VARIANTS:
        row = next(line for line in summary.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 7 and cells[-1] == "2"
        assert all(" ± " in c for c in cells[1:5])
    runs = json.loads(output.read_text())["runs"]
    assert list(runs) == VARIANTS and all(len(r) == 2 for r in runs.values())
    assert [r["seed"] for r in runs["full"]] == [0, 1]

    def trained(name: str) -> dict[str, float]:
        """What the first run of a variant actually trained, from its resolved config and callbacks."""
        run = runs[name][0]
        cfg, callbacks = run["config"], run["callbacks"]
        return {
            "weight_decay": cfg["model.weight_decay"],
            "dropout": cfg["model.dropout"],
            "conv_layers": cfg["model.depth"] * cfg["model.blocks_per_stage"],
            "augment": float(cfg["data.augment"]),
            "early_stopping": float("EarlyStopping" in callbacks),
            "scheduler": float("AugmentationScheduler" in callbacks),
        }

    full, none = trained("full"), trained("none")
    # each variant trained what it says
    assert full["weight_decay"] > 0 and full["dropout"] > 0 and full["augment"] == 1
    assert full["early_stopping"] == 1 and full["conv_layers"] == 6 and full["scheduler"] == 1
    assert "ModelCheckpoint" not in runs["full"][0]["callbacks"]
    assert trained("no_weight_decay")["weight_decay"] == 0
    assert trained("no_dropout")["dropout"] == 0
    assert trained("no_augmentation")["augment"] == trained("no_augmentation")["scheduler"] == 0
    assert trained("no_early_stopping")["early_stopping"] == 0
    assert trained("deeper_network")["conv_layers"] == 12
    assert none["weight_decay"] == none["dropout"] == none["augment"] == none["early_stopping"] == 0
    assert none["conv_layers"] == 12
    assert {"test/auc", "test/acc", "test/gap_auc", "test/gap_loss", "test/val_auc"} <= set(
        runs["full"][0]["metrics"]
    )
    media = next((tmp_path / "abl").rglob("media"))
    assert (media / "ablation_bar_chart.png").stat().st_size > 0
    with (media / "ablation_summary.csv").open() as fh:
        assert len(list(csv.reader(fh))) == 1 + len(VARIANTS)


def test_ablation_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ablate", "medical_cnn", "--variants", "full,no_batchnorm"]) == 2
    assert "no_batchnorm" in capsys.readouterr().err
    assert main(["ablate", "medical_cnn", "--seeds", "0"]) == 2
    assert "seed" in capsys.readouterr().err
