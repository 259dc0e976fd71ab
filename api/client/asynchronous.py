"""``AsyncSpectraClient``: every operation of ``SpectraClient``, awaited (for asyncio notebooks
and apps). ``tests/ui/test_client.py`` holds the two to the same methods and signatures."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from api.client import calls, comparisons
from api.client.calls import Call, FigureKind, answer, request_options
from api.client.comparisons import StoredComparison
from api.client.errors import ServerUnreachable
from api.client.progress import job_progress, show_progress
from api.client.settings import ClientSettings, tls_verify
from api.client.views import Campaign, Comparison, Job, ModelInfo, Page, Spectrum, SpectrumSummary

if TYPE_CHECKING:
    import numpy as np

_T = TypeVar("_T")


class AsyncSpectraClient:
    """The same operations as ``SpectraClient``, awaited; ``iter_jobs`` is an async iterator
    and ``aclose`` closes it (``async with`` does so)."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings = ClientSettings.from_environment(server=server, token=token)
        self.server = settings.server
        self._http = httpx.AsyncClient(
            base_url=self.server,
            headers={"Authorization": f"Bearer {settings.require_token()}"},
            timeout=timeout_s,
            transport=transport,
            verify=tls_verify(self.server),
        )

    async def __aenter__(self) -> AsyncSpectraClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: Call[_T]) -> _T:
        try:
            response = await self._http.request(call.method, call.path, **request_options(call))
        except httpx.HTTPError as error:
            raise ServerUnreachable(0, {"detail": f"cannot reach {self.server}: {error}"}) from None
        return answer(call, response)

    # jobs
    async def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        return await self._run(calls.submit(spec, idempotency_key))

    async def submit_codes(
        self, codes: np.ndarray, spec: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Job:
        return await self._run(calls.submit_codes(codes, spec, idempotency_key))

    async def job(self, job_id: str) -> Job:
        return await self._run(calls.job(job_id))

    async def jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Job]:
        return await self._run(calls.jobs(status, model, limit, offset))

    async def iter_jobs(
        self, *, status: str | None = None, model: str | None = None
    ) -> AsyncIterator[Job]:
        offset: int | None = 0
        while offset is not None:
            page = await self.jobs(status=status, model=model, limit=500, offset=offset)
            for job in page.items:
                yield job
            offset = page.next_offset

    async def cancel(self, job_id: str) -> Job:
        return await self._run(calls.cancel(job_id))

    async def retry_job(self, job_id: str) -> Job:
        """Resume a finished job (see the sync client's retry_job)."""
        return await self._run(calls.retry_job(job_id))

    async def follow(
        self,
        job_id: str,
        *,
        interval_s: float = 1.0,
        progress: bool = True,
        timeout_s: float | None = None,
    ) -> Job:
        import asyncio  # here: the sync client (and the command line) never needs it

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = await self.job(job_id)
        display = job_progress(progress, job)
        try:
            while True:
                show_progress(display, job)
                if job.finished:
                    return job
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
                await asyncio.sleep(interval_s)
                job = await self.job(job_id)
        finally:
            display.close()

    # spectra
    async def spectra(
        self,
        *,
        job_id: str | None = None,
        model: str | None = None,
        distance: str | None = None,
        method: str | None = None,
        order_by: str = "latent_index",
        limit: int = 50,
        offset: int = 0,
    ) -> Page[SpectrumSummary]:
        query = {
            "job_id": job_id,
            "model": model,
            "distance": distance,
            "method": method,
            "order_by": order_by,
            "limit": limit,
            "offset": offset,
        }
        return await self._run(calls.spectra(query))

    async def spectrum(self, spectrum_id: str) -> Spectrum:
        return await self._run(calls.spectrum(spectrum_id))

    async def eigenvectors(self, spectrum_id: str, *, k: int | None = None) -> np.ndarray:
        return await self._run(calls.eigenvectors(spectrum_id, k))

    async def export(self, job_id: str, *, k: int | None = None) -> bytes:
        return await self._run(calls.export(job_id, k))

    async def eigenvalues(self, job_id: str, *, k: int | None = None) -> np.ndarray:
        return calls.eigenvalues_from_npz(await self.export(job_id, k=k))

    async def import_npz(
        self,
        data: bytes,
        *,
        model: str | None = None,
        distance: str | None = None,
        method: str | None = None,
    ) -> Job:
        """Store a published-layout .npz (``export`` of this or another service, or
        GAN-Geometry's files combined) as a finished job of this key's owner; ``created`` is
        False when the same file was imported before. The three names override the file's."""
        overrides = {"model": model, "distance": distance, "method": method}
        return await self._run(calls.import_npz(data, overrides))

    # comparison and figures
    async def compare(
        self,
        selections: Sequence[str | Mapping[str, Any]],
        *,
        k: int = 10,
        max_positions: int = 100,
        seed: int | None = None,
        transport: str | None = None,
    ) -> Comparison:
        return await self._run(calls.compare(selections, k, max_positions, seed, transport))

    async def figure(
        self,
        kind: FigureKind,
        *,
        selections: Sequence[str] | None = None,
        spectrum_id: str | None = None,
        **options: Any,
    ) -> bytes:
        return await self._run(calls.figure(kind, selections, spectrum_id, options))

    async def models(self) -> list[ModelInfo]:
        return await self._run(calls.models())

    # campaigns
    async def submit_campaign(self, spec: Mapping[str, Any]) -> Campaign:
        """Submit a campaign (the fields of ``POST /v1/campaigns``); its members run on the
        server's workers. ``created`` is False when the same campaign already existed."""
        return await self._run(calls.submit_campaign(spec))

    async def campaign(self, campaign_id: str) -> Campaign:
        return await self._run(calls.campaign(campaign_id))

    async def campaigns(self, *, tag: str | None = None) -> list[Campaign]:
        return await self._run(calls.campaigns(tag))

    async def cancel_campaign(self, campaign_id: str) -> Campaign:
        return await self._run(calls.cancel_campaign(campaign_id))

    async def compare_campaign(self, campaign_id: str, **options: Any) -> StoredComparison:
        """Submit the campaign's comparison: ONE stored comparison over its members with results
        (options: k, max_positions, seed, include_partial, formats, normalise, montages); the
        view's ``raw["skipped"]`` names the members left out. Follow it with
        ``follow_comparison``."""
        return await self._run(comparisons.campaign(campaign_id, options))

    # stored comparisons
    async def submit_comparison(
        self, selections: Sequence[str | Mapping[str, Any]], **options: Any
    ) -> StoredComparison:
        return await self._run(comparisons.submit(selections, options))

    async def comparison(self, comparison_id: str) -> StoredComparison:
        return await self._run(comparisons.get(comparison_id))

    async def comparisons(self, *, limit: int = 50) -> list[StoredComparison]:
        return await self._run(comparisons.listing(limit))

    async def cancel_comparison(self, comparison_id: str) -> StoredComparison:
        return await self._run(comparisons.cancel(comparison_id))

    async def comparison_figure(self, comparison_id: str, name: str) -> bytes:
        return await self._run(comparisons.figure(comparison_id, name))

    async def follow_comparison(
        self, comparison_id: str, *, interval_s: float = 1.0, timeout_s: float | None = None
    ) -> StoredComparison:
        import asyncio

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not (stored := await self.comparison(comparison_id)).finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"comparison {comparison_id} still {stored.status}")
            await asyncio.sleep(interval_s)
        return stored
