"""``spectra campaign compare``: the comparison matrix over a campaign's members, from the
database or a server."""

from __future__ import annotations

import argparse

from api.cli.campaigns import CampaignCommands
from api.cli.compare import (
    comparison_output_options,
    write_comparison,
    write_comparison_outputs,
)
from api.cli.connect import client, open_store, use_server
from api.cli.ids import resolve
from api.cli.pictures import server_plots


def register(campaign: CampaignCommands) -> None:
    compare = campaign.add(
        "compare", cmd_campaign_compare, "the comparison matrix over the campaign's members"
    )
    compare.add_argument("campaign")
    compare.add_argument("--k", type=int, default=10, help="top-k for the subspace alignment")
    compare.add_argument("--include-partial", action="store_true")
    comparison_output_options(compare)


def cmd_campaign_compare(args: argparse.Namespace) -> int:
    if use_server(args):
        with client(args) as server:
            document = server.compare_campaign(
                args.campaign, k=args.k, include_partial=args.include_partial
            ).raw
            jobs = [m.job_id for m in server.campaign(args.campaign).members]
            pictures = server_plots(server, jobs, document) if args.plots else {}
        # THE tables of the result document the server sent, as the embedded path prints them.
        write_comparison(document["document"], pictures, args)
        return 0
    from services import campaigns
    from services.config import get_settings

    store = open_store(args.database)
    result = campaigns.compare_campaign(
        store,
        resolve(store, "campaign", args.campaign),
        None,
        k=args.k,
        include_partial=args.include_partial,
        settings=get_settings(),
    )
    write_comparison_outputs(store, result, args)
    return 0
