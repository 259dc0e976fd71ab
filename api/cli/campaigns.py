"""``spectra campaign submit|status|cancel``: campaigns in the embedded store (``campaign
compare`` lives in its own module, api.cli.campaign_compare)."""

from __future__ import annotations

import argparse

from api.cli.connect import open_store
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.options import database_option, names
from api.cli.registry import Commands, Handler, add_command
from api.cli.text import table


class CampaignCommands:
    """The ``campaign`` sub-command table; each of its commands takes --database."""

    def __init__(self, commands: Commands) -> None:
        campaign = commands.table.add_parser(
            "campaign", help="submit, follow, cancel and compare campaigns (embedded store)"
        )
        self.table = campaign.add_subparsers(dest="campaign_command", required=True)

    def add(self, name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        sub = add_command(self.table, name, handler, text)
        database_option(sub)
        return sub


def register(commands: Commands) -> CampaignCommands:
    campaign = CampaignCommands(commands)
    submit = campaign.add(
        "submit",
        cmd_campaign_submit,
        "submit a campaign and run its members here; prints the campaign id last",
    )
    submit.add_argument("--name", required=True)
    submit.add_argument("--models", required=True, help="comma-separated model names")
    submit.add_argument("--spaces", help="comma-separated latent spaces (z, w, w+)")
    submit.add_argument("--distances", help="comma-separated (default mse)")
    submit.add_argument("--methods", help="comma-separated Hessian methods (default jacobian)")
    submit.add_argument(
        "--directions", help="comma-separated direction methods (default sefa; '' for none)"
    )
    submit.add_argument("--latents", type=int, required=True, help="codes per model")
    submit.add_argument("--seed", type=int, default=0)
    submit.add_argument("--top-k", type=int, default=None)
    submit.add_argument("--dtype", default=None, choices=("float32", "float64"))
    submit.add_argument("--chunk-size", type=int, default=None)
    submit.add_argument("--tags", help="comma-separated tags")
    submit.add_argument("--no-run", action="store_true", help="only submit (a worker runs them)")
    campaign.add("status", cmd_campaign_status, "each member's job status").add_argument("campaign")
    campaign.add("cancel", cmd_campaign_cancel, "cancel unfinished members").add_argument(
        "campaign"
    )
    return campaign


def cmd_campaign_submit(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from services import campaigns
    from services.pipeline import run_job_inprocess

    fields = {
        "name": args.name,
        "tags": names(args.tags) or [],
        "models": names(args.models),
        "spaces": names(args.spaces),
        "distances": names(args.distances),
        "methods": names(args.methods),
        "directions": names(args.directions),
        "latents": {"count": args.latents, "seed": args.seed},
        "top_k": args.top_k,
        "dtype": args.dtype,
        "chunk_size": args.chunk_size,
    }
    try:
        spec = campaigns.CampaignSpec(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        raise CliError(f"campaign: {first['loc']}: {first['msg']}") from None
    store = open_store(args.database)
    try:
        record, created = campaigns.submit_campaign(store, spec, LOCAL_OWNER, None)
    except campaigns.CampaignSpecError as error:
        raise CliError(str(error)) from None
    print(
        f"campaign {record.name} {'created' if created else 'already exists'}: "
        f"{len(record.members)} members"
    )
    if not args.no_run:
        for member in record.members:
            job = run_job_inprocess(store, member.job_id)
            print(f"  {member.member}: {job.status} ({job.n_done}/{job.n_latents})")
    print(record.id)
    return 0


def cmd_campaign_status(args: argparse.Namespace) -> int:
    from services import campaigns

    status = campaigns.campaign_status(open_store(args.database), args.campaign, None)
    rows = [("member", "job", "status", "done", "failed", "planned")]
    rows += [
        (m.member, m.job_id, m.status, str(m.done), str(m.failed), str(m.planned))
        for m in status.members
    ]
    print(f"campaign {status.campaign.name}: {status.status}")
    print(table(rows))
    return 0


def cmd_campaign_cancel(args: argparse.Namespace) -> int:
    from services import campaigns

    status = campaigns.cancel_campaign(open_store(args.database), args.campaign, None, None)
    print(f"campaign {status.campaign.name}: {status.status}")
    return 0
