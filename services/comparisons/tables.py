"""THE table renderer of a comparison: from the result document (``document.py``) to aligned
text, CSV, Markdown or LaTeX (booktabs), and to pandas DataFrames where pandas is installed.
Every face (CLI embedded and ``--server``, UI, Python client, demo) prints these tables, so the
same comparison reads the same everywhere.

Torch-free and numpy-free: it reads plain JSON, so the Python client can use it.

Three tables: the Hessian members, the direction members (SeFa, GANSpace: their eigenvalues
are in other units) and the alignments. A row per member; each statistic of one number per
position shows its median, its mean and the bootstrap 95 % interval of the mean.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

TableFormat = Literal["text", "csv", "markdown", "latex"]
TABLE_FORMATS: tuple[TableFormat, ...] = ("text", "csv", "markdown", "latex")
DIGITS = 4

Cell = str | int | float | None | tuple[float, float]


@dataclass(frozen=True)
class Table:
    name: str  # "hessians", "directions", "alignments"
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


# (document key, readable name) of the statistics each kind of member shows.
_HESSIAN_STATISTICS = (
    ("top_eigenvalue", "λ₁"),
    ("top10_share", "top-10 share"),
    ("dims_99", "dims 99 %"),
    ("dims_999", "dims 99.9 %"),
    ("dims_9999", "dims 99.99 %"),
    ("participation_ratio", "PR"),
)
_DIRECTION_STATISTICS = (
    ("top_eigenvalue", "λ₁"),
    ("top10_share", "top-10 share"),
    ("dims_99", "dims 99 %"),
    ("participation_ratio", "PR"),
)


def comparison_tables(document: dict[str, Any]) -> list[Table]:
    """The tables of a result document (version 1), the empty ones left out."""
    members = document["members"]
    hessians = [m for m in members if m["kind"] == "hessian"]
    directions = [m for m in members if m["kind"] == "directions"]
    tables = []
    if hessians:
        tables.append(_member_table("hessians", hessians, _HESSIAN_STATISTICS, homogeneity=True))
    if directions:
        tables.append(
            _member_table("directions", directions, _DIRECTION_STATISTICS, homogeneity=False)
        )
    if document["alignments"]:
        tables.append(_alignment_table(document["alignments"]))
    if document.get("paired"):
        tables.append(_paired_table(document["paired"]))
    return tables


def _paired_table(paired: list[dict[str, Any]]) -> Table:
    columns = (
        "a",
        "b",
        "matched by",
        "pairs",
        "figure",
        "mean a",
        "mean b",
        "mean b - a",
        "95 % CI",
    )
    rows: list[tuple[Cell, ...]] = []
    for pair in paired:
        for name, figure in pair["figures"].items():
            ci = figure.get("ci")
            rows.append(
                (
                    pair["a"],
                    pair["b"],
                    pair["matched_by"],
                    figure["n_pairs"],
                    name,
                    figure["mean_a"],
                    figure["mean_b"],
                    figure["mean_difference"],
                    None if ci is None else (ci[0], ci[1]),
                )
            )
    caption = "Paired over the same codes, position by position (bootstrap 95 % interval)"
    return Table("paired", caption, columns, tuple(rows))


def conventions(document: dict[str, Any]) -> list[str]:
    """What the numbers depend on: the homogeneity's common k and log rule, and the paper's
    dims statistic beside ours (docs/conventions.md)."""
    lines = []
    if document.get("homogeneity_common_k") is not None:
        lines.append(
            f"homogeneity over the top {document['homogeneity_common_k']} eigenpairs of every "
            "member; log scale by the published rule (values <= 0 left out of that pair's "
            "correlation)"
        )
    published = [
        f"{m['label']}: {m['anisotropy']['published_dims_on_mean_spectrum']['dims_99']}"
        for m in document["members"]
        if m["anisotropy"].get("published_dims_on_mean_spectrum")
    ]
    if published:
        lines.append(
            "dims 99 % above: per position, the first rank reaching 99 %; the paper's statistic "
            "(ranks still below 99 % on the mean spectrum, GAN-Geometry): " + "; ".join(published)
        )
    return lines


def _statistic_cells(stats: dict[str, Any] | None) -> tuple[Cell, ...]:
    if not stats:
        return (None, None, None)
    ci = stats.get("ci95")
    return (stats.get("median"), stats.get("mean"), None if ci is None else (ci[0], ci[1]))


DEGENERATE_MARK = " [DEGENERATE]"


def marked_label(label: str, degenerate: bool) -> str:
    """A member's name as every table row and figure legend shows it: a generator whose images
    barely vary is marked wherever the member is named."""
    return label + (DEGENERATE_MARK if degenerate else "")


def _member_label(member: dict[str, Any]) -> str:
    return marked_label(str(member["label"]), bool(member.get("degenerate_generator")))


def _member_table(
    name: str,
    members: list[dict[str, Any]],
    statistics: Sequence[tuple[str, str]],
    *,
    homogeneity: bool,
) -> Table:
    columns = ["member", "model", "space"]
    columns += ["distance"] if name == "hessians" else []
    columns += ["method", "N", "d", "k"]
    for _, label in statistics:
        columns += [f"{label} median", f"{label} mean", f"{label} mean 95 % CI"]
    if homogeneity:
        for scale in ("log", "linear"):
            columns += [f"homog. {scale} median", f"homog. {scale} mean", f"homog. {scale} 95 % CI"]
    rows = []
    for m in members:
        row: list[Cell] = [_member_label(m), m["model"], m["space"]]
        row += [m["distance_label"]] if name == "hessians" else []
        row += [m["method"], m["n_spectra"], m["d"], m["k"]]
        stats = m["anisotropy"]["statistics"]
        for key, _ in statistics:
            row += _statistic_cells(stats.get(key))
        if homogeneity:
            h = m["homogeneity"] or {}
            for scale in ("log", "linear"):
                row += _statistic_cells(h.get(scale))
        rows.append(tuple(row))
    caption = (
        "Hessian spectra: per-position statistics (median, mean, bootstrap 95 % interval of the "
        "mean); homogeneity over pairs of positions"
        if name == "hessians"
        else "Closed-form directions (SeFa, GANSpace): eigenvalues in their own units, not a "
        "metric's"
    )
    return Table(name, caption, tuple(columns), tuple(rows))


def _alignment_table(alignments: list[dict[str, Any]]) -> Table:
    columns = (
        "a",
        "b",
        "kind",
        "k",
        "same-rank |cos| mean",
        "random |cos| (exact)",
        "best-match |cos| mean",
        "random best-match (sampled)",
        "smallest angle °",
        "largest angle °",
        "random smallest angle ° (sampled)",
        "Rayleigh a / random",
    )
    rows = []
    for a in alignments:
        base = a["baselines"]
        angles = base["principal_angles_deg"]["mean"]
        rows.append(
            (
                a["a"],
                a["b"],
                f"{a['kind']} ({a['transport']})" if a.get("transport") else a["kind"],
                a["k"],
                a["same_rank_abs_cosine_mean"],
                base["same_rank_abs_cosine"]["mean"],
                a["best_match_abs_cosine_mean"],
                base["best_match_abs_cosine"]["mean"],
                a["smallest_principal_angle_deg"],
                a["largest_principal_angle_deg"],
                angles[0] if angles else None,
                a.get("rayleigh_a_topk_over_random"),
            )
        )
    caption = (
        "Alignment of the members' top-k average-metric eigenvectors. Same-rank |cos| pairs "
        "rank i with rank i only; best-match |cos| pairs each direction of a with its closest "
        "of b's top k"
    )
    return Table("alignments", caption, columns, tuple(rows))


# -- rendering -------------------------------------------------------------------------------


def format_cell(value: Cell) -> str:
    """A cell as every text format (and the web UI) shows it."""
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return f"[{format_cell(value[0])}, {format_cell(value[1])}]"
    if isinstance(value, int):  # bool is an int
        return str(value)
    if isinstance(value, float):
        return f"{value:.{DIGITS}g}"
    return value


def _text(table: Table) -> str:
    cells = [list(table.columns)] + [[format_cell(c) for c in row] for row in table.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join([table.caption, *lines])


def _markdown(table: Table) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    body = [line([format_cell(c) for c in row]) for row in table.rows]
    return "\n".join(
        [f"**{table.caption}**", "", line(table.columns), line(["---"] * len(table.columns)), *body]
    )


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "λ": r"$\lambda$",
    "₁": r"$_1$",
    "°": r"$^\circ$",
    "|": r"$|$",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def _latex(table: Table) -> str:
    numeric = [
        all(isinstance(row[i], int | float | tuple) or row[i] is None for row in table.rows)
        for i in range(len(table.columns))
    ]
    spec = "".join("r" if n else "l" for n in numeric)
    head = " & ".join(_latex_escape(c) for c in table.columns) + r" \\"
    body = [" & ".join(_latex_escape(format_cell(c)) for c in row) + r" \\" for row in table.rows]
    return "\n".join(
        [
            r"\begin{table}",
            r"\centering",
            rf"\caption{{{_latex_escape(table.caption)}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            head,
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
        ]
    )


def _csv_columns(table: Table) -> list[str]:
    """CSV keeps full precision and splits an interval into its two bounds."""
    columns: list[str] = []
    for i, name in enumerate(table.columns):
        if any(isinstance(row[i], tuple) for row in table.rows) or name.endswith("95 % CI"):
            columns += [f"{name} low", f"{name} high"]
        else:
            columns.append(name)
    return columns


def _csv_values(table: Table) -> list[list[Any]]:
    rows = []
    for row in table.rows:
        values: list[Any] = []
        for i, cell in enumerate(row):
            split = any(isinstance(r[i], tuple) for r in table.rows) or table.columns[i].endswith(
                "95 % CI"
            )
            if split:
                values += list(cell) if isinstance(cell, tuple) else [None, None]
            else:
                values.append(cell)
        rows.append(values)
    return rows


def _csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", *_csv_columns(table)])
    for values in _csv_values(table):
        writer.writerow(
            [
                table.name,
                *("" if v is None else repr(v) if isinstance(v, float) else v for v in values),
            ]
        )
    return buffer.getvalue().rstrip("\n")


_RENDERERS: dict[str, Callable[[Table], str]] = {
    "text": _text,
    "csv": _csv,
    "markdown": _markdown,
    "latex": _latex,
}


def render_tables(document: dict[str, Any], fmt: str = "text", *, notes: bool = True) -> str:
    """Every table of the document in ``fmt`` (text, csv, markdown, latex); text and Markdown
    end with the document's notes."""
    if fmt not in _RENDERERS:
        raise ValueError(f"table format must be one of {', '.join(TABLE_FORMATS)}, got {fmt!r}")
    rendered = [_RENDERERS[fmt](table) for table in comparison_tables(document)]
    text = "\n\n".join(rendered)
    said = conventions(document) + list(document.get("notes") or [])
    if notes and fmt in ("text", "markdown") and said:
        prefix = "note: " if fmt == "text" else "- "
        text += "\n\n" + "\n".join(prefix + line for line in said)
    return text


def table_frames(document: dict[str, Any]) -> dict[str, Any]:
    """The tables as pandas DataFrames by name (full precision, intervals as two columns).
    Raises ImportError with what to install where pandas is missing."""
    try:
        import pandas as pd
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("tables as DataFrames need pandas: pip install pandas") from error
    return {
        table.name: pd.DataFrame(_csv_values(table), columns=_csv_columns(table))
        for table in comparison_tables(document)
    }
