"""The ``spectra`` command.

Embedded commands (run, import, keys, models, migrate, demo) open the store named by
``--database`` directly and act as owner "local"; client commands (submit, status, cancel)
talk to a server over HTTP with an API key, through ``api.client``; ``jobs``, ``spectra``,
``compare``, ``export`` and ``plots`` do either: against a server with ``--server`` (or
SPECTRA_SERVER_URL), else against the database. ``serve`` and ``worker`` start services.

Start-up time matters (``spectra status`` is typed often): this module imports only the
standard library at the top. Each command imports what it needs, so a server command loads
httpx and never torch, numpy or SQLAlchemy (bench/bench_cli.py measures it).

The job-spec options are generated from ``JobSpec`` itself, so they mirror the HTTP spec one
to one: ``--top-k`` is ``top_k``, ``--chunk-size`` is ``chunk_size``, and so on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from api.client import Job, SpectraClient
    from services.config import Settings
    from services.job_spec import JobSpec


LOCAL_OWNER = "local"
DEFAULT_SERVER = "http://127.0.0.1:8000"
# The commands whose options are generated from JobSpec (pydantic) or OptimiseSpec (the
# geometry core, torch); the full parser (also for `spectra --help`) is built only for these.
SPEC_COMMANDS = ("run", "submit", "plan", "optimise", "optimise-report", None)
# Of those, the ones whose options need OptimiseSpec (torch); None: the top-level help.
OPTIMISE_COMMANDS = ("optimise", "optimise-report", None)


class CliError(Exception):
    """A user error: printed as one line on stderr, exit status ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# -- the job spec, mirrored from JobSpec ---------------------------------------------------


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _settings() -> Settings:
    from services.config import get_settings

    return get_settings()


def add_spec_options(parser: argparse.ArgumentParser) -> None:
    """One option per JobSpec field; ``latents`` becomes --latents N|FILE.npy, --seed,
    --latent-set (the three ways a spec names its codes)."""
    from services.job_spec import JobSpec

    group = parser.add_argument_group("job spec (the fields of the HTTP spec, one to one)")
    for name, info in JobSpec.model_fields.items():
        if name == "latents":
            group.add_argument(
                "--latents", metavar="N|FILE.npy",
                help='codes: a number to sample (latents {"count": N}) or a .npy file of codes '
                '(latents {"values": ...})',
            )  # fmt: skip
            group.add_argument("--seed", type=int, help="seed of the sampled codes (latents.seed)")
            group.add_argument("--latent-set", metavar="ID", help='a stored latent set (latents {"set": ID})')
            continue
        annotation = _unwrap_optional(info.annotation)
        kwargs: dict[str, Any] = {"default": None, "help": info.description or name, "dest": name}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(annotation))
        elif typing.get_origin(annotation) is list:
            kwargs["type"] = _int_list
            kwargs["metavar"] = "I,J,..."
        # Everything else is passed as text; JobSpec parses and checks it, with its messages.
        group.add_argument(_flag(name), **kwargs)


def spec_fields_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], np.ndarray | None]:
    """The spec as a dict (without codes read from a file) and the codes from --latents FILE."""
    import numpy as np

    from services.job_spec import JobSpec

    fields: dict[str, Any] = {
        name: getattr(args, name)
        for name in JobSpec.model_fields
        if name != "latents" and getattr(args, name, None) is not None
    }
    codes = None
    chosen = [flag for flag, value in (("--latents", args.latents), ("--latent-set", args.latent_set)) if value]
    if len(chosen) > 1:
        raise CliError("give either --latents or --latent-set, not both")
    if args.latent_set:
        fields["latents"] = {"set": args.latent_set}
    elif args.latents:
        text = str(args.latents)
        if text.isdigit():
            fields["latents"] = {"count": int(text), "seed": 0 if args.seed is None else args.seed}
        else:
            path = Path(text)
            if not path.is_file():
                raise CliError(f"--latents {text!r} is neither a number of codes nor a .npy file")
            try:
                codes = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as error:
                raise CliError(f"cannot read codes from {path}: {error}") from None
            codes = np.atleast_2d(np.asarray(codes, dtype=np.float64))
    if args.seed is not None and "latents" in fields and "count" not in fields["latents"]:
        raise CliError("--seed applies only to sampled codes (--latents N)")
    return fields, codes


def build_spec(fields: dict[str, Any], codes: np.ndarray | None) -> JobSpec:
    from pydantic import ValidationError

    from services.job_spec import JobSpec

    if codes is not None:
        fields = {**fields, "latents": {"values": codes.tolist()}}
    try:
        return JobSpec.model_validate(fields)
    except ValidationError as error:
        reasons = "; ".join(
            f"{_flag('.'.join(str(p) for p in e['loc'][:1])) if e['loc'] else 'spec'}"
            f"{'.' + '.'.join(str(p) for p in e['loc'][1:]) if len(e['loc']) > 1 else ''}: {e['msg']}"
            for e in error.errors()
        )
        raise CliError(f"invalid job spec: {reasons}") from None


# -- embedded commands ---------------------------------------------------------------------


def _open_store(url: str | None, *, migrate: bool = True) -> Any:
    from services.store import Store

    store = Store(url or _settings().database_url)
    if migrate:
        store.migrate()
    return store


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from services.pipeline import run_job_inprocess, submit_job

    fields, codes = spec_fields_from_args(args)
    spec = build_spec(fields, codes)
    store = _open_store(args.database)
    job, created = submit_job(store, spec, LOCAL_OWNER, None)
    print(f"job {job.id} {'created' if created else 'already exists'} ({job.n_latents} codes)")
    bar = tqdm(total=job.n_latents, file=sys.stderr, unit="code", desc=f"{spec.model} {spec.method}",
               disable=args.quiet)  # fmt: skip

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    job = run_job_inprocess(store, job.id, progress)
    bar.close()
    print(f"status {job.status}: {job.n_done} done, {job.n_failed} failed"
          + (f" ({job.error})" if job.error else ""))  # fmt: skip
    print(job.id)
    return 0 if job.status == "succeeded" else 1


def cmd_plan(args: argparse.Namespace) -> int:
    from services.pipeline import dry_run_job

    fields, codes = spec_fields_from_args(args)
    spec = build_spec(fields, codes)
    plan = dry_run_job(_open_store(args.database), spec, LOCAL_OWNER)
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
    return _table([("plan", "estimate"), *rows])


def cmd_export(args: argparse.Namespace) -> int:
    if _use_server(args):
        if args.layout != "stacked":
            raise CliError("--layout gan-geometry is written from the database (--database)")
        with _client(args) as client:
            data = client.export(args.job, k=args.k)
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output}: {len(data)} bytes from {client.server}")
        return 0
    from services import export

    store = _open_store(args.database)
    published = export.export_job(store, args.job, k=args.k)
    n, d, k = published.eigenvectors.shape
    if args.layout == "gan-geometry":
        Path(args.output).write_bytes(export.to_gan_geometry_zip(published))
        print(f"wrote {args.output}: {n} files Hess_BP_<i>.npz, d={d}, k={k} (eva_BP, evc_BP, feat)")
        return 0
    Path(args.output).write_bytes(export.to_npz_bytes(published))
    print(f"wrote {args.output}: {n} spectra, d={d}, k={k} (eva ascending, evc, feat, meta)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from services import export

    paths: list[Path] = []
    for name in args.file:  # files, or directories of .npz files (sorted by name)
        path = Path(name)
        paths.extend(sorted(path.glob("*.npz")) if path.is_dir() else [path])
    if not paths:
        raise CliError(f"no .npz files in {' '.join(args.file)}")
    published, sha256 = export.combine([(p.name, p.read_bytes()) for p in paths])
    store = _open_store(args.database)
    overrides = {k: v for k, v in (("model", args.model), ("distance", args.distance),
                                   ("method", args.method)) if v}  # fmt: skip
    job, created = export.import_job(
        store, LOCAL_OWNER, published, source_sha256=sha256, **overrides
    )
    print(f"{'imported' if created else 'already imported'}: {job.n_done} spectra, status {job.status}")
    print(job.id)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    _open_store(args.database)
    print("database schema is up to date")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from api.auth import SCOPES

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise CliError(f"scopes must be among {', '.join(SCOPES)}; got {args.scopes!r}")
    store = _open_store(args.database)
    record, token = store.create_api_key(args.owner, scopes)
    print(f"key {record.id} for owner {record.owner!r} with scopes {','.join(record.scopes)}")
    print("the token is shown once; send it as 'Authorization: Bearer <token>'", file=sys.stderr)
    print(token)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from services.geometry import list_models, list_schemes

    facts: dict[str, Any] = {}
    if args.database:
        facts = {g.name: g for g in _open_store(args.database).list_generators()}
    rows = [("name", "family", "latent_dim", "spaces", "weights_sha256", "description")]
    for info in list_models():
        known = facts.get(info.name)
        sha = (known.weights_sha256 or "")[:12] if known else ""
        rows.append((info.name, info.family, str(info.latent_dim), ",".join(info.spaces), sha,
                     info.description))  # fmt: skip
    print(_table(rows))
    print("\nschemes (a file named after the prefix):")
    schemes = [("name", "family", "spaces", "description")]
    for info in list_schemes():
        schemes.append((info.name, info.family, ",".join(info.spaces), info.description))
    print(_table(schemes))
    print("\nlayers (for --distance layer:NAME and ganspace --layer):")
    for info in [*list_models(), *list_schemes()]:
        if info.layers:
            print(f"  {info.name}: {', '.join(info.layers)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if _use_server(args):
        with _client(args) as client:
            document = client.compare(args.selections, k=args.k,
                                      max_positions=args.max_positions, seed=args.seed).raw
            pictures = _server_plots(client, args.selections, document) if args.plots else {}
        print(_report(document))
        _write_pictures(args.plots, pictures)
        if args.json:
            Path(args.json).write_text(json.dumps(document, indent=1))
        return 0
    from services import comparisons as comparison

    store = _open_store(args.database)
    try:
        selections = [comparison.parse_selection(text) for text in args.selections]
    except ValueError as error:
        raise CliError(str(error)) from None
    result = comparison.compare(store, selections, owner=None, k=args.k,
                                max_positions=args.max_positions, seed=args.seed)  # fmt: skip
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


def _comparison_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plots", metavar="DIR", help="also write the figures into DIR")
    parser.add_argument("--formats", default="png", metavar="png,svg,pdf",
                        help="figure formats, comma-separated (default png)")  # fmt: skip
    parser.add_argument("--normalise", choices=("none", "top", "trace"), default=None,
                        help="spectra as λ, λ/λ1 or λ/trace (default: λ/λ1 when Hessians and "
                        "directions are drawn together, else λ)")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="also write the full result as JSON")


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def cmd_campaign_submit(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from services import campaigns
    from services.pipeline import run_job_inprocess

    fields = {
        "name": args.name, "tags": _names(args.tags) or [], "models": _names(args.models),
        "spaces": _names(args.spaces), "distances": _names(args.distances),
        "methods": _names(args.methods), "directions": _names(args.directions),
        "latents": {"count": args.latents, "seed": args.seed}, "top_k": args.top_k,
        "dtype": args.dtype, "chunk_size": args.chunk_size,
    }  # fmt: skip
    try:
        spec = campaigns.CampaignSpec(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        raise CliError(f"campaign: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}") from None
    store = _open_store(args.database)
    try:
        record, created = campaigns.submit_campaign(store, spec, LOCAL_OWNER, None)
    except campaigns.CampaignSpecError as error:
        raise CliError(str(error)) from None
    print(f"campaign {record.name} {'created' if created else 'already exists'}: "
          f"{len(record.members)} members")  # fmt: skip
    if not args.no_run:
        for member in record.members:
            job = run_job_inprocess(store, member.job_id)
            print(f"  {member.member}: {job.status} ({job.n_done}/{job.n_latents})")
    print(record.id)
    return 0


def cmd_campaign_status(args: argparse.Namespace) -> int:
    from services import campaigns

    status = campaigns.campaign_status(_open_store(args.database), args.campaign, None)
    rows = [("member", "job", "status", "done", "failed", "planned")]
    rows += [(m.member, m.job_id, m.status, str(m.done), str(m.failed), str(m.planned))
             for m in status.members]  # fmt: skip
    print(f"campaign {status.campaign.name}: {status.status}")
    print(_table(rows))
    return 0


def cmd_campaign_cancel(args: argparse.Namespace) -> int:
    from services import campaigns

    status = campaigns.cancel_campaign(_open_store(args.database), args.campaign, None, None)
    print(f"campaign {status.campaign.name}: {status.status}")
    return 0


def cmd_campaign_compare(args: argparse.Namespace) -> int:
    from services import campaigns
    from services import comparisons as comparison

    store = _open_store(args.database)
    result = campaigns.compare_campaign(store, args.campaign, None, k=args.k,
                                        include_partial=args.include_partial)  # fmt: skip
    print(comparison.format_report(result))
    write_comparison_outputs(store, result, args)
    return 0


def cmd_plots(args: argparse.Namespace) -> int:
    """The comparison's pictures only (spectrum, homogeneity, a montage per selection)."""
    if _use_server(args):
        with _client(args) as client:
            result = client.compare(args.selections, k=1).raw
            pictures = _server_plots(client, args.selections, result)
    else:
        comparison = _comparison()
        store = _open_store(args.database)
        selections = [comparison.parse_selection(text) for text in args.selections]
        pictures = comparison.render_plots(store, comparison.compare(store, selections, owner=None, k=1))
    _write_pictures(args.out, pictures)
    return 0


def _comparison() -> Any:
    from services import comparisons as comparison

    return comparison


def _report(result: dict[str, Any]) -> str:
    """A server's comparison as THE tables the database path prints (one renderer, one
    result document)."""
    from services.comparisons.tables import render_tables

    return render_tables(result["document"])


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _server_plots(client: SpectraClient, selections: list[str], result: dict[str, Any]) -> dict[str, bytes]:
    from api.client import SpectraError

    pictures = {"spectrum.png": client.figure("spectrum", selections=selections)}
    if any(s.get("homogeneity") for s in result["selections"]):
        pictures["homogeneity.png"] = client.figure("homogeneity", selections=selections)
    for index, text in enumerate(selections):
        query = _selection_query(text)
        first = client.spectra(job_id=query.get("job_id"), model=query.get("model"),
                               distance=query.get("distance"), method=query.get("method"),
                               limit=1).items  # fmt: skip
        if not first:
            continue
        try:
            pictures[f"montage-{index}.png"] = client.figure("montage", spectrum_id=first[0].id)
        except SpectraError as error:  # e.g. an imported result of a model the server lacks
            print(f"no montage for {text}: {error}", file=sys.stderr)
    return pictures


def _selection_query(text: str) -> dict[str, str]:
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and all(parts):
        return {"model": parts[0], "distance": parts[1], "method": parts[2]}
    return {"job_id": text}


def _write_pictures(directory: str | None, pictures: dict[str, bytes]) -> None:
    if not directory:
        return
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in pictures.items():
        (out / name).write_bytes(data)
        print(f"wrote {out / name}")


def cmd_demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    run_demo(Path(args.out), args.database or _settings().database_url)
    return 0


# -- services ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import serving_app
    from services.config import get_settings

    if args.database:
        os.environ["SPECTRA_DATABASE_URL"] = args.database  # also for worker processes
        get_settings.cache_clear()
    settings = get_settings()
    settings.check_production_ready()  # before anything starts
    if settings.database_url.startswith("sqlite"):
        _open_store(settings.database_url)  # embedded: make the schema on first start
    options: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": args.log_level,
                               "access_log": False}  # fmt: skip
    if args.workers > 1:
        # Several processes need the app by name; each builds it from the environment.
        uvicorn.run("api.app:serving_app", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(serving_app(), **options)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # The launcher replaces this process (same pid, so signals reach it): the command line
    # is an adapter and does not import the worker package.
    which = ["--gpus", args.gpus] if args.gpus else ["--cpu"]
    os.execv(sys.executable, [sys.executable, "-m", "worker", *which])


# -- client commands (HTTP) ----------------------------------------------------------------


class _CliClient:
    """The typed client, with its errors turned into one-line CLI errors (exit status 1)."""

    def __init__(self, server: str, token: str | None) -> None:
        from api.client import SpectraClient

        try:
            self.client = SpectraClient(server, token)
        except ValueError as error:  # no token
            raise CliError(str(error)) from None

    def __enter__(self) -> SpectraClient:
        return self.client

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        from api.client import SpectraError

        self.client.close()
        if isinstance(error, SpectraError):
            raise CliError(str(error), 1) from None


def _client(args: argparse.Namespace) -> _CliClient:
    return _CliClient(args.server or os.environ.get("SPECTRA_SERVER_URL") or DEFAULT_SERVER, args.token)


def _use_server(args: argparse.Namespace) -> bool:
    """--server, or SPECTRA_SERVER_URL without --database: talk to a server."""
    if getattr(args, "database", None):
        if args.server:
            raise CliError("give either --server or --database, not both")
        return False
    return bool(args.server or os.environ.get("SPECTRA_SERVER_URL"))


def cmd_submit(args: argparse.Namespace) -> int:
    fields, codes = spec_fields_from_args(args)
    with _client(args) as client:
        if codes is None:
            spec = build_spec(fields, None)
            job = client.submit(spec.model_dump(mode="json", exclude_none=True),
                                idempotency_key=args.idempotency_key)  # fmt: skip
        else:
            build_spec(fields, codes)  # refuse a bad spec here, before uploading
            job = client.submit_codes(codes, fields, idempotency_key=args.idempotency_key)
        print(f"job {job.id} {'submitted' if job.created else 'already exists'} "
              f"({job.n_latents} codes, status {job.status})")  # fmt: skip
        status = 0
        if args.follow:
            status = _follow(client, job.id, args.interval)
    print(job.id)
    return status


def _follow(client: SpectraClient, job_id: str, interval_s: float) -> int:
    job = client.follow(job_id, interval_s=interval_s)
    print(_job_line(job))
    return 0 if job.status == "succeeded" else 1


def _job_line(job: Job) -> str:
    parts = [f"job {job.id} {job.status}"]
    progress = job.progress
    if progress is not None:
        parts += [f"{progress.done}/{progress.planned} done", f"{progress.failed} failed"]
        if progress.rate_per_s:
            parts.append(f"{progress.rate_per_s:.2f} codes/s")
        if progress.eta_s and not job.finished:
            parts.append(f"eta {progress.eta_s:.0f} s")
    if job.error:
        parts.append(f"error: {job.error}")
    return ", ".join(parts)


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.follow:
            return _follow(client, args.job, args.interval)
        job = client.job(args.job)
    print(_job_line(job))
    for failure in job.failures[:20]:
        print(f"  latent {failure.latent_index}: {failure.reason}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Exit 1 when the job had already finished (the server's 409 says so): the cancel
    did nothing, like any other refused request."""
    with _client(args) as client:
        job = client.cancel(args.job)
    print(f"job {job.id} {job.status}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """Jobs, newest first, from a server (this key's) or the database (everyone's)."""
    rows: list[tuple[str, ...]] = []
    if _use_server(args):
        with _client(args) as client:
            page = client.jobs(status=args.status, model=args.model, limit=args.limit,
                               offset=args.offset)  # fmt: skip
        items = [(j.id, j.owner, j.status, j.model or "", str(j.spec.get("method", "")),
                  j.n_done, j.n_failed, j.n_latents, j.created_at) for j in page.items]  # fmt: skip
    else:
        store = _open_store(args.database)
        jobs = store.list_jobs(owner=None, status=args.status, model=args.model, limit=args.limit,
                               offset=args.offset)  # fmt: skip
        items = [(j.id, j.owner, j.status, j.model or "", str(j.spec.get("method", "")), j.n_done,
                  j.n_failed, j.n_latents, j.created_at.isoformat(timespec="seconds"))
                 for j in jobs]  # fmt: skip
    if args.json:
        keys = ("id", "owner", "status", "model", "method", "n_done", "n_failed", "n_latents", "created_at")
        print(json.dumps([dict(zip(keys, item, strict=True)) for item in items], indent=1))
        return 0
    rows.append(("id", "owner", "status", "model", "method", "done", "failed", "codes", "created"))
    rows += [(i[0], i[1], i[2], i[3], i[4], str(i[5]), str(i[6]), str(i[7]), str(i[8])) for i in items]
    print(_table(rows) if items else "no jobs")
    return 0


SPECTRUM_COLUMNS = ("id", "job_id", "latent_index", "model", "distance", "method", "k", "d",
                    "top_eigenvalue", "trace", "dims_99", "participation_ratio")  # fmt: skip


def cmd_spectra(args: argparse.Namespace) -> int:
    """Stored spectra with their summaries, filtered by job or (model, distance, method)."""
    query = {"job_id": args.job, "model": args.model, "distance": args.distance,
             "method": args.method, "order_by": args.order_by, "limit": args.limit,
             "offset": args.offset}  # fmt: skip
    if _use_server(args):
        with _client(args) as client:
            records: list[Any] = list(client.spectra(**query).items)
    else:
        store = _open_store(args.database)
        records = store.list_spectrum_summaries(owner=None, **query)
    items = [{name: getattr(r, name) for name in SPECTRUM_COLUMNS} for r in records]
    if args.json:
        print(json.dumps(items, indent=1))
        return 0
    rows = [SPECTRUM_COLUMNS] + [tuple(_number(item[c]) for c in SPECTRUM_COLUMNS) for item in items]
    print(_table(rows) if items else "no spectra")
    return 0


# -- parser --------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)  # fmt: skip


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database", metavar="URL", default=None,
        help="store URL (default SPECTRA_DATABASE_URL, else sqlite:///spectra.db)",
    )  # fmt: skip


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=None, metavar="URL",
                        help=f"API base URL (default SPECTRA_SERVER_URL, else {DEFAULT_SERVER})")  # fmt: skip
    parser.add_argument("--token", default=os.environ.get("SPECTRA_TOKEN"),
                        help="API key (default SPECTRA_TOKEN)")  # fmt: skip


def _server_or_database(parser: argparse.ArgumentParser) -> None:
    """For commands that work on either: --server URL / SPECTRA_SERVER_URL, else --database."""
    parser.add_argument("--server", default=None, metavar="URL",
                        help="ask this server (default SPECTRA_SERVER_URL; without either, the "
                        "database is read directly)")  # fmt: skip
    parser.add_argument("--token", default=os.environ.get("SPECTRA_TOKEN"),
                        help="API key for --server (default SPECTRA_TOKEN)")  # fmt: skip
    _database_option(parser)


def build_parser(
    *, spec_options: bool = True, optimise_options: bool | None = None
) -> argparse.ArgumentParser:
    """The whole command line. ``spec_options=False`` leaves out the options generated from
    JobSpec (run, submit: pydantic, no torch); ``optimise_options=False`` (default: as
    spec_options) the optimise commands, whose OptimiseSpec loads the geometry core (torch).
    ``main`` asks for each only when one of its commands runs (or for the top-level help)."""
    if optimise_options is None:
        optimise_options = spec_options
    parser = argparse.ArgumentParser(
        prog="spectra", description="Compute, store and compare spectra of latent spaces."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    run = command("run", cmd_run, "compute a job here (embedded store, no services); "
                  "prints the job id as the last line")  # fmt: skip
    if spec_options:
        add_spec_options(run)
    _database_option(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    plan = command("plan", cmd_plan, "show a job's plan (chunks, products, time, memory and "
                   "stored bytes per code) without creating anything")  # fmt: skip
    if spec_options:
        add_spec_options(plan)
    _database_option(plan)
    plan.add_argument("--json", action="store_true", help="the whole dry run as JSON")

    export = command("export", cmd_export, "write a job's spectra as .npz (published layout)")
    export.add_argument("job")
    export.add_argument("-o", "--output", required=True, metavar="FILE.npz")
    export.add_argument("--k", type=int, default=None, help="eigenpairs per spectrum (default all)")
    export.add_argument(
        "--layout", choices=("stacked", "gan-geometry"), default="stacked",
        help="stacked: one .npz (eva, evc, feat, meta); gan-geometry: a .zip of Hess_BP_<i>.npz "
        "files as the published analysis code reads them (docs/npz-layouts.md)",
    )  # fmt: skip
    _server_or_database(export)

    imp = command("import", cmd_import, "store .npz spectra (ours or GAN-Geometry's, "
                  "docs/npz-layouts.md) as one finished job")  # fmt: skip
    imp.add_argument("file", nargs="+", metavar="FILE.npz|DIR",
                     help="one stacked file, or per-position files (Hess_BP_<i>.npz) or their directory")  # fmt: skip
    for name in ("model", "distance", "method"):
        imp.add_argument(f"--{name}", help=f"overrides meta.{name} of the file")
    _database_option(imp)

    campaign = commands.add_parser("campaign", help="submit, follow, cancel and compare campaigns "
                                   "(embedded store)")  # fmt: skip
    campaign_commands = campaign.add_subparsers(dest="campaign_command", required=True)

    def campaign_command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = campaign_commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        _database_option(sub)
        return sub

    submit_c = campaign_command("submit", cmd_campaign_submit, "submit a campaign and run its "
                                "members here; prints the campaign id last")  # fmt: skip
    submit_c.add_argument("--name", required=True)
    submit_c.add_argument("--models", required=True, help="comma-separated model names")
    submit_c.add_argument("--spaces", help="comma-separated latent spaces (z, w, w+)")
    submit_c.add_argument("--distances", help="comma-separated (default mse)")
    submit_c.add_argument("--methods", help="comma-separated Hessian methods (default jacobian)")
    submit_c.add_argument("--directions", help="comma-separated direction methods (default sefa; "
                          "'' for none)")  # fmt: skip
    submit_c.add_argument("--latents", type=int, required=True, help="codes per model")
    submit_c.add_argument("--seed", type=int, default=0)
    submit_c.add_argument("--top-k", type=int, default=None)
    submit_c.add_argument("--dtype", default=None, choices=("float32", "float64"))
    submit_c.add_argument("--chunk-size", type=int, default=None)
    submit_c.add_argument("--tags", help="comma-separated tags")
    submit_c.add_argument("--no-run", action="store_true", help="only submit (a worker runs them)")
    for name, handler, text in (("status", cmd_campaign_status, "each member's job status"),
                                ("cancel", cmd_campaign_cancel, "cancel unfinished members")):  # fmt: skip
        campaign_command(name, handler, text).add_argument("campaign")
    compare_c = campaign_command("compare", cmd_campaign_compare, "the comparison matrix over "
                                 "the campaign's members")  # fmt: skip
    compare_c.add_argument("campaign")
    compare_c.add_argument("--k", type=int, default=10, help="top-k for the subspace alignment")
    compare_c.add_argument("--include-partial", action="store_true")
    _comparison_output_options(compare_c)

    migrate = command("migrate", cmd_migrate, "create or upgrade the database schema")
    _database_option(migrate)

    serve = command("serve", cmd_serve, "run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    _database_option(serve)

    worker = command("worker", cmd_worker, "run one Celery worker per GPU, or one on the CPU")
    which = worker.add_mutually_exclusive_group(required=True)
    which.add_argument("--gpus", metavar="0,1", help="GPU indices, one worker each")
    which.add_argument("--cpu", action="store_true", help="one worker on the CPU")

    submit = command("submit", cmd_submit, "submit a job to a server; prints the job id last")
    if spec_options:
        add_spec_options(submit)
    _server_options(submit)
    submit.add_argument("--idempotency-key", default=None)
    submit.add_argument("--follow", action="store_true", help="follow it to the end")
    submit.add_argument("--interval", type=float, default=1.0, help="seconds between polls")

    status = command("status", cmd_status, "a job's status, progress and failures")
    status.add_argument("job")
    status.add_argument("--follow", action="store_true", help="progress bar until it ends")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    _server_options(status)

    cancel = command("cancel", cmd_cancel, "cancel a job")
    cancel.add_argument("job")
    _server_options(cancel)

    compare = command("compare", cmd_compare, "compare selections: anisotropy, homogeneity, "
                      "alignment of top-k subspaces")  # fmt: skip
    compare.add_argument("selections", nargs="+", metavar="JOB_ID|MODEL:DISTANCE:METHOD|MODEL::sefa")
    compare.add_argument("--k", type=int, default=10, help="top-k for the subspace alignment")
    compare.add_argument("--max-positions", type=int, default=100, metavar="N",
                         help="the most positions a homogeneity matrix uses (2-500); a larger "
                         "selection uses a seeded random sample of them (default 100)")  # fmt: skip
    compare.add_argument("--seed", type=int, default=0,
                         help="seed of the homogeneity's sample of positions (default 0)")
    _comparison_output_options(compare)
    _server_or_database(compare)

    plots = command("plots", cmd_plots, "write the pictures of selections: spectrum, "
                    "homogeneity, a montage per selection")  # fmt: skip
    plots.add_argument("selections", nargs="+", metavar="JOB_ID|MODEL:DISTANCE:METHOD")
    plots.add_argument("--out", required=True, metavar="DIR", help="directory for the PNG files")
    _server_or_database(plots)

    jobs = command("jobs", cmd_jobs, "list jobs, newest first")
    jobs.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    jobs.add_argument("--model", default=None)
    _list_options(jobs)
    _server_or_database(jobs)

    spectra = command("spectra", cmd_spectra, "list stored spectra with their summaries")
    spectra.add_argument("--job", default=None, metavar="JOB_ID")
    spectra.add_argument("--model", default=None)
    spectra.add_argument("--distance", default=None)
    spectra.add_argument("--method", default=None)
    spectra.add_argument("--order-by", default="latent_index",
                         help="latent_index, top_eigenvalue, trace, dims_99, ...; a leading - "
                         "sorts descending (write --order-by=-trace)")  # fmt: skip
    _list_options(spectra)
    _server_or_database(spectra)

    keys = command("keys", lambda _a: 2, "API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key; prints the token last")
    create.set_defaults(handler=cmd_keys_create)
    create.add_argument("--owner", required=True)
    create.add_argument("--scopes", default="read,submit", help="comma-separated: read,submit,admin")
    _database_option(create)

    models = command("models", cmd_models, "list the built-in generators")
    _database_option(models)

    demo = command("demo", cmd_demo, "the main job end to end, writing results into DIR")
    demo.add_argument("--out", required=True, metavar="DIR")
    _database_option(demo)

    if optimise_options:
        # Their options come from OptimiseSpec, which loads the geometry core (torch).
        from api.cli_optimise import add_commands as add_optimise_commands

        add_optimise_commands(command, _database_option, _open_store, LOCAL_OWNER)
    return parser


def _list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=50, help="rows (default %(default)s)")
    parser.add_argument("--offset", type=int, default=0, help="rows to skip")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


# Optional imports that httpx and httpcore make whenever the package is installed, and that a
# command-line process never uses: httpx's own command line (rich, click) and trio (httpcore's
# async locks; this process makes only synchronous requests). Together they were more than
# half of a `spectra status`. Both libraries fall back cleanly when the import fails.
_UNUSED_OPTIONAL_IMPORTS = ("httpx._main", "trio")


def _skip_unused_optional_imports() -> None:
    if "httpx" in sys.modules:  # too late to matter (e.g. called from a test process)
        return
    for name in _UNUSED_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    _skip_unused_optional_imports()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    parser = build_parser(spec_options=command in SPEC_COMMANDS,
                          optimise_options=command in OPTIMISE_COMMANDS)  # fmt: skip
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as error:
        print(f"spectra {args.command}: {error}", file=sys.stderr)
        return error.code
    except ValueError as error:
        # Spec, geometry, store and file-format errors are ValueErrors whose message says
        # what to do; a traceback would only hide it.
        print(f"spectra {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
