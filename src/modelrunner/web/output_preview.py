"""A run's outputs as the pages show them: a CSV (or TSV) as a table and as chartable columns,
JSON pretty-printed. Only the first ``PREVIEW_BYTES`` of a file are read; the page says when a
file was longer, and the download always has all of it."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.store.tables import OutputRow

PREVIEW_BYTES = 4 * 1024 * 1024
CHART_ROWS = 10_000  # a line chart of more points than this says nothing more, and slows the page
# A series whose largest value is this many times below the chart's largest is drawn on the right
# axis unless the reader chose otherwise: on a shared axis it would be a flat line (20 °C beside
# 5,000 kW).
RIGHT_AXIS_RATIO = 20
_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_JSON = (".json", ".geojson")


def kind_of(path: str) -> str | None:
    """``csv`` or ``json`` for an output the pages can show, else None (a download only)."""
    lowered = path.lower()
    if lowered.endswith(tuple(_DELIMITERS)):
        return "csv"
    if lowered.endswith(_JSON):
        return "json"
    return None


@dataclass(frozen=True)
class Table:
    """The rows of a CSV output as read (the header row apart), and which columns hold numbers."""

    columns: list[str]
    rows: list[list[str]]
    numeric: list[str]  # every non-empty value parses as a finite number (and there is one)
    truncated: bool  # the file goes on after what was read

    def chart(self, x: str | None, series: list[str]) -> ChartChoice:
        """The x column and series asked for, where they exist; otherwise the first column
        against every other numeric column."""
        chosen_x = x if x in self.columns else (self.columns[0] if self.columns else "")
        chosen = [s for s in series if s in self.numeric and s != chosen_x]
        if not chosen:
            chosen = [c for c in self.numeric if c != chosen_x]
        return ChartChoice(chosen_x, chosen)

    def columns_data(self) -> dict[str, list[float | str | None]]:
        """Each column's values for the chart (numbers as numbers), at most ``CHART_ROWS`` rows."""
        rows = self.rows[:CHART_ROWS]
        data: dict[str, list[float | str | None]] = {}
        for index, column in enumerate(self.columns):
            values = [row[index] if index < len(row) else "" for row in rows]
            data[column] = [_number(v) for v in values] if column in self.numeric else list(values)
        return data


@dataclass(frozen=True)
class ChartChoice:
    x: str
    series: list[str]
    right: list[str] = field(default_factory=list)  # series drawn against a second y axis, on the right


def with_right_axis(choice: ChartChoice, tables: list[Table], right: list[str] | None) -> ChartChoice:
    """``choice`` with the series on the right axis: those of ``right`` (the reader's choice) that
    are drawn, or with no choice made, those far smaller than the largest (``RIGHT_AXIS_RATIO``)."""
    if right is not None:
        return replace(choice, right=[s for s in choice.series if s in right])
    sizes = {s: max((_largest(table, s) for table in tables), default=0.0) for s in choice.series}
    largest = max(sizes.values(), default=0.0)
    small = [s for s in choice.series if sizes[s] * RIGHT_AXIS_RATIO < largest]
    return replace(choice, right=small)


def _largest(table: Table, column: str) -> float:
    """The largest absolute value of ``column`` within what a chart draws (0 without one)."""
    if column not in table.numeric:
        return 0.0
    index = table.columns.index(column)
    numbers = (_number(row[index]) for row in table.rows[:CHART_ROWS] if index < len(row))
    return max((abs(n) for n in numbers if n is not None), default=0.0)


@dataclass(frozen=True)
class JsonText:
    text: str  # pretty-printed, or the text as read when it does not parse
    parsed: bool
    truncated: bool


def read_table(artifacts: ArtifactStore, output: OutputRow) -> Table:
    text, truncated = _read_text(artifacts, output)
    if truncated:  # the last line read may be cut short
        text = text[: text.rfind("\n") + 1]
    delimiter = next(d for suffix, d in _DELIMITERS.items() if output.path.lower().endswith(suffix))
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = next(reader, [])
    rows = [row for row in reader if row]
    columns = [name.strip() or f"column {i + 1}" for i, name in enumerate(header)]
    numeric = [c for i, c in enumerate(columns) if _all_numbers(row[i] if i < len(row) else "" for row in rows)]
    return Table(columns, rows, numeric, truncated)


def read_json(artifacts: ArtifactStore, output: OutputRow) -> JsonText:
    text, truncated = _read_text(artifacts, output)
    if truncated:
        return JsonText(text, parsed=False, truncated=True)
    try:
        return JsonText(json.dumps(json.loads(text), indent=2, ensure_ascii=False), parsed=True, truncated=False)
    except ValueError:
        return JsonText(text, parsed=False, truncated=False)


def chart_payload(sources: list[tuple[str, Table]]) -> dict[str, Any]:
    """What the page's chart script draws: each source's columns, labelled (a run's number)."""
    return {
        "sources": [
            {"label": label, "numeric": table.numeric, "columns": table.columns_data()} for label, table in sources
        ]
    }


def _read_text(artifacts: ArtifactStore, output: OutputRow) -> tuple[str, bool]:
    with artifacts.open(output.uri) as handle:
        data = handle.read(PREVIEW_BYTES + 1)
    truncated = len(data) > PREVIEW_BYTES
    return data[:PREVIEW_BYTES].decode("utf-8-sig", "replace"), truncated


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _all_numbers(values: Any) -> bool:
    seen = False
    for value in values:
        if not value.strip():
            continue
        if _number(value) is None:
            return False
        seen = True
    return seen
