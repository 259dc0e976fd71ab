"""How a module adds its commands to the parser: ``register(commands)`` with a ``Commands``.

Each command module owns its options and handlers; ``api.cli.parser`` only lists the modules.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

Handler = Callable[[argparse.Namespace], int]


@dataclass
class Commands:
    """The sub-command table being built, and which expensive option sets to generate.

    ``spec_options``: the options generated from JobSpec (pydantic); ``optimise_options``: the
    optimise commands, whose OptimiseSpec loads the geometry core (torch). ``main`` asks for
    each only when one of its commands runs (or for the top-level help)."""

    table: argparse._SubParsersAction[argparse.ArgumentParser]
    spec_options: bool = True
    optimise_options: bool = True

    def add(self, name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        return add_command(self.table, name, handler, text)


def add_command(
    table: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    text: str,
) -> argparse.ArgumentParser:
    """A sub-command whose help and description are ``text`` and which runs ``handler``."""
    sub = table.add_parser(name, help=text, description=text)
    sub.set_defaults(handler=handler)
    return sub
