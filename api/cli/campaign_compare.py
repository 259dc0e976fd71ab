"""``spectra campaign compare``: the comparison matrix over a campaign's members."""

from __future__ import annotations

import argparse

from api.cli.campaigns import CampaignCommands
from api.cli.compare import comparison_output_options, write_comparison_outputs
from api.cli.connect import open_store


def register(campaign: CampaignCommands) -> None:
    compare = campaign.add(
        "compare", cmd_campaign_compare, "the comparison matrix over the campaign's members"
    )
    compare.add_argument("campaign")
    compare.add_argument("--k", type=int, default=10, help="top-k for the subspace alignment")
    compare.add_argument("--include-partial", action="store_true")
    comparison_output_options(compare)


def cmd_campaign_compare(args: argparse.Namespace) -> int:
    from services import campaigns
    from services import comparisons as comparison

    store = open_store(args.database)
    result = campaigns.compare_campaign(
        store, args.campaign, None, k=args.k, include_partial=args.include_partial
    )
    print(comparison.format_report(result))
    write_comparison_outputs(store, result, args)
    return 0
