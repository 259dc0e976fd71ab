"""``spectra campaign compare``: the comparison matrix over a campaign's members, from the
database or a server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from api.cli.campaigns import CampaignCommands
from api.cli.compare import comparison_output_options, server_report, write_comparison_outputs
from api.cli.connect import client, open_store, use_server
from api.cli.ids import resolve
from api.cli.pictures import server_plots, write_pictures


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
        print(server_report(document))
        write_pictures(args.plots, pictures)
        if args.json:
            Path(args.json).write_text(json.dumps(document, indent=1))
        return 0
    from services import campaigns
    from services import comparisons as comparison

    store = open_store(args.database)
    result = campaigns.compare_campaign(
        store,
        resolve(store, "campaign", args.campaign),
        None,
        k=args.k,
        include_partial=args.include_partial,
    )
    print(comparison.format_report(result))
    write_comparison_outputs(store, result, args)
    return 0
