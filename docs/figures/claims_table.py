"""Writes the Markdown claims table of a campaign comparison (services/claims.py) to stdout.
Usage: python docs/figures/claims_table.py COMPARISON.json DATABASE_URL"""

from __future__ import annotations

import json
import sys

from services.claims import image_variations, render_claims
from services.store import Store


def main(document_path: str, database_url: str) -> None:
    with open(document_path, encoding="utf-8") as handle:
        document = json.load(handle)
    store = Store(database_url)
    sys.stdout.write(render_claims(document, image_variations(store, document)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
