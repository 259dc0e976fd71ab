"""The one way a benchmark records what it measured: its JSON and a dated Markdown table in
bench/results/, each saying when, on what machine and at what load it ran.

    from results_io import Table, write_results
    write_results("store", payload, Table(title=..., columns=[...], rows=[[...], ...]))

``latest.md`` (which the documentation's benchmark page includes) is rebuilt from every
table after each write, so it is always the latest figures of every benchmark.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST = "latest.md"
# Not tables of one benchmark: the record of earlier rounds, and the index built from the others.
NOT_TABLES = {LATEST, "history.md"}


@dataclass
class Table:
    """A Markdown table: a title, column headers, rows of cells (numbers are formatted to
    three significant figures, None is shown as "–"), and notes printed under it."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    notes: Sequence[str] = field(default_factory=list)


def cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, core count, memory, torch and its device."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:  # never imported here only to describe the machine
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        return round(int(first.split()[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        return None


def describe(info: dict[str, Any]) -> str:
    parts = [f"{info['cpus']} × {info['cpu']}"]
    if info.get("memory_gib"):
        parts.append(f"{info['memory_gib']} GiB")
    if info.get("gpu"):
        parts.append(info["gpu"])
    if info.get("torch"):
        parts.append(f"torch {info['torch']}")
    return ", ".join(parts)


def markdown(
    table: Table, measured_at: datetime, info: dict[str, Any], load: Sequence[float]
) -> str:
    lines = [
        f"## {table.title}",
        "",
        f"Measured {measured_at:%Y-%m-%d %H:%M} UTC on {describe(info)}; load average "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min) when it finished.",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    for row in table.rows:
        if len(row) != len(table.columns):
            raise ValueError(f"a row of {len(row)} cells under {len(table.columns)} columns")
        lines.append("| " + " | ".join(cell(value) for value in row) + " |")
    if table.notes:
        lines += ["", *table.notes]
    return "\n".join(lines) + "\n"


def write_results(
    name: str,
    payload: dict[str, Any],
    tables: Table | Sequence[Table],
    results_dir: Path = RESULTS_DIR,
) -> tuple[Path, Path]:
    """Writes ``NAME.json`` (the payload with when, where and at what load) and ``NAME.md``
    (the tables under the same header), rebuilds ``latest.md``, and returns both paths."""
    tables = [tables] if isinstance(tables, Table) else list(tables)
    measured_at = datetime.now(UTC)
    info = machine()
    load = os.getloadavg()
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{name}.json"
    record = {  # when, where and at what load win over the payload's own fields of those names
        **payload,
        "benchmark": name,
        "measured_at": measured_at.isoformat(timespec="seconds"),
        "machine": info,
        "load_average": list(load),
    }
    json_path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    md_path = results_dir / f"{name}.md"
    text = "\n".join(markdown(t, measured_at, info, load) for t in tables)
    md_path.write_text(text)
    write_latest(results_dir)
    print(f"{text}\nwrote {json_path} and {md_path}")
    return json_path, md_path


def write_latest(results_dir: Path = RESULTS_DIR) -> Path:
    """``latest.md``: every benchmark's table, by name, one heading level down."""
    pages = sorted(p for p in results_dir.glob("*.md") if p.name not in NOT_TABLES)
    body = [
        "\n".join(
            f"#{line}" if line.startswith("#") else line for line in p.read_text().splitlines()
        )
        for p in pages
    ]
    text = "## Latest tables\n\n" + (
        "\n\n".join(body) if body else "No benchmark has written its table yet: run `make bench`."
    )
    path = results_dir / LATEST
    path.write_text(text.rstrip("\n") + "\n")
    return path
