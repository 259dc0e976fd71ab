"""``SpectraClient``: the synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
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


class SpectraClient:
    """Synchronous client. ``server`` defaults to SPECTRA_SERVER_URL, ``token`` to
    SPECTRA_TOKEN (``api.client.settings``). ``transport`` lets tests talk to an app without
    a socket."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = ClientSettings.from_environment(server=server, token=token)
        self.server = settings.server
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {settings.require_token()}"},
            timeout=timeout_s,
            transport=transport,
            verify=tls_verify(self.server),
        )

    def __enter__(self) -> SpectraClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: Call[_T]) -> _T:
        try:
            response = self._http.request(call.method, call.path, **request_options(call))
        except httpx.HTTPError as error:
            raise ServerUnreachable(0, {"detail": f"cannot reach {self.server}: {error}"}) from None
        return answer(call, response)

    # jobs
    def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Submit a JSON spec (the fields of ``POST /v1/jobs``); ``job.created`` is False
        when an identical job already existed (it is returned instead)."""
        return self._run(calls.submit(spec, idempotency_key))

    def submit_codes(
        self, codes: np.ndarray, spec: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Job:
        """Submit a job on these codes, shape (n, d), uploaded as .npy (``spec`` without
        ``latents``)."""
        return self._run(calls.submit_codes(codes, spec, idempotency_key))

    def job(self, job_id: str) -> Job:
        return self._run(calls.job(job_id))

    def jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Job]:
        return self._run(calls.jobs(status, model, limit, offset))

    def iter_jobs(self, *, status: str | None = None, model: str | None = None) -> Iterator[Job]:
        """Every job, page after page."""
        offset: int | None = 0
        while offset is not None:
            page = self.jobs(status=status, model=model, limit=500, offset=offset)
            yield from page.items
            offset = page.next_offset

    def cancel(self, job_id: str) -> Job:
        return self._run(calls.cancel(job_id))

    def retry_job(self, job_id: str) -> Job:
        """Resume a finished job: its failed latents and cancelled chunks are computed again
        (POST /v1/jobs/{id}/retry); the job is queued again."""
        return self._run(calls.retry_job(job_id))

    def follow(
        self,
        job_id: str,
        *,
        interval_s: float = 1.0,
        progress: bool = True,
        timeout_s: float | None = None,
    ) -> Job:
        """Poll until the job ends (with a progress display unless ``progress=False``); returns
        it. Raises TimeoutError after ``timeout_s`` with the job still running."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = self.job(job_id)
        display = job_progress(progress, job)
        try:
            while True:
                show_progress(display, job)
                if job.finished:
                    return job
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
                time.sleep(interval_s)
                job = self.job(job_id)
        finally:
            display.close()

    # spectra
    def spectra(
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
        return self._run(calls.spectra(query))

    def spectrum(self, spectrum_id: str) -> Spectrum:
        return self._run(calls.spectrum(spectrum_id))

    def eigenvectors(self, spectrum_id: str, *, k: int | None = None) -> np.ndarray:
        """The top-k eigenvectors as a (d, k) array of columns."""
        return self._run(calls.eigenvectors(spectrum_id, k))

    def export(self, job_id: str, *, k: int | None = None) -> bytes:
        """The job's spectra as .npz bytes in the published layout (eva ascending)."""
        return self._run(calls.export(job_id, k))

    def eigenvalues(self, job_id: str, *, k: int | None = None) -> np.ndarray:
        """The job's eigenvalues as an (N, k) array, descending, in one request."""
        return calls.eigenvalues_from_npz(self.export(job_id, k=k))

    def import_npz(
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
        return self._run(calls.import_npz(data, overrides))

    # comparison and figures
    def compare(
        self,
        selections: Sequence[str | Mapping[str, Any]],
        *,
        k: int = 10,
        max_positions: int = 100,
        seed: int | None = None,
        transport: str | None = None,
    ) -> Comparison:
        """Selections are job ids, ``MODEL:DISTANCE:METHOD`` or ``MODEL::sefa`` texts, or dicts
        (with ``label``). Homogeneity uses at most ``max_positions`` positions, a sample drawn
        with ``seed``. ``transport`` (w+->w, w->w+, w->z) aligns members of different spaces
        of one model (docs/conventions.md)."""
        return self._run(calls.compare(selections, k, max_positions, seed, transport))

    def figure(
        self,
        kind: FigureKind,
        *,
        selections: Sequence[str] | None = None,
        spectrum_id: str | None = None,
        **options: Any,
    ) -> bytes:
        """A PNG: "spectrum" / "homogeneity" of selections, or a "montage" of a spectrum
        (options ``axes``, ``steps``; ``max_positions`` for homogeneity)."""
        return self._run(calls.figure(kind, selections, spectrum_id, options))

    def models(self) -> list[ModelInfo]:
        return self._run(calls.models())

    # campaigns
    def submit_campaign(self, spec: Mapping[str, Any]) -> Campaign:
        """Submit a campaign (the fields of ``POST /v1/campaigns``); its members run on the
        server's workers. ``created`` is False when the same campaign already existed."""
        return self._run(calls.submit_campaign(spec))

    def campaign(self, campaign_id: str) -> Campaign:
        return self._run(calls.campaign(campaign_id))

    def campaigns(self, *, tag: str | None = None) -> list[Campaign]:
        return self._run(calls.campaigns(tag))

    def cancel_campaign(self, campaign_id: str) -> Campaign:
        return self._run(calls.cancel_campaign(campaign_id))

    def compare_campaign(self, campaign_id: str, **options: Any) -> StoredComparison:
        """Submit the campaign's comparison: ONE stored comparison over its members with results
        (options: k, max_positions, seed, include_partial, formats, normalise, montages); the
        view's ``raw["skipped"]`` names the members left out. Follow it with
        ``follow_comparison``."""
        return self._run(comparisons.campaign(campaign_id, options))

    # stored comparisons
    def submit_comparison(
        self, selections: Sequence[str | Mapping[str, Any]], **options: Any
    ) -> StoredComparison:
        """Submit a stored comparison (options: k, max_positions, seed, formats, normalise,
        montages, transport); the same request over the same spectra returns the stored one."""
        return self._run(comparisons.submit(selections, options))

    def comparison(self, comparison_id: str) -> StoredComparison:
        return self._run(comparisons.get(comparison_id))

    def comparisons(self, *, limit: int = 50) -> list[StoredComparison]:
        return self._run(comparisons.listing(limit))

    def cancel_comparison(self, comparison_id: str) -> StoredComparison:
        return self._run(comparisons.cancel(comparison_id))

    def comparison_figure(self, comparison_id: str, name: str) -> bytes:
        return self._run(comparisons.figure(comparison_id, name))

    def follow_comparison(
        self, comparison_id: str, *, interval_s: float = 1.0, timeout_s: float | None = None
    ) -> StoredComparison:
        """Poll until the comparison ends; TimeoutError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not (stored := self.comparison(comparison_id)).finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"comparison {comparison_id} still {stored.status}")
            time.sleep(interval_s)
        return stored
