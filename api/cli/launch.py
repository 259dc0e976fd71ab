"""Commands that start services: ``serve`` (the HTTP API) and ``worker`` (Celery workers)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from api.cli.connect import open_store
from api.cli.options import database_option
from api.cli.registry import Commands


def register(commands: Commands) -> None:
    serve = commands.add("serve", cmd_serve, "run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    database_option(serve)

    worker = commands.add("worker", cmd_worker, "run one Celery worker per GPU, or one on the CPU")
    which = worker.add_mutually_exclusive_group(required=True)
    which.add_argument("--gpus", metavar="0,1", help="GPU indices, one worker each")
    which.add_argument("--cpu", action="store_true", help="one worker on the CPU")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import serving_app
    from services.config import get_settings

    if args.database:
        os.environ["SPECTRA_DATABASE_URL"] = args.database  # also for worker processes
        get_settings.cache_clear()
    settings = get_settings()
    settings.check_serving_ready(args.host)  # before anything starts
    if settings.database_url.startswith("sqlite"):
        open_store(settings.database_url)  # embedded: make the schema on first start
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": False,
    }
    if args.workers > 1:
        # Several processes need the app by name; each builds it from the environment.
        uvicorn.run("api.app:serving_app", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(serving_app(), **options)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # The launcher replaces this process (same pid, so signals reach it): the command line
    # is an adapter and does not import the worker package.
    if args.gpus:
        from services.worker_devices import check_gpus

        check_gpus(args.gpus.split(","))  # a ValueError: one line, exit 2
    which = ["--gpus", args.gpus] if args.gpus else ["--cpu"]
    os.execv(sys.executable, [sys.executable, "-m", "worker", *which])
