"""A typed Python client for the latent-spectra HTTP API, for notebooks and the command line.

    from api.client import SpectraClient
    with SpectraClient("http://127.0.0.1:8000", token) as client:
        job = client.submit({"model": "dcgan-faces", "latents": {"count": 8}, "top_k": 20})
        job = client.follow(job.id)                 # progress bar until it ends
        eigenvalues = client.eigenvalues(job.id)    # (N, k) numpy array, descending

Every error the server answers is raised as a ``SpectraError`` subclass chosen by the status
(``NotFound``, ``InvalidRequest``, ...) that carries the server's problem document, so a
notebook can catch exactly what it expects. ``AsyncSpectraClient`` is the same API with
``await``. This module imports neither torch nor the server: only httpx, and numpy when an
array is asked for (so that the command line starts at once).
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import httpx

if TYPE_CHECKING:
    import numpy as np

DEFAULT_SERVER = "http://127.0.0.1:8000"
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
FigureKind = Literal["spectrum", "homogeneity", "montage"]

_T = TypeVar("_T")


# -- errors ----------------------------------------------------------------------------------


class SpectraError(Exception):
    """The server refused a request (or could not be reached: ``status`` 0).

    ``problem`` is the RFC 9457 document the server sent (``type``, ``title``, ``status``,
    ``detail``, and ``field`` / ``errors`` when an input is to blame)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem: dict[str, Any] = dict(problem)
        self.title: str = str(self.problem.get("title") or "error")
        self.detail: str = str(self.problem.get("detail") or "")
        self.field: str | None = self.problem.get("field")
        super().__init__(f"HTTP {status} {self.title}: {self.detail}" if status else self.detail)


class ServerUnreachable(SpectraError):
    """No answer at all: wrong URL, server down, or a timeout."""


class InvalidRequest(SpectraError):
    """400 / 422: the problem document names the field to fix."""


class Unauthorized(SpectraError):
    """401: no API key, or a key the server does not know."""


class Forbidden(SpectraError):
    """403: the key lacks the scope."""


class NotFound(SpectraError):
    """404: no such resource visible to this key (another owner's jobs answer this too)."""


class PayloadTooLarge(SpectraError):
    """413: an upload over the server's limit."""


class ServerError(SpectraError):
    """5xx: the server failed; its problem document says what to try."""


_ERRORS_BY_STATUS: dict[int, type[SpectraError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
    413: PayloadTooLarge, 422: InvalidRequest,
}  # fmt: skip


def error_for(response: httpx.Response) -> SpectraError:
    """The typed exception for an error response (problem+json, or whatever text came)."""
    try:
        body = response.json()
        problem = body if isinstance(body, dict) else {"detail": str(body)}
    except ValueError:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    problem.setdefault("status", response.status_code)
    kind = _ERRORS_BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else SpectraError
    return kind(response.status_code, problem)


# -- what the server answers, typed ----------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    planned: int
    done: int
    failed: int
    fraction: float
    rate_per_s: float | None
    eta_s: float | None


@dataclass(frozen=True)
class Failure:
    latent_index: int
    reason: str


@dataclass(frozen=True)
class Job:
    """A job as the server describes it. ``progress``, ``resolved`` and ``failures`` come
    with a single job (``client.job(id)``), not in lists."""

    id: str
    owner: str
    status: str
    model: str | None
    n_latents: int
    n_done: int
    n_failed: int
    cancel_requested: bool
    error: str | None
    spec: dict[str, Any]
    created_at: str
    created: bool | None = None  # on submit: False when an identical job already existed
    resolved: dict[str, Any] | None = None
    progress: Progress | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Job:
        progress = body.get("progress")
        return cls(
            id=body["id"], owner=body["owner"], status=body["status"], model=body.get("model"),
            n_latents=body["n_latents"], n_done=body["n_done"], n_failed=body["n_failed"],
            cancel_requested=body["cancel_requested"], error=body.get("error"),
            spec=dict(body.get("spec") or {}), created_at=body["created_at"],
            created=body.get("created"), resolved=body.get("resolved"),
            progress=None if progress is None else Progress(**progress),
            failures=[Failure(**f) for f in body.get("failures") or []],
        )  # fmt: skip


@dataclass(frozen=True)
class SpectrumSummary:
    id: str
    job_id: str
    latent_index: int
    model: str
    distance: str
    method: str
    dtype: str
    k: int
    d: int
    top_eigenvalue: float | None
    trace: float | None
    dims_99: int | None
    dims_999: int | None
    participation_ratio: float | None
    wall_time_s: float | None
    created_at: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SpectrumSummary:
        names = cls.__dataclass_fields__
        return cls(**{name: body[name] for name in names})


@dataclass(frozen=True)
class Spectrum:
    """One spectrum with its eigenvalues (descending) and code as numpy arrays."""

    summary: SpectrumSummary
    eigenvalues: np.ndarray
    code: np.ndarray | None
    diagnostics: dict[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Spectrum:
        import numpy as np

        code = body.get("code")
        return cls(
            summary=SpectrumSummary.from_json(body),
            eigenvalues=np.asarray(body["eigenvalues"], dtype=np.float64),
            code=None if code is None else np.asarray(code, dtype=np.float64),
            diagnostics=dict(body.get("diagnostics") or {}),
        )


@dataclass(frozen=True)
class Page(Generic[_T]):
    items: list[_T]
    next_offset: int | None


@dataclass(frozen=True)
class Comparison:
    """The comparison document: per-selection anisotropy and homogeneity, the pairwise
    alignments, and notes. ``raw`` is the whole document (it may carry more than these)."""

    selections: list[dict[str, Any]]
    alignments: list[dict[str, Any]]
    notes: list[str]
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Comparison:
        return cls(
            selections=list(body.get("selections") or []),
            alignments=list(body.get("alignments") or []),
            notes=list(body.get("notes") or []),
            raw=dict(body),
        )


# -- requests, shared by the sync and async clients ------------------------------------------


@dataclass
class _Call(Generic[_T]):
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], _T]
    params: dict[str, Any] | list[tuple[str, Any]] | None = None
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _selection_json(selection: str | Mapping[str, Any]) -> dict[str, Any]:
    """``JOB_ID`` or ``MODEL:DISTANCE:METHOD`` text (as the CLI takes it), or a dict as is."""
    if not isinstance(selection, str):
        return dict(selection)
    parts = selection.rsplit(":", 2)
    if len(parts) == 3 and all(parts):
        return {"model": parts[0], "distance": parts[1], "method": parts[2]}
    return {"job_id": selection}


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _npy(response: httpx.Response) -> np.ndarray:
    import numpy as np

    return np.load(io.BytesIO(response.content), allow_pickle=False)


class _Calls:
    """The API's operations as ``_Call`` values; each client only sends them."""

    @staticmethod
    def submit(spec: Mapping[str, Any], idempotency_key: str | None) -> _Call[Job]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _Call("POST", "/v1/jobs", lambda r: Job.from_json(r.json()), json=dict(spec),
                     headers=headers)  # fmt: skip

    @staticmethod
    def submit_codes(
        codes: np.ndarray, spec: Mapping[str, Any], idempotency_key: str | None
    ) -> _Call[Job]:
        import json

        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(codes, dtype=np.float64), allow_pickle=False)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return _Call(
            "POST", "/v1/jobs/upload", lambda r: Job.from_json(r.json()),
            files={"file": ("codes.npy", buffer.getvalue(), "application/octet-stream")},
            data={"spec": json.dumps(dict(spec))}, headers=headers,
        )  # fmt: skip

    @staticmethod
    def job(job_id: str) -> _Call[Job]:
        return _Call("GET", f"/v1/jobs/{job_id}", lambda r: Job.from_json(r.json()))

    @staticmethod
    def jobs(status: str | None, model: str | None, limit: int, offset: int) -> _Call[Page[Job]]:
        def parse(response: httpx.Response) -> Page[Job]:
            body = response.json()
            return Page([Job.from_json(j) for j in body["items"]], body["page"]["next_offset"])

        params = _drop_none({"status": status, "model": model, "limit": limit, "offset": offset})
        return _Call("GET", "/v1/jobs", parse, params=params)

    @staticmethod
    def cancel(job_id: str) -> _Call[Job]:
        return _Call("POST", f"/v1/jobs/{job_id}/cancel", lambda r: Job.from_json(r.json()))

    @staticmethod
    def retry_job(job_id: str) -> _Call[Job]:
        return _Call("POST", f"/v1/jobs/{job_id}/retry", lambda r: Job.from_json(r.json()))

    @staticmethod
    def spectra(query: Mapping[str, Any]) -> _Call[Page[SpectrumSummary]]:
        def parse(response: httpx.Response) -> Page[SpectrumSummary]:
            body = response.json()
            items = [SpectrumSummary.from_json(s) for s in body["items"]]
            return Page(items, body["page"]["next_offset"])

        return _Call("GET", "/v1/spectra", parse, params=_drop_none(query))

    @staticmethod
    def spectrum(spectrum_id: str) -> _Call[Spectrum]:
        return _Call("GET", f"/v1/spectra/{spectrum_id}", lambda r: Spectrum.from_json(r.json()))

    @staticmethod
    def eigenvectors(spectrum_id: str, k: int | None) -> _Call[np.ndarray]:
        params = _drop_none({"k": k, "format": "npy"})
        return _Call("GET", f"/v1/spectra/{spectrum_id}/eigenvectors", _npy, params=params)

    @staticmethod
    def export(job_id: str, k: int | None) -> _Call[bytes]:
        return _Call("GET", f"/v1/jobs/{job_id}/export.npz", lambda r: r.content,
                     params=_drop_none({"k": k}))  # fmt: skip

    @staticmethod
    def compare(
        selections: Sequence[str | Mapping[str, Any]], k: int, max_positions: int,
        seed: int | None = None,
    ) -> _Call[Comparison]:
        body: dict[str, Any] = {"selections": [_selection_json(s) for s in selections], "k": k,
                                "max_positions": max_positions}  # fmt: skip
        if seed is not None:  # only when given: a server from before the option refuses it
            body["seed"] = seed
        return _Call("POST", "/v1/compare", lambda r: Comparison.from_json(r.json()), json=body)

    @staticmethod
    def figure(kind: FigureKind, params: list[tuple[str, Any]]) -> _Call[bytes]:
        return _Call("GET", f"/v1/plots/{kind}.png", lambda r: r.content, params=params)

    @staticmethod
    def models() -> _Call[list[dict[str, Any]]]:
        return _Call("GET", "/v1/models", lambda r: list(r.json()))


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


def _server_and_token(server: str | None, token: str | None) -> tuple[str, str]:
    server = (server or os.environ.get("SPECTRA_SERVER_URL") or DEFAULT_SERVER).rstrip("/")
    token = token or os.environ.get("SPECTRA_TOKEN")
    if not token:
        raise ValueError(
            "give an API key (token=... or SPECTRA_TOKEN); create one with "
            "`spectra keys create --owner NAME --scopes read,submit`"
        )
    return server, token


def _tls_verify(server: str) -> Any:
    """What httpx verifies TLS with. A plain-http server needs no certificates, and loading
    the CA bundle is most of a short command's run (about 1 s on a busy machine); a context
    with no CAs verifies nothing successfully, so a stray https request fails closed."""
    if server.startswith("http://"):
        import ssl

        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


def _eigenvalues_from_npz(data: bytes) -> np.ndarray:
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        # The published layout is ascending; the service's convention is descending.
        return np.ascontiguousarray(archive["eva"][:, ::-1])


class _ProgressBar:
    """tqdm on stderr when asked for, else nothing; tqdm is imported only then."""

    def __init__(self, enabled: bool, job: Job) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            total = job.progress.planned if job.progress else job.n_latents
            self.bar = tqdm(total=total, unit="code", desc=job.id[:8], file=sys.stderr)

    def update(self, job: Job) -> None:
        if self.bar is not None and job.progress is not None:
            self.bar.total = job.progress.planned
            self.bar.n = job.progress.done + job.progress.failed
            self.bar.set_postfix_str(job.status)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- the clients -----------------------------------------------------------------------------


class SpectraClient:
    """Synchronous client. ``server`` defaults to SPECTRA_SERVER_URL, ``token`` to
    SPECTRA_TOKEN. ``transport`` lets tests talk to an app without a socket."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server, token = _server_and_token(server, token)
        self._http = httpx.Client(
            base_url=self.server, headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s, transport=transport, verify=_tls_verify(self.server),
        )  # fmt: skip

    def __enter__(self) -> SpectraClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: _Call[_T]) -> _T:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.json, files=call.files,
                data=call.data, headers=call.headers,
            )  # fmt: skip
        except httpx.HTTPError as error:
            raise ServerUnreachable(0, {"detail": f"cannot reach {self.server}: {error}"}) from None
        if response.status_code >= 400:
            raise error_for(response)
        return call.parse(response)

    # jobs
    def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Submit a JSON spec (the fields of ``POST /v1/jobs``); ``job.created`` is False
        when an identical job already existed (it is returned instead)."""
        return self._run(_Calls.submit(spec, idempotency_key))

    def submit_codes(
        self, codes: np.ndarray, spec: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Job:
        """Submit a job on these codes, shape (n, d), uploaded as .npy (``spec`` without
        ``latents``)."""
        return self._run(_Calls.submit_codes(codes, spec, idempotency_key))

    def job(self, job_id: str) -> Job:
        return self._run(_Calls.job(job_id))

    def jobs(
        self, *, status: str | None = None, model: str | None = None, limit: int = 50,
        offset: int = 0,
    ) -> Page[Job]:  # fmt: skip
        return self._run(_Calls.jobs(status, model, limit, offset))

    def iter_jobs(self, *, status: str | None = None, model: str | None = None) -> Iterator[Job]:
        offset: int | None = 0
        while offset is not None:
            page = self.jobs(status=status, model=model, limit=500, offset=offset)
            yield from page.items
            offset = page.next_offset

    def cancel(self, job_id: str) -> Job:
        return self._run(_Calls.cancel(job_id))

    def retry_job(self, job_id: str) -> Job:
        """Resume a finished job: its failed latents and cancelled chunks are computed again
        (POST /v1/jobs/{id}/retry); the job is queued again."""
        return self._run(_Calls.retry_job(job_id))

    def follow(
        self, job_id: str, *, interval_s: float = 1.0, progress: bool = True,
        timeout_s: float | None = None,
    ) -> Job:  # fmt: skip
        """Poll until the job ends (with a tqdm bar unless ``progress=False``); returns it.
        Raises TimeoutError after ``timeout_s`` with the job still running."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = self.job(job_id)
        bar = _ProgressBar(progress, job)
        try:
            while True:
                bar.update(job)
                if job.finished:
                    return job
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
                time.sleep(interval_s)
                job = self.job(job_id)
        finally:
            bar.close()

    # spectra
    def spectra(
        self, *, job_id: str | None = None, model: str | None = None,
        distance: str | None = None, method: str | None = None,
        order_by: str = "latent_index", limit: int = 50, offset: int = 0,
    ) -> Page[SpectrumSummary]:  # fmt: skip
        query = {"job_id": job_id, "model": model, "distance": distance, "method": method,
                 "order_by": order_by, "limit": limit, "offset": offset}  # fmt: skip
        return self._run(_Calls.spectra(query))

    def spectrum(self, spectrum_id: str) -> Spectrum:
        return self._run(_Calls.spectrum(spectrum_id))

    def eigenvectors(self, spectrum_id: str, *, k: int | None = None) -> np.ndarray:
        """The top-k eigenvectors as a (d, k) array of columns."""
        return self._run(_Calls.eigenvectors(spectrum_id, k))

    def export(self, job_id: str, *, k: int | None = None) -> bytes:
        """The job's spectra as .npz bytes in the published layout (eva ascending)."""
        return self._run(_Calls.export(job_id, k))

    def eigenvalues(self, job_id: str, *, k: int | None = None) -> np.ndarray:
        """The job's eigenvalues as an (N, k) array, descending, in one request."""
        return _eigenvalues_from_npz(self.export(job_id, k=k))

    # comparison and figures
    def compare(
        self, selections: Sequence[str | Mapping[str, Any]], *, k: int = 10,
        max_positions: int = 100, seed: int | None = None,
    ) -> Comparison:  # fmt: skip
        """Selections are job ids, ``MODEL:DISTANCE:METHOD`` texts, or dicts (with ``label``).
        Homogeneity uses at most ``max_positions`` positions, a sample drawn with ``seed``."""
        return self._run(_Calls.compare(selections, k, max_positions, seed))

    def figure(
        self, kind: FigureKind, *, selections: Sequence[str] | None = None,
        spectrum_id: str | None = None, **options: Any,
    ) -> bytes:  # fmt: skip
        """A PNG: "spectrum" / "homogeneity" of selections, or a "montage" of a spectrum
        (options ``axes``, ``steps``; ``max_positions`` for homogeneity)."""
        return self._run(_Calls.figure(kind, _figure_params(kind, selections, spectrum_id, options)))

    def models(self) -> list[dict[str, Any]]:
        return self._run(_Calls.models())


class AsyncSpectraClient:
    """The same operations as ``SpectraClient``, awaited (for asyncio notebooks and apps)."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.server, token = _server_and_token(server, token)
        self._http = httpx.AsyncClient(
            base_url=self.server, headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s, transport=transport, verify=_tls_verify(self.server),
        )  # fmt: skip

    async def __aenter__(self) -> AsyncSpectraClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: _Call[_T]) -> _T:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json, files=call.files,
                data=call.data, headers=call.headers,
            )  # fmt: skip
        except httpx.HTTPError as error:
            raise ServerUnreachable(0, {"detail": f"cannot reach {self.server}: {error}"}) from None
        if response.status_code >= 400:
            raise error_for(response)
        return call.parse(response)

    async def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        return await self._run(_Calls.submit(spec, idempotency_key))

    async def job(self, job_id: str) -> Job:
        return await self._run(_Calls.job(job_id))

    async def jobs(
        self, *, status: str | None = None, model: str | None = None, limit: int = 50,
        offset: int = 0,
    ) -> Page[Job]:  # fmt: skip
        return await self._run(_Calls.jobs(status, model, limit, offset))

    async def cancel(self, job_id: str) -> Job:
        return await self._run(_Calls.cancel(job_id))

    async def retry_job(self, job_id: str) -> Job:
        """Resume a finished job (see the sync client's retry_job)."""
        return await self._run(_Calls.retry_job(job_id))

    async def follow(
        self, job_id: str, *, interval_s: float = 1.0, timeout_s: float | None = None
    ) -> Job:
        import asyncio  # here: the sync client (and the command line) never needs it

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = await self.job(job_id)
        while not job.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
            await asyncio.sleep(interval_s)
            job = await self.job(job_id)
        return job

    async def spectrum(self, spectrum_id: str) -> Spectrum:
        return await self._run(_Calls.spectrum(spectrum_id))

    async def eigenvalues(self, job_id: str, *, k: int | None = None) -> np.ndarray:
        return _eigenvalues_from_npz(await self._run(_Calls.export(job_id, k)))

    async def compare(
        self, selections: Sequence[str | Mapping[str, Any]], *, k: int = 10,
        max_positions: int = 100, seed: int | None = None,
    ) -> Comparison:  # fmt: skip
        return await self._run(_Calls.compare(selections, k, max_positions, seed))
