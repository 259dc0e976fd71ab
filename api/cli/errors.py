"""The command line's own error and the owner its embedded commands act as."""

from __future__ import annotations

# Jobs computed embedded (``spectra run``, ``import``, ``campaign submit``, ``optimise``)
# belong to this owner in the database they are written to.
LOCAL_OWNER = "local"


class CliError(Exception):
    """A user error: printed as one line on stderr, exit status ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
