"""``python -m worker --gpus 0,1 | --cpu``: the launcher, as ``spectra worker`` runs it."""

from __future__ import annotations

import argparse
import sys

from worker.launcher import launch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--gpus", metavar="0,1", help="GPU indices, one worker each")
    which.add_argument("--cpu", action="store_true", help="one worker on the CPU")
    args = parser.parse_args(argv)
    gpus = [g for g in args.gpus.split(",")] if args.gpus else None
    return launch(gpus, args.cpu)


if __name__ == "__main__":
    sys.exit(main())
