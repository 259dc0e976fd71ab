"""Analyses of large selections through the real store (SQLite and PostgreSQL): anisotropy of
top-k spectra from the full spectra stored with them, the average metric streamed from the
store in chunks, homogeneity over a seeded sample of positions said and recorded, and memory
that does not hold every position's eigenvectors at once."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence

import numpy as np
import pytest

from services import comparisons as comparison
from services import geometry
from services.comparisons import Selection, compare
from services.config import Settings
from services.store import Store
from tests.scale import synthetic_spectra as synthetic
from tests.support.stores import store_fixture

store = store_fixture("migrated_db_url")


sqlite_store = store_fixture("sqlite_url", name="sqlite_store")


def _settings(**overrides: object) -> Settings:
    return Settings(**{"analysis_device": "cpu", **overrides})  # type: ignore[arg-type]


def _dims_to_reach(values: np.ndarray, level: float) -> np.ndarray:
    """The first rank (1-based) whose cumulative share of the trace reaches ``level``."""
    shares = np.cumsum(values, axis=1) / values.sum(axis=1, keepdims=True)
    ranks: np.ndarray = np.argmax(shares >= level, axis=1) + 1
    return ranks


def test_the_store_reads_the_full_spectra_of_top_k_spectra(store: Store) -> None:
    n, d, k = 5, 12, 4
    job = synthetic.write_job(store, n=n, d=d, k=k, seed=1, without_full=(3,))
    ids = [row.spectrum_id for row in store.selection_rows(job_ids=[job])]
    every, missing = store.full_eigenvalues(list(reversed(ids)), d)  # the order given is kept
    assert missing == [ids[3]]
    for row, index in enumerate(reversed(range(n))):
        if index != 3:
            np.testing.assert_array_equal(
                every[row], synthetic.position(1, index, d, k).eigenvalues
            )


def test_anisotropy_of_top_k_spectra_is_that_of_the_full_spectra(store: Store) -> None:
    n, d, k = 12, 24, 6
    job = synthetic.write_job(store, n=n, d=d, k=k, seed=2)
    result = compare(store, [Selection(job_id=job)], owner=None, settings=_settings())
    anisotropy = result.anisotropy[0]
    full = np.stack([p.eigenvalues for p in synthetic.positions(2, n, d, k)])
    # Known answers from the full eigenvalues, computed here.
    np.testing.assert_array_equal(anisotropy["dims_99"], _dims_to_reach(full, 0.99))
    np.testing.assert_array_equal(anisotropy["dims_999"], _dims_to_reach(full, 0.999))
    assert (anisotropy["dims_99"] > k).all()  # beyond what the stored top k could say
    pr = full.sum(axis=1) ** 2 / (full**2).sum(axis=1)
    np.testing.assert_allclose(anisotropy["participation_ratio"], pr, rtol=1e-12)
    np.testing.assert_allclose(
        anisotropy["top10_share"], full[:, :10].sum(axis=1) / full.sum(axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(anisotropy["mean"], full.mean(axis=0), rtol=1e-12)
    assert anisotropy["rank"] == d and anisotropy["n_positions"] == n
    assert any("full spectra stored with them" in note for note in result.notes)
    assert result.to_json()["selections"][0]["k"] == k  # the stored top k, as before


def test_top_k_spectra_without_full_spectra_keep_the_trace_figures_out(sqlite_store: Store) -> None:
    job = synthetic.write_job(sqlite_store, n=6, d=16, k=4, seed=3, without_full=(2,))
    result = compare(sqlite_store, [Selection(job_id=job)], owner=None, settings=_settings())
    anisotropy = result.anisotropy[0]
    assert anisotropy["dims_99"] is None and anisotropy["participation_ratio"] is None
    assert anisotropy["rank"] == 4
    assert any("1 of 6 recorded no full spectrum" in note for note in result.notes)


def _sampled(store: Store, job: str, seed: int, max_pairs: int = 90) -> comparison.Comparison:
    return compare(
        store,
        [Selection(job_id=job)],
        owner=None,
        seed=seed,
        settings=_settings(homogeneity_max_pairs=max_pairs),
    )


def test_homogeneity_over_a_seeded_sample_of_positions(sqlite_store: Store) -> None:
    n, d, k = 30, 16, 6
    job = synthetic.write_job(sqlite_store, n=n, d=d, k=k, seed=4)
    result = _sampled(sqlite_store, job, seed=7)
    h = result.homogeneity[0]
    assert h is not None
    assert (h["sampled"], h["seed"], h["n_positions_total"]) == (True, 7, n)
    assert (h["n_positions_used"], h["n_pairs"], h["limited_by"]) == (10, 90, "max_pairs")
    positions = np.asarray(h["positions"])
    assert positions.shape == (10,) and len(set(positions.tolist())) == 10
    # Exactly those positions: their matrix recomputed from the arrays written.
    values = np.stack([synthetic.position(4, int(i), d, k).eigenvalues[:k] for i in positions])
    expected = geometry.homogeneity(values, synthetic.stored_vectors(4, positions, d, k))
    np.testing.assert_allclose(h["log"], expected["log"], rtol=1e-12)
    np.testing.assert_allclose(h["linear"], expected["linear"], rtol=1e-12)
    assert h["log_offdiag_mean"] == pytest.approx(expected["log_offdiag_mean"], rel=1e-12)
    (note,) = [note for note in result.notes if "homogeneity" in note]
    assert "random sample of 10 of 30 positions (seed 7" in note
    assert "SPECTRA_HOMOGENEITY_MAX_PAIRS" in note
    # Recorded in the JSON result (the default one, without matrices).
    recorded = result.to_json()["selections"][0]["homogeneity"]
    assert recorded["sampled"] is True and recorded["positions"] == positions.tolist()
    assert "log" not in recorded

    again = _sampled(sqlite_store, job, seed=7).homogeneity[0]
    assert again is not None
    np.testing.assert_array_equal(again["positions"], positions)
    np.testing.assert_array_equal(again["log"], h["log"])
    other = _sampled(sqlite_store, job, seed=8).homogeneity[0]
    assert other is not None and not np.array_equal(other["positions"], positions)


def test_homogeneity_over_every_position_when_the_pairs_fit(sqlite_store: Store) -> None:
    n, d, k = 30, 16, 6
    job = synthetic.write_job(sqlite_store, n=n, d=d, k=k, seed=5)
    h = _sampled(sqlite_store, job, seed=0, max_pairs=n * (n - 1)).homogeneity[0]
    assert h is not None and h["sampled"] is False and h["n_positions_used"] == n
    np.testing.assert_array_equal(h["positions"], np.arange(n))
    values = np.stack([p.eigenvalues[:k] for p in synthetic.positions(5, n, d, k)])
    expected = geometry.homogeneity(values, synthetic.stored_vectors(5, range(n), d, k))
    np.testing.assert_allclose(h["log"], expected["log"], rtol=1e-12)
    # The request's max_positions caps it too, and the note names it.
    capped = compare(
        sqlite_store, [Selection(job_id=job)], owner=None, max_positions=5, settings=_settings()
    )
    h = capped.homogeneity[0]
    assert h is not None and h["limited_by"] == "max_positions" and h["n_positions_used"] == 5
    assert any("max_positions = 5" in note for note in capped.notes)


def test_the_streamed_average_metric_is_that_of_every_position(sqlite_store: Store) -> None:
    n, d, k = 40, 12, 5
    job = synthetic.write_job(sqlite_store, n=n, d=d, k=k, seed=6)
    (loaded,) = comparison.compare(
        sqlite_store, [Selection(job_id=job)], owner=None, settings=_settings()
    ).selections
    # A tiny chunk: 3 positions per read (12 * 5 float64 = 480 bytes each).
    streamed = comparison.average_metric(sqlite_store, loaded, chunk_mb=3 * 480 / 2**20)
    values = np.stack([p.eigenvalues[:k] for p in synthetic.positions(6, n, d, k)])
    whole = geometry.average_metric(values, synthetic.stored_vectors(6, range(n), d, k))
    np.testing.assert_allclose(streamed[0], whole[0], rtol=0, atol=1e-12 * np.abs(whole[0]).max())
    np.testing.assert_allclose(streamed[1], whole[1], rtol=0, atol=1e-12 * whole[1][0])


def test_cuda_asked_for_without_cuda_says_which_setting_to_change(sqlite_store: Store) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    job = synthetic.write_job(sqlite_store, n=3, d=8, k=8, seed=7)
    with pytest.raises(geometry.InvalidOptionError, match="SPECTRA_ANALYSIS_DEVICE=cpu"):
        compare(
            sqlite_store,
            [Selection(job_id=job)],
            owner=None,
            settings=_settings(analysis_device="cuda"),
        )


class CountingStore(Store):
    """The real store, remembering how many positions' eigenvectors each read returned."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.vector_reads: list[int] = []

    def top_k_eigenvectors(self, spectrum_ids: Sequence[str], k: int) -> np.ndarray:
        vectors = super().top_k_eigenvectors(spectrum_ids, k)
        self.vector_reads.append(vectors.shape[0])
        return vectors


def test_a_large_selection_never_holds_every_positions_eigenvectors(sqlite_url: str) -> None:
    """400 positions, top 128 of d = 256 (float32): their eigenvectors at once are 52 MB
    (105 MB as float64). The comparison of the selection with itself (anisotropy,
    homogeneity, both average metrics for the alignment) reads them a few positions at a
    time and stays well below that in Python-tracked memory (numpy's arrays; what remains
    is the fixed-size work of the alignment baseline and the positions' bootstrap), and its
    average metric is that of every position, not of the first ones."""
    n, d, k = 400, 256, 128
    store = CountingStore(sqlite_url)
    store.migrate()
    job = synthetic.write_job(store, n=n, d=d, k=k, seed=8)
    at_once = n * d * k * 4
    # 2 MB chunks: 8 positions per read. Three sampled positions keep the homogeneity
    # bootstrap's fixed-size work array (statistics.py) out of the figure.
    settings = _settings(homogeneity_max_pairs=6, analysis_chunk_mb=2.0)
    selections = [Selection(job_id=job), Selection(job_id=job, label="again")]
    tracemalloc.start()
    try:
        result = compare(store, selections, owner=None, k=5, settings=settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20 < at_once * 2 / 3, f"peak {peak / 2**20:.1f} MiB"
    # Homogeneity read its 3 positions per selection; each average metric all 400, 8 at a time.
    assert max(store.vector_reads) == 8 and sum(store.vector_reads) == 2 * 3 + 2 * n
    (alignment,) = result.alignments
    np.testing.assert_allclose(alignment["principal_angles_deg"], 0, atol=1e-4)
    h = result.homogeneity[0]
    assert h is not None and h["sampled"] is True and h["n_positions_used"] == 3
    assert result.anisotropy[0]["n_positions"] == n
    # The axes compared are those of every position's average metric (computed here in
    # numpy, one position at a time).
    total = np.zeros((d, d))
    for p in synthetic.positions(8, n, d, k):
        vectors = p.eigenvectors.astype(np.float64)
        total += (vectors * p.eigenvalues[:k]) @ vectors.T
    (loaded, _) = result.selections
    streamed = comparison.average_metric(store, loaded, chunk_mb=2.0)
    np.testing.assert_allclose(streamed[0], total / n, rtol=0, atol=1e-12 * np.abs(total / n).max())
    store.close()
