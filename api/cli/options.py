"""Options shared by several commands: where the data is (a database or a server) and paging."""

from __future__ import annotations

import argparse

# The client's default (api.client.settings.DEFAULT_SERVER), written here so that building the
# parser does not import the client (httpx); tests/ui/test_cli_startup.py holds the two equal.
DEFAULT_SERVER = "http://127.0.0.1:8000"


def database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        metavar="URL",
        default=None,
        help="store URL (default SPECTRA_DATABASE_URL, else sqlite:///spectra.db)",
    )


def server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help=f"API base URL (default SPECTRA_SERVER_URL, else {DEFAULT_SERVER})",
    )
    parser.add_argument("--token", default=None, help="API key (default SPECTRA_TOKEN)")


def server_or_database(parser: argparse.ArgumentParser) -> None:
    """For commands that work on either: --server URL / SPECTRA_SERVER_URL, else --database."""
    parser.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help="ask this server (default SPECTRA_SERVER_URL; without either, the "
        "database is read directly)",
    )
    parser.add_argument(
        "--token", default=None, help="API key for --server (default SPECTRA_TOKEN)"
    )
    database_option(parser)


def list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=50, help="rows (default %(default)s)")
    parser.add_argument("--offset", type=int, default=0, help="rows to skip")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def names(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when the option was not given)."""
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]
