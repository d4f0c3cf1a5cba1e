"""`reglight run RECIPE --help` shows the recipe: its model and data options, examples, pointers."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
import yaml

from reglight.cli import available_recipes, main

RECIPES = sorted(available_recipes())


def _class(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", RECIPES)
def test_help_lists_every_model_and_data_option(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", name, "--help"]) == 0
    out = capsys.readouterr().out
    recipe = available_recipes()[name]
    assert recipe.description in out
    config = yaml.safe_load(recipe.path.read_text())
    for section in ("model", "data"):
        cls = _class(config[section]["class_path"])
        params = [
            p
            for p in inspect.signature(cls).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert params
        for param in params:
            line = next(
                (ln for ln in out.splitlines() if ln.split()[:1] == [f"--{section}.{param.name}"]),
                None,
            )
            assert line is not None, f"--{section}.{param.name} missing from `{name} --help`"
            # its value: the recipe's, else the class default
            value = config[section].get("init_args", {}).get(param.name, param.default)
            assert f"= {value!r}" in line
    assert "--trainer.devices 2 --trainer.strategy ddp" in out  # DDP example
    assert (
        f"reglight run {name} --help-trainer" in out
    )  # Lightning's trainer options, behind a pointer
    assert "--trainer.max_epochs" not in out  # ... not the 500 lines themselves


def test_help_has_one_line_docs_and_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "tiny", "--help"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("--model.dropout"))
    assert "float" in line and "= 0.1" in line and "rop" in line.split("= 0.1", 1)[1]


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("lasso", "--data.dataset my.csv --data.target y"),
        ("lasso_breast_cancer", "--data.dataset my.csv --data.target y"),
        ("medical_cnn", "--data.flag pneumoniamnist"),
        ("medical_cnn", "reglight ablate medical_cnn"),
    ],
)
def test_help_examples_of_the_common_tasks(
    name: str, example: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", name, "--help"]) == 0
    assert example in capsys.readouterr().out


def test_help_trainer_shows_lightnings_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "tiny", "--help-trainer"]) == 0
    out = capsys.readouterr().out
    assert "--trainer.max_epochs" in out and "--trainer.strategy" in out


def test_list_mentions_ablate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert "reglight ablate NAME" in capsys.readouterr().out


def test_ablate_flags_follow_the_run_convention(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ablate", "medical_cnn", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--seeds", "--seed_list", "--variants", "--save_dir", "--json", "--threads"):
        assert flag in out
    assert "--seed-list" not in out and "--save-dir" not in out
    assert "reglight run medical_cnn --help" in out
