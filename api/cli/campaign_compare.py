"""``spectra campaign compare``: a campaign's comparison is ONE stored comparison over its
members with results, computed by the server's workers (``--server``) or in this process (the
same use case and record): the same tables, flags and files as ``spectra compare``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from api.cli.campaigns import CampaignCommands
from api.cli.compare import (
    comparison_output_options,
    figure_formats,
    show_local_comparison,
    show_server_comparison,
)
from api.cli.connect import client, open_store, use_server
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.ids import resolve


def register(campaign: CampaignCommands) -> None:
    compare = campaign.add(
        "compare", cmd_campaign_compare, "the comparison matrix over the campaign's members"
    )
    compare.add_argument("campaign")
    compare.add_argument("--k", type=int, default=10, help="top-k for the subspace alignment")
    compare.add_argument(
        "--max-positions",
        type=int,
        default=100,
        metavar="N",
        help="the most positions a member's homogeneity uses (2-500; default 100)",
    )
    compare.add_argument(
        "--seed", type=int, default=0, help="seed of the homogeneity's sample (default 0)"
    )
    compare.add_argument(
        "--include-partial", action="store_true", help="use members' partial results"
    )
    comparison_output_options(compare)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "k": args.k,
        "max_positions": args.max_positions,
        "seed": args.seed,
        "include_partial": bool(args.include_partial),
        "formats": figure_formats(args),
        "normalise": args.normalise,
    }


def _say_skipped(skipped: list[str]) -> None:
    for note in skipped:
        print(f"note: {note}", file=sys.stderr)


def cmd_campaign_compare(args: argparse.Namespace) -> int:
    if use_server(args):
        with client(args) as server:
            stored = server.compare_campaign(args.campaign, **_options(args))
            _say_skipped(list(stored.raw.get("skipped") or []))
            show_server_comparison(server, stored.id, args)
        return 0
    from services import campaigns
    from services.comparisons.stored import compare_in_process
    from services.config import get_settings
    from services.store import InvalidDataError

    store = open_store(args.database)
    campaign_id = resolve(store, "campaign", args.campaign)
    options = _options(args)
    try:
        request, skipped = campaigns.campaign_comparison_request(
            store,
            campaign_id,
            None,
            campaigns.CampaignComparisonOptions(
                **{**options, "formats": tuple(options["formats"])}
            ),
        )
    except (InvalidDataError, ValueError) as error:
        raise CliError(str(error)) from None
    _say_skipped(skipped)
    record = compare_in_process(store, request, owner=LOCAL_OWNER, settings=get_settings())
    show_local_comparison(store, record, args)
    return 0
