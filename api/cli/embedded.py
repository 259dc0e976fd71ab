"""Embedded commands: they open the store named by ``--database`` directly and act as owner
``local`` (run, plan, import, migrate, keys, models, demo)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from api.cli.connect import database_url, open_store
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.options import database_option
from api.cli.registry import Commands
from api.cli.spec_options import add_spec_options, build_spec, spec_fields_from_args
from api.cli.text import table


def register(commands: Commands) -> None:
    run = commands.add(
        "run",
        cmd_run,
        f"compute a job here (embedded store, no services; the job belongs to owner "
        f"{LOCAL_OWNER!r}); prints the job id as the last line",
    )
    if commands.spec_options:
        add_spec_options(run)
    database_option(run)
    run.add_argument("--quiet", action="store_true", help="no progress display (default: off)")

    plan = commands.add(
        "plan",
        cmd_plan,
        "show a job's plan (chunks, products, time, memory and stored bytes per code) without "
        "creating anything",
    )
    if commands.spec_options:
        add_spec_options(plan)
    database_option(plan)
    plan.add_argument("--json", action="store_true", help="the whole dry run as JSON")

    imp = commands.add(
        "import",
        cmd_import,
        f"store .npz spectra (ours or GAN-Geometry's, docs/npz-layouts.md) as one finished job "
        f"of owner {LOCAL_OWNER!r}",
    )
    imp.add_argument(
        "file",
        nargs="+",
        metavar="FILE.npz|DIR",
        help="one stacked file, or per-position files (Hess_BP_<i>.npz) or their directory",
    )
    for name in ("model", "distance", "method"):
        imp.add_argument(f"--{name}", help=f"overrides meta.{name} of the file")
    imp.add_argument(
        "--image-range",
        choices=("[-1,1]", "[0,1]"),
        default=None,
        help="the range of the images the file's metrics were computed on (GAN-Geometry "
        "renders [0,1]): mse eigenvalues are rescaled to the service's [-1,1] (x4), recorded",
    )
    database_option(imp)

    migrate = commands.add("migrate", cmd_migrate, "create or upgrade the database schema")
    database_option(migrate)

    keys = commands.add("keys", lambda _a: 2, "API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key; prints the token last")
    create.set_defaults(handler=cmd_keys_create)
    create.add_argument("--owner", required=True)
    create.add_argument(
        "--scopes", default="read,submit", help="comma-separated: read,submit,admin"
    )
    database_option(create)

    models = commands.add("models", cmd_models, "list the built-in generators")
    database_option(models)

    demo = commands.add("demo", cmd_demo, "the main job end to end, writing results into DIR")
    demo.add_argument("--out", required=True, metavar="DIR")
    database_option(demo)


def cmd_run(args: argparse.Namespace) -> int:
    fields, codes = spec_fields_from_args(args)
    spec = build_spec(fields, codes)  # refused here, before the pipeline (torch) loads
    from api.client.progress import ProgressDisplay
    from services.pipeline import run_job_inprocess, submit_job

    store = open_store(args.database)
    from services.config import get_settings  # the edge reads the settings

    job, created = submit_job(store, spec, LOCAL_OWNER, None, settings=get_settings())
    print(f"job {job.id} {'created' if created else 'already exists'} ({job.n_latents} codes)")
    display = ProgressDisplay(
        job.n_latents, unit="code", desc=f"{spec.model} {spec.method}", enabled=not args.quiet
    )
    job = run_job_inprocess(store, job.id, display.update)
    display.close()
    print(
        f"status {job.status}: {job.n_done} done, {job.n_failed} failed"
        + (f" ({job.error})" if job.error else "")
    )
    print(job.id)
    return 0 if job.status == "succeeded" else 1


def cmd_plan(args: argparse.Namespace) -> int:
    fields, codes = spec_fields_from_args(args)
    spec = build_spec(fields, codes)  # refused here, before the pipeline (torch) loads
    from services.config import get_settings  # the edge reads the settings
    from services.pipeline import dry_run_job

    plan = dry_run_job(open_store(args.database), spec, LOCAL_OWNER, settings=get_settings())
    if args.json:
        print(json.dumps(plan, indent=2, sort_keys=True))
        return 0
    print(format_plan(plan))
    return 0


def format_plan(plan: dict[str, Any]) -> str:
    """The dry run as a short table: per code, and in total."""
    from services.pipeline.estimate import describe_bytes as planner_bytes

    estimate = plan["plan"]
    per_code = estimate.get("per_code") or {}

    def size(value: Any) -> str:
        if value is None:
            return "-"
        return planner_bytes(value)

    def seconds(value: Any) -> str:
        return "-" if value is None else f"{value:.3g} s"

    rows = [
        ("route", str(per_code.get("route", estimate.get("route", "-")))),
        ("codes", str(plan["n_latents"])),
        ("latent dimension", str(plan["latent_dim"])),
        ("chunks", str(plan["chunks"])),
        ("products per code", str(per_code.get("products", "-"))),
        ("tangent batch", str(per_code.get("tangent_batch") or "-")),
        ("memory per tangent batch", size(per_code.get("tangent_batch_bytes"))),
        ("peak memory per code", size(per_code.get("peak_bytes"))),
        ("worker budget", size(estimate.get("worker_budget_bytes"))),
        ("time per code", seconds(per_code.get("seconds"))),
        ("time in total (one worker)", seconds(estimate.get("total_seconds"))),
        ("stored per code", size(per_code.get("stored_bytes"))),
        ("stored in total", size(estimate.get("total_stored_bytes"))),
        ("probed", "yes" if estimate.get("probed") else "no (small latent: counts only)"),
    ]
    profile = estimate.get("profile")
    if profile:
        rows.append(("cost profile", f"{profile['id']} measured {profile['measured_at']}"))
    elif estimate.get("pending"):
        rows.append(("cost profile", str(estimate["pending"])))
    return table([("plan", "estimate"), *rows])


def cmd_import(args: argparse.Namespace) -> int:
    from services import export

    paths: list[Path] = []
    for name in args.file:  # files, or directories of .npz files (sorted by name)
        path = Path(name)
        paths.extend(sorted(path.glob("*.npz")) if path.is_dir() else [path])
    if not paths:
        raise CliError(f"no .npz files in {' '.join(args.file)}")
    from services.config import get_settings  # the edge reads the settings

    published, sha256 = export.combine(
        [(p.name, p.read_bytes()) for p in paths], max_array_bytes=get_settings().max_array_bytes
    )
    store = open_store(args.database)
    overrides = {
        name: value
        for name, value in (
            ("model", args.model),
            ("distance", args.distance),
            ("method", args.method),
            ("image_range", args.image_range),
        )
        if value
    }
    job, created = export.import_job(
        store, LOCAL_OWNER, published, source_sha256=sha256, **overrides
    )
    print(
        f"{'imported' if created else 'already imported'}: {job.n_done} spectra, status {job.status}"
    )
    print(job.id)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    open_store(args.database)
    print("database schema is up to date")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from api.auth import SCOPES

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise CliError(f"scopes must be among {', '.join(SCOPES)}; got {args.scopes!r}")
    store = open_store(args.database)
    record, token = store.create_api_key(args.owner, scopes)
    print(f"key {record.id} for owner {record.owner!r} with scopes {','.join(record.scopes)}")
    print("the token is shown once; send it as 'Authorization: Bearer <token>'", file=sys.stderr)
    print(token)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from services.model_catalogue import list_models, list_schemes

    facts: dict[str, Any] = {}
    if args.database:
        facts = {g.name: g for g in open_store(args.database).list_generators()}
    rows = [("name", "family", "latent_dim", "spaces", "weights_sha256", "description")]
    for info in list_models():
        known = facts.get(info.name)
        sha = (known.weights_sha256 or "")[:12] if known else ""
        rows.append(
            (
                info.name,
                info.family,
                str(info.latent_dim),
                ",".join(info.spaces),
                sha,
                info.description,
            )
        )
    print(table(rows))
    print("\nschemes (a file named after the prefix):")
    schemes = [("name", "family", "spaces", "description")]
    for info in list_schemes():
        schemes.append((info.name, info.family, ",".join(info.spaces), info.description))
    print(table(schemes))
    print("\nlayers (for --distance layer:NAME and ganspace --layer):")
    for info in [*list_models(), *list_schemes()]:
        if info.layers:
            print(f"  {info.name}: {', '.join(info.layers)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from services.config import get_settings  # the edge reads the settings
    from services.demo import run_demo

    run_demo(Path(args.out), database_url(args.database), settings=get_settings())
    return 0
