"""Figures and how they are shown: an aligned table on stdout, a Markdown file in results/."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its baseline from the same run.

    ``met`` is None for figures shown for information only (no target).
    """

    name: str
    measured: str
    baseline: str
    compared: str
    target: str
    met: bool | None
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return {True: "yes", False: "NO", None: "-"}[self.met]


COLUMNS = ("figure", "measured", "baseline (same run)", "compared", "target", "met")


def _cells(figure: Figure) -> tuple[str, ...]:
    return (figure.name, figure.measured, figure.baseline, figure.compared, figure.target, figure.verdict)


def text_table(figures: Sequence[Figure]) -> str:
    rows = [COLUMNS, *(_cells(f) for f in figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown(title: str, context: Sequence[tuple[str, str]], figures: Sequence[Figure]) -> str:
    out = [f"# {title}", ""]
    out += [f"- **{key}**: {value}" for key, value in context]
    out += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in _cells(f)) + " |" for f in figures]
    noted = [f for f in figures if f.notes]
    if noted:
        out += ["", "## Notes", ""]
        for figure in noted:
            out += [f"**{figure.name}**", ""] + [f"- {note}" for note in figure.notes] + [""]
    return "\n".join(out).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- numbers ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def mb(size: float) -> str:
    """Megabytes of 10**6 bytes, as the targets are written."""
    return f"{size / 1e6:.1f} MB"
