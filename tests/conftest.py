"""Shared test setup: no network, offline W&B into a tmp dir, small thread pools, data paths."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import pytest

# Tests never touch the network: W&B runs offline into a throw-away folder.
_WANDB_TMP = tempfile.mkdtemp(prefix="reglight-wandb-")
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_DIR", _WANDB_TMP)
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_CONSOLE", "off")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
os.environ.setdefault("WANDB_DISABLE_CODE", "true")
os.environ.setdefault("PL_DISABLE_FORK", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The folder with the real MedMNIST ``.npz`` files, or ``None`` when it is absent.

    ``REGLIGHT_DATA`` wins; otherwise ``../shared/data`` beside the repository.
    """
    env = os.environ.get("REGLIGHT_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture
def data_dir() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real MedMNIST data not found (set REGLIGHT_DATA or provide ../shared/data)")
    return d


@functools.cache
def _cpu_compile_works() -> bool:
    """Whether ``torch.compile`` can build a CPU kernel here (it needs a C++ toolchain)."""
    import torch

    def bump(x: torch.Tensor) -> None:
        x.add_(1.0)

    try:
        torch.compile(bump)(torch.zeros(4))
    except Exception:
        return False
    return True


@pytest.fixture
def needs_torch_compile() -> None:
    """Skip the test where ``torch.compile`` cannot build CPU kernels (the fallbacks are tested apart)."""
    if not _cpu_compile_works():
        pytest.skip("torch.compile cannot build CPU kernels here (no C++ toolchain)")
