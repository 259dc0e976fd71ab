"""Start-up time matters (``spectra status`` is typed often): the command line imports only the
standard library before it knows which command runs, builds only the options that command
needs, and keeps httpx from importing modules it never uses (bench/bench_cli.py measures it)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The commands whose options are generated from JobSpec (pydantic, no torch) or from
# OptimiseSpec (its module loads the geometry core, torch): those options are built only
# when one of these commands runs, so `spectra --help` and every other command start at once.
SPEC_COMMANDS = ("run", "submit", "plan")
OPTIMISE_COMMANDS = ("optimise",)

# Optional imports that httpx and httpcore make whenever the package is installed, and that a
# command-line process never uses: httpx's own command line (rich, click) and trio (httpcore's
# async locks; this process makes only synchronous requests). Together they were more than
# half of a `spectra status`. Both libraries fall back cleanly when the import fails.
_UNUSED_OPTIONAL_IMPORTS = ("httpx._main", "trio")


def skip_unused_optional_imports() -> None:
    if "httpx" in sys.modules:  # too late to matter (e.g. called from a test process)
        return
    for name in _UNUSED_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)
