"""``spectra compare``: anisotropy, homogeneity and alignment of selections, from the database
or a server, printed as tables and optionally written as figures and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from api.cli.connect import client, open_store, use_server
from api.cli.errors import CliError
from api.cli.options import server_or_database
from api.cli.pictures import server_plots, write_pictures
from api.cli.registry import Commands
from api.cli.text import number, table


def register(commands: Commands) -> None:
    compare = commands.add(
        "compare",
        cmd_compare,
        "compare selections: anisotropy, homogeneity, alignment of top-k subspaces",
    )
    compare.add_argument(
        "selections", nargs="+", metavar="JOB_ID|MODEL:DISTANCE:METHOD|MODEL::sefa"
    )
    compare.add_argument("--k", type=int, default=10, help="top-k for the subspace alignment")
    compare.add_argument(
        "--max-positions",
        type=int,
        default=100,
        metavar="N",
        help="the most positions a homogeneity matrix uses (2-500); a larger "
        "selection uses a seeded random sample of them (default 100)",
    )
    compare.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the homogeneity's sample of positions (default 0)",
    )
    compare.add_argument(
        "--transport",
        choices=("w+->w", "w->w+", "w->z"),
        default=None,
        help="align members of different spaces of one model through this exact move "
        "(docs/conventions.md); without it they are not aligned",
    )
    comparison_output_options(compare)
    server_or_database(compare)


def comparison_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plots", metavar="DIR", help="also write the figures into DIR")
    parser.add_argument(
        "--formats",
        default="png",
        metavar="png,svg,pdf",
        help="figure formats, comma-separated (default png)",
    )
    parser.add_argument(
        "--normalise",
        choices=("none", "top", "trace"),
        default=None,
        help="spectra as λ, λ/λ1 or λ/trace (default: λ/λ1 when Hessians and "
        "directions are drawn together, else λ)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the full result as JSON")


def cmd_compare(args: argparse.Namespace) -> int:
    if use_server(args):
        with client(args) as server:
            document = server.compare(
                args.selections,
                k=args.k,
                max_positions=args.max_positions,
                seed=args.seed,
                transport=args.transport,
            ).raw
            pictures = server_plots(server, args.selections, document) if args.plots else {}
        print(server_report(document))
        write_pictures(args.plots, pictures)
        if args.json:
            Path(args.json).write_text(json.dumps(document, indent=1))
        return 0
    from services import comparisons as comparison

    store = open_store(args.database)
    try:
        selections = [comparison.parse_selection(text) for text in args.selections]
    except ValueError as error:
        raise CliError(str(error)) from None
    result = comparison.compare(
        store,
        selections,
        owner=None,
        k=args.k,
        max_positions=args.max_positions,
        seed=args.seed,
        transport=args.transport,
    )
    print(comparison.format_report(result))
    write_comparison_outputs(store, result, args)
    return 0


def write_comparison_outputs(store: Any, result: Any, args: argparse.Namespace) -> None:
    """--plots DIR (in every --format) and --json FILE (the full result, matrices too)."""
    from services import comparisons as comparison

    if args.plots:
        out = Path(args.plots)
        out.mkdir(parents=True, exist_ok=True)
        formats = tuple(dict.fromkeys(f.strip() for f in args.formats.split(",") if f.strip()))
        pictures = comparison.render_plots(
            store, result, formats=formats, normalisation=args.normalise
        )
        for name, data in pictures.items():
            (out / name).write_bytes(data)
            print(f"wrote {out / name}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(matrices=True), indent=1))
        print(f"wrote {args.json}")


def server_report(result: dict[str, Any]) -> str:
    """A server's comparison document as the same text tables the database path prints."""
    rows: list[tuple[str, ...]] = [
        (
            "selection",
            "N",
            "d",
            "k",
            "dims_99",
            "dims_99.9",
            "dims_99.99",
            "PR",
            "homog. log",
            "homog. lin",
        )
    ]
    for s in result["selections"]:
        a, h = s["anisotropy"], s.get("homogeneity") or {}
        rows.append(
            (
                s["label"],
                str(s["n_spectra"]),
                str(s["d"]),
                str(s["k"]),
                number(a.get("dims_99_mean")),
                number(a.get("dims_999_mean")),
                number(a.get("dims_9999_mean")),
                number(a.get("participation_ratio_mean")),
                number(h.get("log_offdiag_mean")),
                number(h.get("linear_offdiag_mean")),
            )
        )
    lines = ["anisotropy (means over positions) and homogeneity (off-diagonal means)", table(rows)]
    if result.get("alignments"):
        rows = [("a", "b", "kind", "k", "matched |cos| (top 5)", "principal angles deg (top 5)")]
        for a in result["alignments"]:
            rows.append(
                (
                    a["a"],
                    a["b"],
                    a["kind"],
                    str(a["k"]),
                    " ".join(number(x, 2) for x in a["matched_abs_cosine"][:5]),
                    " ".join(number(x, 3) for x in a["principal_angles_deg"][:5]),
                )
            )
        lines += ["", "alignment of top-k average-metric eigenvectors", table(rows)]
    lines += [f"note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)
