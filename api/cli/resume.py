"""``spectra resume JOB``: compute again what a finished job is missing (latents that failed,
chunks that were cancelled). Against a server (``--server`` or SPECTRA_SERVER_URL) the job is
queued again for its workers (POST /v1/jobs/{id}/retry); against the database it is reopened
and run here, as ``spectra run`` runs a job."""

from __future__ import annotations

import argparse
import sys

from api.cli.connect import client, open_store, use_server
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.ids import resolve
from api.cli.options import server_or_database
from api.cli.registry import Commands
from api.cli.text import job_line


def register(commands: Commands) -> None:
    resume = commands.add(
        "resume",
        cmd_resume,
        "compute again a finished job's failed latents and cancelled chunks "
        "(on a server: queue it again; on the database: run it here)",
    )
    resume.add_argument("job")
    resume.add_argument("--quiet", action="store_true", help="no progress bar (database only)")
    server_or_database(resume)


def cmd_resume(args: argparse.Namespace) -> int:
    if use_server(args):
        with client(args, job_id=args.job) as server:
            job = server.retry_job(args.job)
        print(job_line(job))
        return 0
    return _resume_here(args)


def _resume_here(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from services.pipeline import run_job_inprocess
    from services.store import ConflictError, NotFoundError
    from services.submission import resume

    store = open_store(args.database)
    try:
        # The chunks run below, in order, with a progress bar; nothing to dispatch now.
        job = resume(store, _Later(), resolve(store, "job", args.job), LOCAL_OWNER)
    except (ConflictError, NotFoundError) as error:
        raise CliError(str(error), 1) from None
    print(f"job {job.id} resumed: {job.n_latents - job.n_done} codes to compute")
    bar = tqdm(total=job.n_latents, file=sys.stderr, unit="code", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    job = run_job_inprocess(store, job.id, progress)
    bar.close()
    print(f"status {job.status}: {job.n_done} done, {job.n_failed} failed")
    return 0 if job.status == "succeeded" else 1


class _Later:
    """A dispatcher that leaves the reopened chunks queued for run_job_inprocess."""

    def dispatch(self, chunk_ids: list[str]) -> None:
        return None

    def revoke(self, chunk_ids: list[str]) -> None:
        return None

    def ping(self, timeout_s: float) -> None:
        return None

    def devices(self) -> set[str] | None:
        return None
