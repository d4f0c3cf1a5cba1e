"""What every benchmark script reports: a markdown table on stdout and, with ``--json PATH``, a JSON file.

The JSON file holds, for one run of one script::

    {
      "benchmark": "bench_nn",            # the script's name
      "created": "2026-12-01T05:30:00+00:00",
      "settings": {...},                  # the command-line options and derived sizes
      "machine": {...},                   # CPU count, torch threads, device(s), platform, load and
                                          # a speed probe at the start and the end of the run
      "versions": {...},                  # python, torch, lightning, numpy, scikit-learn, timm, ...
      "tables": [
        {"title": "...", "columns": [...],
         "rows": [{"cells": [...],          # the markdown row as printed
                   "labels": {...},         # what was measured (module, anchor, problem, ...)
                   "medians": {...},        # median times in milliseconds (or other medians)
                   "ratios": {...},         # positive ratios (ours / anchor, variant / baseline)
                   "extra": {...}}]}        # anything else (minima, gaps, objective differences)
      ]
    }

Non-finite floats are written as ``null`` so that the file is strict JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "reglight",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "numpy",
    "scikit-learn",
    "timm",
    "medmnist",
)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """Add the ``--json PATH`` option every benchmark script takes."""
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the results, settings, versions and machine info to this JSON file",
    )


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of `packages` (``None`` for one that is not installed), and Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def machine(devices: Sequence[str] = ("cpu",)) -> dict[str, Any]:
    """CPU count, torch's thread counts, the devices measured and the platform."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "devices": list(devices),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info


def speed_probe() -> dict[str, float]:
    """How fast this CPU is right now, on one thread: float32 matmul GFLOP/s and copy GB/s (best of 5).

    About 0.2 s. Recorded at the start and the end of a run, it tells whether two runs of a benchmark on
    different days (or a run and its rerun) had the same machine: on shared machines the same code can run
    several times slower when other tenants are busy, and only the ratios measured in one run compare.
    """
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(256, 256)
        src = torch.randn(4 * 2**20)  # 16 MiB
        dst = torch.empty_like(src)
        flops, matmul, copy = 50 * 2 * 256**3, math.inf, math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(50):
                torch.mm(a, a)
            matmul = min(matmul, time.perf_counter() - t0)
            t0 = time.perf_counter()
            dst.copy_(src)
            copy = min(copy, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return {
        "matmul_gflops_1_thread": flops / matmul / 1e9,
        "copy_gb_per_s_1_thread": 2 * src.numel() * src.element_size() / copy / 1e9,
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not available on this platform
        return None


def _clean(value: Any) -> Any:
    """Strict-JSON form of `value`: non-finite floats become ``None``, tuples and paths lists/strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean(value.item())
    return value


class Table:
    """One markdown table: prints its header at creation and each row as it is added."""

    def __init__(self, title: str, columns: Sequence[str], aligns: str | None = None) -> None:
        self.title = title
        self.columns = list(columns)
        self.rows: list[dict[str, Any]] = []
        aligns = aligns or "-" * len(self.columns)
        if len(aligns) != len(self.columns):
            raise ValueError(f"aligns={aligns!r} must have one character per column")
        rule = "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"
        print("| " + " | ".join(self.columns) + " |")
        print(rule, flush=True)

    def row(
        self,
        cells: Sequence[object],
        *,
        labels: dict[str, Any] | None = None,
        medians: dict[str, float] | None = None,
        ratios: dict[str, float] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Print `cells` as a markdown row and keep the numbers behind it for the JSON file."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        text = [str(c) for c in cells]
        print("| " + " | ".join(text) + " |", flush=True)
        self.rows.append(
            {
                "cells": text,
                "labels": labels or {},
                "medians": medians or {},
                "ratios": ratios or {},
                "extra": extra or {},
            }
        )


class Report:
    """The results of one benchmark run: its settings, its tables, and where to write them."""

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.settings = dict(settings)
        self.tables: list[Table] = []
        self.devices: list[str] = ["cpu"]
        self.speed_at_start = speed_probe()
        self.load_at_start = _load_average()

    def table(self, title: str, columns: Sequence[str], aligns: str | None = None) -> Table:
        """Start a table: print `title` (when not empty) and the header, and return it."""
        if title:
            print(f"\n{title}\n")
        table = Table(title, columns, aligns)
        self.tables.append(table)
        return table

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "benchmark": self.name,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
                "git_commit": _git_commit(),
                "settings": self.settings,
                "machine": {
                    **machine(self.devices),
                    "load_average": {"start": self.load_at_start, "end": _load_average()},
                    "speed_probe": {"start": self.speed_at_start, "end": speed_probe()},
                },
                "versions": versions(),
                "tables": [
                    {"title": t.title, "columns": t.columns, "rows": t.rows} for t in self.tables
                ],
            }
        )

    def write(self, path: Path | None) -> None:
        """Write the JSON file when `path` is given (the value of ``--json``)."""
        if path is None:
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        print(f"\nwrote {path}", file=sys.stderr)
