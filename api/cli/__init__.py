"""The ``spectra`` command.

Embedded commands (run, plan, import, keys, models, migrate, demo, campaign, optimise) open the
store named by ``--database`` directly and act as owner ``local``; client commands (submit,
status, cancel) talk to a server over HTTP with an API key, through ``api.client``; ``jobs``,
``spectra``, ``compare``, ``export`` and ``plots`` do either: against a server with ``--server``
(or SPECTRA_SERVER_URL), else against the database. ``serve`` and ``worker`` start services.

Each concept is a module of this package, and each command module registers its own commands
(``api.cli.parser``). Only the standard library is imported before a command runs
(``api.cli.startup``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.parser import build_parser
from api.cli.startup import (
    OPTIMISE_COMMANDS,
    SPEC_COMMANDS,
    command_of,
    skip_unused_optional_imports,
)

__all__ = ["LOCAL_OWNER", "CliError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    skip_unused_optional_imports()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = command_of(argv)
    parser = build_parser(
        spec_options=command in SPEC_COMMANDS, optimise_options=command in OPTIMISE_COMMANDS
    )
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
    except Exception as error:
        if not _store_unavailable(error):
            raise
        # The database cannot answer (down, or its disk full): one line that says which.
        print(f"spectra {args.command}: {error}", file=sys.stderr)
        return 3


def _store_unavailable(error: Exception) -> bool:
    """A StoreUnavailable (StoreFull included), without importing the store to ask: if the
    error is one, its module is loaded."""
    errors = sys.modules.get("services.store.errors")
    return errors is not None and isinstance(error, errors.StoreUnavailable)
