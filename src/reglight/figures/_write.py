"""Writing the gallery: PNG, SVG, a Markdown caption and the numbers of each figure, byte-deterministic.

The PNG is written without the `Software` tag and the SVG without a date and with a fixed `svg.hashsalt`,
so two runs with the same seed give identical files (matplotlib's Agg rendering is deterministic).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import matplotlib

from reglight.errors import UsageError
from reglight.figures._base import GalleryFigure

__all__ = ["write_figures"]

PNG_DPI = 110
"""Resolution of the PNG files."""

_SVG_SALT = "reglight-gallery"


def _save(fig: GalleryFigure, out: Path, svg: bool) -> list[Path]:
    """Write `fig` as `<name>.png` (and `<name>.svg`) under `out`; returns the paths written."""
    paths = [out / f"{fig.name}.png"]
    with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT, "svg.fonttype": "path"}):
        fig.figure.savefig(paths[0], dpi=PNG_DPI, metadata={"Software": None})
        if svg:
            paths.append(out / f"{fig.name}.svg")
            fig.figure.savefig(paths[1], metadata={"Date": None, "Creator": None})
    return paths


def _caption(fig: GalleryFigure, seed: int, quick: bool, seconds: float) -> str:
    flags = f" --seed {seed}" if seed else ""
    flags += " --quick" if quick else ""
    return (
        f"# {fig.title}\n\n![{fig.title}]({fig.name}.png)\n\n{fig.caption.strip()}\n\n"
        f"Made by `reglight figures --only {fig.name}{flags}` in {seconds:.1f} s.\n"
    )


def write_figures(
    out: Path,
    only: Sequence[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    *,
    svg: bool = True,
    stream: TextIO | None = None,
) -> list[Path]:
    """Compute and write gallery figures: `<name>.png`, `.svg`, `.md` (caption) and `.json` (numbers).

    Prints one line per figure with the seconds it took (computing and writing), then the total.

    Args:
        out: Folder to write into (created if missing).
        only: Names of the figures to make (see [figure_names][reglight.figures.figure_names]);
            `None` or empty for all of them.
        quick: Smaller computations (fewer epochs, grid points and samples) with the same meaning.
        seed: Seed of every random draw; the same seed gives byte-identical PNG and SVG files.
        svg: Also write the SVG file.
        stream: Where the progress lines go (default: standard output).

    Returns:
        The paths written, in order.

    Raises:
        UsageError: When a name in `only` is not a gallery figure; the message lists the names.
    """
    from reglight.figures import load_all

    makers = load_all()
    wanted = list(dict.fromkeys(only or makers))
    unknown = [name for name in wanted if name not in makers]
    if unknown:
        raise UsageError(
            f"--only {', '.join(unknown)}: no such figure; figures: {', '.join(makers)}",
            "pick a name from the list",
        )
    stream = sys.stdout if stream is None else stream
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    start_all = time.perf_counter()
    for name in wanted:
        start = time.perf_counter()
        fig = makers[name](quick, seed)
        paths = _save(fig, out, svg)
        seconds = time.perf_counter() - start
        md = out / f"{name}.md"
        md.write_text(_caption(fig, seed, quick, seconds), encoding="utf-8")
        numbers = out / f"{name}.json"
        numbers.write_text(
            json.dumps({k: float(v) for k, v in fig.numbers.items()}, indent=1) + "\n",
            encoding="utf-8",
        )
        written += [*paths, md, numbers]
        print(f"{name:<24} {seconds:6.1f} s  {paths[0]}", file=stream, flush=True)
        fig.figure.clear()
    total = time.perf_counter() - start_all
    print(f"{len(wanted)} figure(s) in {total:.1f} s -> {out}", file=stream, flush=True)
    return written
