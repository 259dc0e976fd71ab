"""The API's operations as ``Call`` values: one HTTP request and how to read its answer.

Both clients only send them (``api.client.sync`` and ``api.client.asynchronous``), so an
operation is written once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import httpx

from api.client.errors import error_for
from api.client.views import (
    Campaign,
    Comparison,
    Job,
    ModelInfo,
    Page,
    PageInfo,
    Spectrum,
    SpectrumSummary,
)

if TYPE_CHECKING:
    import numpy as np

FigureKind = Literal["spectrum", "homogeneity", "montage"]
_T = TypeVar("_T")


@dataclass
class Call(Generic[_T]):
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], _T]
    params: dict[str, Any] | list[tuple[str, Any]] | None = None
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def request_options(call: Call[Any]) -> dict[str, Any]:
    """What httpx sends for ``call`` (both clients)."""
    return {
        "params": call.params,
        "json": call.json,
        "files": call.files,
        "data": call.data,
        "headers": call.headers,
    }


def answer(call: Call[_T], response: httpx.Response) -> _T:
    """The parsed answer, or the typed error the server's status calls for."""
    if response.status_code >= 400:
        raise error_for(response)
    return call.parse(response)


def selection_json(selection: str | Mapping[str, Any]) -> dict[str, Any]:
    """A selection as the API takes it: a text (``JOB_ID``, ``MODEL:DISTANCE:METHOD`` or
    ``MODEL::sefa``) is read by the service's own parser; a dict is sent as is."""
    if not isinstance(selection, str):
        return dict(selection)
    from services.comparisons import parse_selection

    return parse_selection(selection).model_dump(exclude_defaults=True)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _npy(response: httpx.Response) -> np.ndarray:
    import numpy as np

    array: np.ndarray = np.load(io.BytesIO(response.content), allow_pickle=False)
    return array


def _job(response: httpx.Response) -> Job:
    return Job.from_json(response.json())


def _page_info(body: Mapping[str, Any]) -> PageInfo:
    return PageInfo(**body["page"])


def eigenvalues_from_npz(data: bytes) -> np.ndarray:
    """The (N, k) eigenvalues of an exported job, descending."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        # The published layout is ascending; the service's convention is descending.
        return np.ascontiguousarray(archive["eva"][:, ::-1])


def submit(spec: Mapping[str, Any], idempotency_key: str | None) -> Call[Job]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call("POST", "/v1/jobs", _job, json=dict(spec), headers=headers)


def submit_codes(
    codes: np.ndarray, spec: Mapping[str, Any], idempotency_key: str | None
) -> Call[Job]:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(codes, dtype=np.float64), allow_pickle=False)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call(
        "POST",
        "/v1/jobs/upload",
        _job,
        files={"file": ("codes.npy", buffer.getvalue(), "application/octet-stream")},
        data={"spec": json.dumps(dict(spec))},
        headers=headers,
    )


def job(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{job_id}", _job)


def jobs(status: str | None, model: str | None, limit: int, offset: int) -> Call[Page[Job]]:
    def parse(response: httpx.Response) -> Page[Job]:
        body = response.json()
        return Page([Job.from_json(j) for j in body["items"]], _page_info(body))

    params = _drop_none({"status": status, "model": model, "limit": limit, "offset": offset})
    return Call("GET", "/v1/jobs", parse, params=params)


def cancel(job_id: str) -> Call[Job]:
    return Call("POST", f"/v1/jobs/{job_id}/cancel", _job)


def retry_job(job_id: str) -> Call[Job]:
    return Call("POST", f"/v1/jobs/{job_id}/retry", _job)


def spectra(query: Mapping[str, Any]) -> Call[Page[SpectrumSummary]]:
    def parse(response: httpx.Response) -> Page[SpectrumSummary]:
        body = response.json()
        items = [SpectrumSummary.from_json(s) for s in body["items"]]
        return Page(items, _page_info(body))

    return Call("GET", "/v1/spectra", parse, params=_drop_none(query))


def spectrum(spectrum_id: str) -> Call[Spectrum]:
    return Call("GET", f"/v1/spectra/{spectrum_id}", lambda r: Spectrum.from_json(r.json()))


def eigenvectors(spectrum_id: str, k: int | None) -> Call[np.ndarray]:
    params = _drop_none({"k": k, "format": "npy"})
    return Call("GET", f"/v1/spectra/{spectrum_id}/eigenvectors", _npy, params=params)


def export(job_id: str, k: int | None) -> Call[bytes]:
    return Call(
        "GET", f"/v1/jobs/{job_id}/export.npz", lambda r: r.content, params=_drop_none({"k": k})
    )


def import_npz(data: bytes, overrides: Mapping[str, str | None]) -> Call[Job]:
    return Call(
        "POST",
        "/v1/jobs/import",
        _job,
        files={"file": ("spectra.npz", data, "application/octet-stream")},
        data=_drop_none(overrides),
    )


def compare(
    selections: Sequence[str | Mapping[str, Any]],
    k: int,
    max_positions: int,
    seed: int | None = None,
    transport: str | None = None,
) -> Call[Comparison]:
    body: dict[str, Any] = {
        "selections": [selection_json(s) for s in selections],
        "k": k,
        "max_positions": max_positions,
    }
    if seed is not None:  # only when given: a server from before the option refuses it
        body["seed"] = seed
    if transport is not None:  # the same: only when given
        body["transport"] = transport
    return Call("POST", "/v1/compare", lambda r: Comparison.from_json(r.json()), json=body)


def figure(
    kind: FigureKind,
    selections: Sequence[str] | None,
    spectrum_id: str | None,
    options: Mapping[str, Any],
) -> Call[bytes]:
    params = _figure_params(kind, selections, spectrum_id, options)
    return Call("GET", f"/v1/plots/{kind}.png", lambda r: r.content, params=params)


def models() -> Call[list[ModelInfo]]:
    return Call("GET", "/v1/models", lambda r: [ModelInfo.from_json(m) for m in r.json()])


def _figure_params(
    kind: FigureKind,
    selections: Sequence[str] | None,
    spectrum_id: str | None,
    options: Mapping[str, Any],
) -> list[tuple[str, Any]]:
    if kind == "montage":
        if not spectrum_id:
            raise ValueError("a montage needs spectrum_id= (the spectrum whose axes are drawn)")
        return [("spectrum_id", spectrum_id), *_drop_none(options).items()]
    if not selections:
        raise ValueError(f"a {kind} figure needs selections= (job ids or MODEL:DISTANCE:METHOD)")
    return [*(("selection", s) for s in selections), *_drop_none(options).items()]


def _campaign(response: httpx.Response) -> Campaign:
    return Campaign.from_json(response.json())


def submit_campaign(spec: Mapping[str, Any]) -> Call[Campaign]:
    return Call("POST", "/v1/campaigns", _campaign, json=dict(spec))


def campaign(campaign_id: str) -> Call[Campaign]:
    return Call("GET", f"/v1/campaigns/{campaign_id}", _campaign)


def campaigns(tag: str | None) -> Call[list[Campaign]]:
    def parse(response: httpx.Response) -> list[Campaign]:
        return [Campaign.from_json(c) for c in response.json()["items"]]

    return Call("GET", "/v1/campaigns", parse, params=_drop_none({"tag": tag}))


def cancel_campaign(campaign_id: str) -> Call[Campaign]:
    return Call("POST", f"/v1/campaigns/{campaign_id}/cancel", _campaign)
