"""The whole ``spectra`` parser: each command module registers its own commands."""

from __future__ import annotations

import argparse

from api.cli import (
    campaign_compare,
    campaigns,
    compare,
    dual,
    embedded,
    launch,
    resume,
    server_commands,
)
from api.cli.registry import Commands


def build_parser(
    *, spec_options: bool = True, optimise_options: bool | None = None
) -> argparse.ArgumentParser:
    """The whole command line. ``spec_options=False`` leaves out the options generated from
    JobSpec (run, submit: pydantic, no torch); ``optimise_options=False`` (default: as
    spec_options) the optimise commands, whose OptimiseSpec loads the geometry core (torch)."""
    if optimise_options is None:
        optimise_options = spec_options
    parser = argparse.ArgumentParser(
        prog="spectra", description="Compute, store and compare spectra of latent spaces."
    )
    table = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = Commands(table, spec_options=spec_options, optimise_options=optimise_options)
    embedded.register(commands)
    dual.register(commands)
    compare.register(commands)
    campaign_compare.register(campaigns.register(commands))
    server_commands.register(commands)
    resume.register(commands)
    launch.register(commands)
    if optimise_options:
        # Their options come from OptimiseSpec, which loads the geometry core (torch).
        from api.cli import optimise

        optimise.register(commands)
    return parser
