"""Stored comparisons (``/v1/comparisons``): their view and their requests, shared by the sync
and async clients. Their tables are rendered here with THE table renderer of the service
(``services.comparisons.tables``: pure Python, no torch, no numpy), so a notebook prints the
same tables as the command line and the server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api.client.calls import Call, selection_json

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class StoredComparison:
    """A stored comparison: status and progress while a worker computes it, then its result
    document (``document``, version 1) and the links to its figures."""

    id: str
    status: str
    progress: float
    stage: str | None
    error: str | None
    document: dict[str, Any] | None
    figures: dict[str, str]
    raw: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def tables(self, fmt: str = "text") -> str:
        """THE tables (text, csv, markdown, latex), as the server and the command line print
        them."""
        from services.comparisons.tables import render_tables

        return render_tables(self._document(), fmt)

    def frames(self) -> dict[str, Any]:
        """The tables as pandas DataFrames by name (needs pandas)."""
        from services.comparisons.tables import table_frames

        return table_frames(self._document())

    def _document(self) -> dict[str, Any]:
        if self.document is None:
            raise ValueError(f"comparison {self.id} is {self.status}: it has no result yet")
        return self.document

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> StoredComparison:
        return cls(
            id=str(body["id"]),
            status=str(body["status"]),
            progress=float(body["progress"]),
            stage=body.get("stage"),
            error=body.get("error"),
            document=body.get("document"),
            figures=dict((body.get("links") or {}).get("figures") or {}),
            raw=dict(body),
        )


def _view(response: Any) -> StoredComparison:
    return StoredComparison.from_json(response.json())


def submit(
    selections: Sequence[str | Mapping[str, Any]], options: Mapping[str, Any]
) -> Call[StoredComparison]:
    given = {key: value for key, value in options.items() if value is not None}
    body = {"selections": [selection_json(s) for s in selections], **given}
    return Call("POST", "/v1/comparisons", _view, json=body)


def campaign(campaign_id: str, options: Mapping[str, Any]) -> Call[StoredComparison]:
    """A campaign's comparison: ONE stored comparison over its members with results."""
    given = {key: value for key, value in options.items() if value is not None}
    return Call("POST", f"/v1/campaigns/{campaign_id}/compare", _view, json=given)


def get(comparison_id: str) -> Call[StoredComparison]:
    return Call("GET", f"/v1/comparisons/{comparison_id}", _view)


def listing(limit: int) -> Call[list[StoredComparison]]:
    return Call(
        "GET",
        "/v1/comparisons",
        lambda r: [StoredComparison.from_json(c) for c in r.json()["items"]],
        params={"limit": limit},
    )


def cancel(comparison_id: str) -> Call[StoredComparison]:
    return Call("POST", f"/v1/comparisons/{comparison_id}/cancel", _view)


def figure(comparison_id: str, name: str) -> Call[bytes]:
    return Call("GET", f"/v1/comparisons/{comparison_id}/figures/{name}", lambda r: r.content)
