"""Writes the Markdown claims table of a campaign comparison's result document
(services/claims.py) to stdout. Usage: python docs/figures/claims_table.py COMPARISON.json"""

from __future__ import annotations

import json
import sys

from services.claims import render_claims


def main(document_path: str) -> None:
    with open(document_path, encoding="utf-8") as handle:
        sys.stdout.write(render_claims(json.load(handle)))


if __name__ == "__main__":
    main(sys.argv[1])
