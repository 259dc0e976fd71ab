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
    optimise,
    resume,
    server_commands,
    world,
)
from api.cli.errors import LOCAL_OWNER
from api.cli.registry import Commands


def build_parser(
    *, spec_options: bool = True, optimise_options: bool | None = None
) -> argparse.ArgumentParser:
    """The whole command line. ``spec_options=False`` leaves out the options generated from
    JobSpec (run, submit: pydantic, no torch); ``optimise_options=False`` (default: as
    spec_options) the options of ``optimise``, generated from OptimiseSpec, whose module loads
    the geometry core (torch). Without them a command is still listed with its help line."""
    if optimise_options is None:
        optimise_options = spec_options
    parser = argparse.ArgumentParser(
        prog="spectra",
        description="Compute, store and compare spectra of latent spaces.",
        epilog=f"Embedded commands (run, plan, import, campaign, optimise) use the local "
        f"database (--database, SPECTRA_DATABASE_URL, else sqlite:///spectra.db) and the jobs "
        f"they compute belong to owner {LOCAL_OWNER!r}; `spectra publish JOB_ID --server URL` "
        "copies one to a server. jobs, spectra, compare, export and plots read either, "
        "a server with --server or SPECTRA_SERVER_URL (token: SPECTRA_TOKEN).",
    )
    table = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = Commands(table, spec_options=spec_options, optimise_options=optimise_options)
    embedded.register(commands)
    dual.register(commands)
    compare.register(commands)
    campaign_compare.register(campaigns.register(commands))
    server_commands.register(commands)
    world.register(commands)
    resume.register(commands)
    launch.register(commands)
    optimise.register(commands)
    return parser
