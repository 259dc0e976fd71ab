"""``spectra campaign submit|status|cancel``: campaigns in the embedded store, or on a server
with ``--server`` (or SPECTRA_SERVER_URL) like ``compare`` and ``export``. ``campaign compare``
lives in its own module (api.cli.campaign_compare)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from api.cli.connect import client, open_store, use_server
from api.cli.errors import LOCAL_OWNER, CliError
from api.cli.ids import resolve
from api.cli.options import names, server_or_database
from api.cli.registry import Commands, Handler, add_command
from api.cli.text import table


class CampaignCommands:
    """The ``campaign`` sub-command table; each of its commands takes --server or --database."""

    def __init__(self, commands: Commands) -> None:
        campaign = commands.table.add_parser(
            "campaign",
            help="submit, follow, cancel and compare campaigns (the local database, or a "
            "server with --server)",
        )
        self.table = campaign.add_subparsers(dest="campaign_command", required=True)

    def add(self, name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        sub = add_command(self.table, name, handler, text)
        server_or_database(sub)
        return sub


def register(commands: Commands) -> CampaignCommands:
    campaign = CampaignCommands(commands)
    submit = campaign.add(
        "submit",
        cmd_campaign_submit,
        f"submit a campaign; embedded, its members run here (owner {LOCAL_OWNER!r}), on a "
        "server its workers run them; prints the campaign id last",
    )
    submit.add_argument("--name", required=True)
    submit.add_argument("--models", required=True, help="comma-separated model names")
    submit.add_argument("--spaces", help="comma-separated latent spaces (z, w, w+)")
    submit.add_argument(
        "--model-space",
        action="append",
        metavar="MODEL=SPACES",
        help="spaces of one model in place of --spaces, e.g. omniart-eye=noise (repeatable)",
    )
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
    submit.add_argument(
        "--no-run", action="store_true", help="embedded: only submit (a worker runs them)"
    )
    campaign.add("status", cmd_campaign_status, "each member's job status").add_argument("campaign")
    campaign.add("cancel", cmd_campaign_cancel, "cancel unfinished members").add_argument(
        "campaign"
    )
    return campaign


def spec_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The campaign spec as the HTTP API takes it (the options given)."""
    fields = {
        "name": args.name,
        "tags": names(args.tags) or [],
        "models": names(args.models),
        "spaces": names(args.spaces),
        "model_spaces": model_spaces(args.model_space),
        "distances": names(args.distances),
        "methods": names(args.methods),
        "directions": names(args.directions),
        "latents": {"count": args.latents, "seed": args.seed},
        "top_k": args.top_k,
        "dtype": args.dtype,
        "chunk_size": args.chunk_size,
    }
    return {k: v for k, v in fields.items() if v is not None}


def model_spaces(given: list[str] | None) -> dict[str, list[str]] | None:
    """``MODEL=SPACE[,SPACE]`` options as a mapping (the last ``=`` splits: spaces have none)."""
    if not given:
        return None
    mapping: dict[str, list[str]] = {}
    for entry in given:
        model, sep, spaces = entry.rpartition("=")
        if not sep or not model or not spaces:
            raise CliError(
                f"--model-space takes MODEL=SPACES (e.g. omniart-eye=noise), got {entry!r}"
            )
        mapping[model] = names(spaces) or []
    return mapping


def cmd_campaign_submit(args: argparse.Namespace) -> int:
    if use_server(args):
        with client(args) as server:
            submitted = server.submit_campaign(spec_fields(args))
        state = "created" if submitted.created else "already exists"
        print(f"campaign {submitted.name} {state}: {len(submitted.members)} members")
        print(submitted.id)
        return 0
    from pydantic import ValidationError

    from services import campaigns
    from services.config import get_settings  # the edge reads the settings
    from services.pipeline import run_job_inprocess

    try:
        spec = campaigns.CampaignSpec(**spec_fields(args))
    except ValidationError as error:
        first = error.errors()[0]
        raise CliError(f"campaign: {first['loc']}: {first['msg']}") from None
    store = open_store(args.database)
    try:
        record, created = campaigns.submit_campaign(
            store, spec, LOCAL_OWNER, None, settings=get_settings()
        )
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
    document = _campaign_document(
        args,
        lambda server, ref: server.campaign(ref),
        lambda campaigns, store, campaign_id: campaigns.campaign_status(store, campaign_id, None),
    )
    print(format_status(document))
    return 0


def cmd_campaign_cancel(args: argparse.Namespace) -> int:
    document = _campaign_document(
        args,
        lambda server, ref: server.cancel_campaign(ref),
        lambda campaigns, store, campaign_id: campaigns.cancel_campaign(
            store, campaign_id, None, None
        ),
    )
    print(f"campaign {document['name']}: {document['status']}")
    return 0


def format_status(document: Mapping[str, Any]) -> str:
    """A campaign's status document (the HTTP one, from either side) as a heading and a table."""
    rows = [("member", "job", "status", "done", "failed", "planned")]
    rows += [
        (m["member"], m["job_id"], m["status"], str(m["done"]), str(m["failed"]), str(m["planned"]))
        for m in document["members"]
    ]
    return f"campaign {document['name']}: {document['status']}\n{table(rows)}"


def _campaign_document(
    args: argparse.Namespace,
    on_server: Callable[[Any, str], Any],
    locally: Callable[[ModuleType, Any, str], Any],
) -> dict[str, Any]:
    """What ``on_server`` (the client, the campaign's name or id) or ``locally`` (the
    services.campaigns module, the store, the resolved id) answers about ``args.campaign``, as
    the campaign's document. services.campaigns is imported only for the local path."""
    if use_server(args):
        with client(args) as server:
            return _as_json(on_server(server, args.campaign))
    from services import campaigns

    store = open_store(args.database)
    campaign_id = resolve(store, "campaign", args.campaign)
    document: dict[str, Any] = locally(campaigns, store, campaign_id).to_json()
    return document


def _as_json(campaign: Any) -> dict[str, Any]:
    """The client's view back in the document's shape (the one the table is drawn from)."""
    return {
        "name": campaign.name,
        "status": campaign.status,
        "members": [vars(m) for m in campaign.members],
    }
