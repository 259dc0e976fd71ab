"""Commands that work on either side: against a server with ``--server`` (or
SPECTRA_SERVER_URL), else against the database (jobs, spectra, export, plots)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from api.cli.connect import client, open_store, use_server
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.ids import resolve
from api.cli.options import list_options, server_or_database
from api.cli.pictures import write_pictures
from api.cli.registry import Commands
from api.cli.text import number, table

SPECTRUM_COLUMNS = (
    "id",
    "job_id",
    "latent_index",
    "model",
    "distance",
    "method",
    "k",
    "d",
    "top_eigenvalue",
    "trace",
    "dims_99",
    "participation_ratio",
)
JOB_KEYS = (
    "id",
    "owner",
    "status",
    "model",
    "method",
    "n_done",
    "n_failed",
    "n_latents",
    "created_at",
)


def register(commands: Commands) -> None:
    export = commands.add("export", cmd_export, "write a job's spectra as .npz (published layout)")
    export.add_argument("job")
    export.add_argument("-o", "--output", required=True, metavar="FILE.npz")
    export.add_argument("--k", type=int, default=None, help="eigenpairs per spectrum (default all)")
    export.add_argument(
        "--layout",
        choices=("stacked", "gan-geometry"),
        default="stacked",
        help="stacked: one .npz (eva, evc, feat, meta); gan-geometry: a .zip of Hess_BP_<i>.npz "
        "files as the published analysis code reads them (docs/npz-layouts.md)",
    )
    server_or_database(export)

    plots = commands.add(
        "plots",
        cmd_plots,
        "write the pictures of selections: spectrum, homogeneity, a montage per selection",
    )
    plots.add_argument("selections", nargs="+", metavar="JOB_ID|MODEL:DISTANCE:METHOD")
    plots.add_argument("--out", required=True, metavar="DIR", help="directory for the PNG files")
    server_or_database(plots)

    jobs = commands.add("jobs", cmd_jobs, "list jobs, newest first")
    jobs.add_argument(
        "--status", choices=("queued", "running", "succeeded", "failed", "cancelled", "refused")
    )
    jobs.add_argument("--model", default=None)
    list_options(jobs)
    server_or_database(jobs)

    spectra = commands.add("spectra", cmd_spectra, "list stored spectra with their summaries")
    spectra.add_argument("--job", default=None, metavar="JOB_ID")
    spectra.add_argument("--model", default=None)
    spectra.add_argument("--distance", default=None)
    spectra.add_argument("--method", default=None)
    spectra.add_argument(
        "--order-by",
        default="latent_index",
        help="latent_index, top_eigenvalue, trace, dims_99, ...; a leading - "
        "sorts descending (write --order-by=-trace)",
    )
    list_options(spectra)
    server_or_database(spectra)


def cmd_export(args: argparse.Namespace) -> int:
    if use_server(args):
        if args.layout != "stacked":
            raise CliError("--layout gan-geometry is written from the database (--database)")
        with client(args, job_id=args.job) as server:
            data = server.export(args.job, k=args.k)
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output}: {len(data)} bytes from {server.server}")
        return 0
    from services import export

    store = open_store(args.database)
    published = export.export_job(store, resolve(store, "job", args.job), k=args.k)
    n, d, k = published.eigenvectors.shape
    if args.layout == "gan-geometry":
        Path(args.output).write_bytes(export.to_gan_geometry_zip(published))
        print(
            f"wrote {args.output}: {n} files Hess_BP_<i>.npz, d={d}, k={k} (eva_BP, evc_BP, feat)"
        )
        return 0
    Path(args.output).write_bytes(export.to_npz_bytes(published))
    print(f"wrote {args.output}: {n} spectra, d={d}, k={k} (eva ascending, evc, feat, meta)")
    return 0


def cmd_plots(args: argparse.Namespace) -> int:
    """The comparison's pictures only (spectra, homogeneity, a heatmap and a montage per
    selection): one stored comparison with montages, on the server's workers or in this
    process, so both write the same files under the same names as ``compare --plots``."""
    options: dict[str, Any] = {"k": 1, "montages": True}
    if use_server(args):
        with client(args) as server:
            stored = server.submit_comparison(args.selections, **options)
            stored = server.follow_comparison(stored.id, interval_s=0.5)
            if stored.status != "succeeded":
                raise CliError(f"comparison {stored.id} {stored.status}: {stored.error}", 1)
            pictures = {name: server.comparison_figure(stored.id, name) for name in stored.figures}
    else:
        from services import comparisons as comparison
        from services.comparisons.requests import ComparisonRequest
        from services.comparisons.stored import compare_in_process
        from services.config import get_settings

        store = open_store(args.database)
        try:
            selections = [comparison.parse_selection(text) for text in args.selections]
            request = ComparisonRequest(selections=selections, **options)
        except ValueError as error:
            raise CliError(str(error)) from None
        record = compare_in_process(store, request, owner=LOCAL_OWNER, settings=get_settings())
        if record.status != "succeeded":
            raise CliError(f"comparison {record.id} {record.status}: {record.error}", 1)
        pictures = {name: store.comparison_figure(record.id, name).data for name in record.figures}
    write_pictures(args.out, pictures)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """Jobs, newest first, from a server (this key's) or the database (everyone's)."""
    items: list[tuple[Any, ...]]
    if use_server(args):
        with client(args) as server:
            page = server.jobs(
                status=args.status, model=args.model, limit=args.limit, offset=args.offset
            )
        items = [_job_row(j) for j in page.items]
    else:
        store = open_store(args.database)
        jobs = store.list_jobs(
            owner=None, status=args.status, model=args.model, limit=args.limit, offset=args.offset
        )
        items = [_job_row(j) for j in jobs]
    if args.json:
        print(json.dumps([dict(zip(JOB_KEYS, item, strict=True)) for item in items], indent=1))
        return 0
    rows: list[tuple[str, ...]] = [
        ("id", "owner", "status", "model", "method", "done", "failed", "codes", "created")
    ]
    rows += [tuple(str(cell) for cell in item) for item in items]
    print(table(rows) if items else "no jobs")
    return 0


def cmd_spectra(args: argparse.Namespace) -> int:
    """Stored spectra with their summaries, filtered by job or (model, distance, method)."""
    query = {
        "job_id": args.job,
        "model": args.model,
        "distance": args.distance,
        "method": args.method,
        "order_by": args.order_by,
        "limit": args.limit,
        "offset": args.offset,
    }
    if use_server(args):
        with client(args) as server:
            records: list[Any] = list(server.spectra(**query).items)
    else:
        store = open_store(args.database)
        if query["job_id"]:
            query["job_id"] = resolve(store, "job", query["job_id"])
        records = store.list_spectrum_summaries(owner=None, **query)
    items = [{name: getattr(r, name) for name in SPECTRUM_COLUMNS} for r in records]
    if args.json:
        print(json.dumps(items, indent=1))
        return 0
    rows = [SPECTRUM_COLUMNS] + [tuple(number(item[c]) for c in SPECTRUM_COLUMNS) for item in items]
    print(table(rows) if items else "no spectra")
    return 0


def _job_row(job: Any) -> tuple[Any, ...]:
    """One row of the jobs table, from the server's view of a job or the store's record (the
    same fields under the same names)."""
    return (
        job.id,
        job.owner,
        job.status,
        job.model or "",
        str(job.spec.get("method", "")),
        job.n_done,
        job.n_failed,
        job.n_latents,
        job.created_at.isoformat(timespec="seconds"),
    )
