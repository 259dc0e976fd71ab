"""Client commands: they talk to a server over HTTP with an API key (submit, status, cancel).

They load httpx through ``api.client`` and never torch, numpy or SQLAlchemy.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from api.cli.connect import client
from api.cli.options import server_options
from api.cli.registry import Commands
from api.cli.spec_options import add_spec_options, build_spec, spec_fields_from_args
from api.cli.text import job_line

if TYPE_CHECKING:
    from api.client import SpectraClient


def register(commands: Commands) -> None:
    submit = commands.add("submit", cmd_submit, "submit a job to a server; prints the job id last")
    if commands.spec_options:
        add_spec_options(submit)
    server_options(submit)
    submit.add_argument("--idempotency-key", default=None)
    submit.add_argument("--follow", action="store_true", help="follow it to the end")
    submit.add_argument("--interval", type=float, default=1.0, help="seconds between polls")

    status = commands.add("status", cmd_status, "a job's status, progress and failures")
    status.add_argument("job")
    status.add_argument("--follow", action="store_true", help="progress bar until it ends")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    server_options(status)

    cancel = commands.add("cancel", cmd_cancel, "cancel a job")
    cancel.add_argument("job")
    server_options(cancel)


def cmd_submit(args: argparse.Namespace) -> int:
    fields, codes = spec_fields_from_args(args)
    spec = build_spec(fields, codes)  # refuse a bad spec here, before connecting or uploading
    with client(args) as server:
        if codes is None:
            job = server.submit(
                spec.model_dump(mode="json", exclude_none=True),
                idempotency_key=args.idempotency_key,
            )
        else:
            job = server.submit_codes(codes, fields, idempotency_key=args.idempotency_key)
        print(
            f"job {job.id} {'submitted' if job.created else 'already exists'} "
            f"({job.n_latents} codes, status {job.status})"
        )
        status = 0
        if args.follow:
            status = follow(server, job.id, args.interval)
    print(job.id)
    return status


def follow(server: SpectraClient, job_id: str, interval_s: float) -> int:
    job = server.follow(job_id, interval_s=interval_s)
    print(job_line(job))
    return 0 if job.status == "succeeded" else 1


def cmd_status(args: argparse.Namespace) -> int:
    with client(args, job_id=args.job) as server:
        if args.follow:
            return follow(server, args.job, args.interval)
        job = server.job(args.job)
    print(job_line(job))
    for failure in job.failures[:20]:
        print(f"  latent {failure.latent_index}: {failure.reason}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Exit 1 when the job had already finished (the server's 409 says so): the cancel
    did nothing, like any other refused request."""
    with client(args, job_id=args.job) as server:
        job = server.cancel(args.job)
    print(f"job {job.id} {job.status}")
    return 0
