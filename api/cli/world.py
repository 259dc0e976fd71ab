"""One world, local and server: jobs computed embedded (``run``, ``import``, ``campaign
submit``, ``optimise``) belong to owner ``local`` in the local database; ``spectra publish ID
--server URL`` copies a finished local job to a server (the export and import use cases, one
.npz in between). A server's 404 for an id the local database holds says where it is
(``api.cli.connect.local_hint``)."""

from __future__ import annotations

import argparse

from api.cli.connect import client, open_store
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.ids import resolve
from api.cli.options import database_option, server_options
from api.cli.registry import Commands


def register(commands: Commands) -> None:
    publish = commands.add(
        "publish",
        cmd_publish,
        f"copy a finished job of the local database (owner {LOCAL_OWNER!r}) to a server, as "
        "one finished job of the key's owner; prints the server's job id last",
    )
    publish.add_argument("job", metavar="JOB_ID")
    publish.add_argument(
        "--k", type=int, default=None, help="eigenpairs per spectrum (default: all)"
    )
    server_options(publish)
    database_option(publish)


def cmd_publish(args: argparse.Namespace) -> int:
    from services import submission

    store = open_store(args.database)
    job = store.get_job(resolve(store, "job", args.job))
    if job.n_done == 0:
        raise CliError(f"job {job.id} has no spectra yet ({job.status}): nothing to publish")
    data = submission.export_npz(store, job.id, None, args.k)
    with client(args) as server:
        published = server.import_npz(data)
    state = "published" if published.created else "already published"
    print(
        f"job {job.id} {state} to {server.server}: {published.n_done} spectra, owner "
        f"{published.owner!r}"
    )
    print(published.id)
    return 0
