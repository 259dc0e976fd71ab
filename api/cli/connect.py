"""Where a command's data is: the embedded store (``--database``) or a server (``--server``).

Settings are read here, at the edge, and only when a command needs them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.errors import CliError

# The variable that names a server (api.client.settings.SERVER_VARIABLE; not imported from
# there, which would load httpx for commands that read the database).
SERVER_VARIABLE = "SPECTRA_SERVER_URL"

if TYPE_CHECKING:
    from api.client import SpectraClient


def database_url(url: str | None) -> str:
    """``url``, else the configured one (SPECTRA_DATABASE_URL)."""
    if url:
        return url
    from services.config import get_settings

    return get_settings().database_url


def open_store(url: str | None, *, migrate: bool = True) -> Any:
    """The embedded store at ``url`` (default: the configured one), its schema up to date."""
    from services.store import Store

    store = Store(database_url(url))
    if migrate:
        store.migrate()
    return store


class CliClient:
    """The typed client, with its errors turned into one-line CLI errors (exit status 1).
    ``job_id``: the job the command names; a 404 for it says so when the local database
    (``database``) holds it."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        job_id: str | None = None,
        database: str | None = None,
    ) -> None:
        from api.client import SpectraClient

        self.job_id, self.database = job_id, database

        try:
            self.client = SpectraClient(server, token)
        except ValueError as error:  # no token
            raise CliError(str(error)) from None

    def __enter__(self) -> SpectraClient:
        return self.client

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> None:
        from api.client import NotFound, SpectraError

        self.client.close()
        if isinstance(error, SpectraError):
            hint = None
            if isinstance(error, NotFound) and self.job_id:
                hint = local_hint(self.job_id, self.database)
            raise CliError(str(error) + (f"; {hint}" if hint else ""), 1) from None


def client(args: argparse.Namespace, *, job_id: str | None = None) -> CliClient:
    """A client of --server and --token, else the client's settings (SPECTRA_SERVER_URL,
    SPECTRA_TOKEN); ``job_id`` as ``CliClient`` takes it."""
    from api.client import ClientSettings

    settings = ClientSettings.from_environment(server=args.server, token=args.token)
    database = getattr(args, "database", None)
    return CliClient(settings.server, settings.token, job_id=job_id, database=database)


def local_hint(job_id: str, database: str | None) -> str | None:
    """Where a job a server does not know is, when the local database holds it: a sentence
    naming the database and how to publish it; None otherwise. Never creates a database (a
    missing SQLite file holds nothing) and never fails: it only adds to another error."""
    url = database_url(database)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    try:
        store = open_store(url, migrate=False)
        try:
            record = store.get_job(job_id)
        finally:
            store.close()
    except Exception:  # not there, no database, another schema: no hint
        return None
    return (
        f"job {record.id} is in the local database ({url}, owner {record.owner!r}), not on "
        f"the server: publish it with `spectra publish {record.id} --server URL`, or read it "
        "with --database"
    )


def use_server(args: argparse.Namespace) -> bool:
    """--server, or SPECTRA_SERVER_URL without --database: talk to a server."""
    if getattr(args, "database", None):
        if args.server:
            raise CliError("give either --server or --database, not both")
        return False
    return bool(args.server or os.environ.get(SERVER_VARIABLE))
