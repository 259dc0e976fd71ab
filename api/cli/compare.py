"""``spectra compare``: anisotropy, homogeneity and alignment of selections, from the database
or a server, printed as tables and optionally written as figures and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from api.cli.connect import client, open_store, use_server
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.options import server_or_database
from api.cli.pictures import write_pictures
from api.cli.registry import Commands
from services.figure_formats import FIGURE_FORMATS


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
    parser.add_argument(
        "--table-format",
        choices=("text", "csv", "markdown", "latex"),
        default="text",
        help="how the tables print: aligned text, CSV, Markdown or LaTeX booktabs (default text)",
    )
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
    parser.add_argument("--json", metavar="FILE", help="also write the result document as JSON")


def figure_formats(args: argparse.Namespace) -> list[str]:
    formats = list(dict.fromkeys(f.strip() for f in args.formats.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown or not formats:
        raise CliError(f"--formats: choose from {', '.join(FIGURE_FORMATS)} (got {args.formats!r})")
    return formats


def comparison_options(args: argparse.Namespace) -> dict[str, Any]:
    """The stored comparison's request options: the same on both paths."""
    return {
        "k": args.k,
        "max_positions": args.max_positions,
        "seed": args.seed,
        "formats": figure_formats(args),
        "normalise": args.normalise,
        "montages": bool(args.plots),
        "transport": args.transport,
    }


def cmd_compare(args: argparse.Namespace) -> int:
    """One stored comparison, computed by the server's workers (``--server``) or in this
    process (the same use case, the same record): the same tables, flags and files."""
    if use_server(args):
        with client(args) as server:
            stored = server.submit_comparison(args.selections, **comparison_options(args))
            show_server_comparison(server, stored.id, args)
        return 0
    from services import comparisons as comparison
    from services.comparisons.requests import ComparisonRequest
    from services.comparisons.stored import compare_in_process
    from services.config import get_settings

    store = open_store(args.database)
    try:
        selections = [comparison.parse_selection(text) for text in args.selections]
        request = ComparisonRequest(selections=selections, **comparison_options(args))
    except ValueError as error:
        raise CliError(str(error)) from None
    record = compare_in_process(store, request, owner=LOCAL_OWNER, settings=get_settings())
    show_local_comparison(store, record, args)
    return 0


def show_server_comparison(server: Any, comparison_id: str, args: argparse.Namespace) -> None:
    """Follow a server's stored comparison to its end, then write it as the embedded path does."""
    stored = server.follow_comparison(comparison_id, interval_s=0.5)
    if stored.status != "succeeded" or stored.document is None:
        raise CliError(f"comparison {stored.id} {stored.status}: {stored.error}", 1)
    pictures = (
        {name: server.comparison_figure(stored.id, name) for name in stored.figures}
        if args.plots
        else {}
    )
    write_comparison(stored.document, pictures, args)


def show_local_comparison(store: Any, record: Any, args: argparse.Namespace) -> None:
    """A stored comparison computed in process: THE tables and the requested files."""
    if record.status != "succeeded" or record.document is None:
        raise CliError(f"comparison {record.id} {record.status}: {record.error}", 1)
    pictures = (
        {name: store.comparison_figure(record.id, name).data for name in record.figures}
        if args.plots
        else {}
    )
    write_comparison(record.document, pictures, args)


def write_comparison(
    document: dict[str, Any], pictures: dict[str, bytes], args: argparse.Namespace
) -> None:
    """THE tables on stdout; --plots DIR (every figure in every --format) and --json FILE (the
    result document)."""
    from services.comparisons.tables import render_tables

    print(render_tables(document, args.table_format))
    write_pictures(args.plots, pictures)
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=1))
        print(f"wrote {args.json}")
