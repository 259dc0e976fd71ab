"""Where a command's data is: the embedded store (``--database``) or a server (``--server``).

Settings are read here, at the edge, and only when a command needs them.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from api.cli.errors import CliError
from api.cli.options import DEFAULT_SERVER

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
    """The typed client, with its errors turned into one-line CLI errors (exit status 1)."""

    def __init__(self, server: str, token: str | None) -> None:
        from api.client import SpectraClient

        try:
            self.client = SpectraClient(server, token)
        except ValueError as error:  # no token
            raise CliError(str(error)) from None

    def __enter__(self) -> SpectraClient:
        return self.client

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> None:
        from api.client import SpectraError

        self.client.close()
        if isinstance(error, SpectraError):
            raise CliError(str(error), 1) from None


def client(args: argparse.Namespace) -> CliClient:
    server = args.server or os.environ.get("SPECTRA_SERVER_URL") or DEFAULT_SERVER
    return CliClient(server, args.token)


def use_server(args: argparse.Namespace) -> bool:
    """--server, or SPECTRA_SERVER_URL without --database: talk to a server."""
    if getattr(args, "database", None):
        if args.server:
            raise CliError("give either --server or --database, not both")
        return False
    return bool(args.server or os.environ.get("SPECTRA_SERVER_URL"))
