"""GAN-Geometry's npz layouts through the key map, and our export read back the way the
published analysis code reads its files (np.load per file, eva_BP / evc_BP / feat keys)."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import numpy as np
import pytest

from services import export
from services.config import Settings
from services.geometry import average_metric
from services.store import Store
from tests.support.stores import store_fixture

MAX_ARRAY_BYTES = Settings().max_array_bytes  # the default limit


def _published_file(
    rng: np.random.Generator, d: int, suffix: str = "BP"
) -> tuple[bytes, np.ndarray]:
    """One position as GAN-Geometry saves it: eigh of a float32 H (ascending), H itself and
    the code as a (1, d) array."""
    a = rng.standard_normal((d, d)).astype(np.float32)
    hessian = a @ a.T
    eva, evc = np.linalg.eigh(hessian)
    feat = rng.standard_normal((1, d)).astype(np.float32)
    buffer = io.BytesIO()
    savez: Any = np.savez  # (numpy's stubs reject a **dict of arrays)
    savez(buffer, **{f"eva_{suffix}": eva, f"evc_{suffix}": evc, f"H_{suffix}": hessian}, feat=feat)
    return buffer.getvalue(), hessian


def test_per_position_bp_files_import_as_one_descending_set() -> None:
    rng = np.random.default_rng(0)
    files = [(f"Hess_BP_{i}.npz", _published_file(rng, 6)) for i in (3, 7, 11)]
    published, sha = export.combine(
        [(name, data) for name, (data, _) in files], max_array_bytes=MAX_ARRAY_BYTES
    )
    assert published.eigenvalues.shape == (3, 6) and published.eigenvectors.shape == (3, 6, 6)
    assert np.all(np.diff(published.eigenvalues, axis=1) <= 0)  # ours: descending
    assert published.meta["latent_indices"] == [3, 7, 11]
    assert published.meta["method"] == "gan-geometry-bp"
    assert published.meta["dtype"] == "float32"
    assert published.codes is not None and published.codes.shape == (3, 6)
    for row, (_, (_, hessian)) in enumerate(files):
        vectors, values = published.eigenvectors[row], published.eigenvalues[row]
        rebuilt = (vectors * values) @ vectors.T
        assert np.allclose(rebuilt, hessian, rtol=1e-4, atol=1e-4)
    again, sha_again = export.combine(
        [(name, data) for name, (data, _) in files], max_array_bytes=MAX_ARRAY_BYTES
    )
    assert sha_again == sha and len(sha) == 64


def test_lanczos_suffixes_are_sorted_and_keep_their_own_method_name() -> None:
    rng = np.random.default_rng(1)
    eva = np.array([5.0, 1.0, 3.0])  # Lanczos output need not be ascending
    evc = np.linalg.qr(rng.standard_normal((8, 3)))[0]
    buffer = io.BytesIO()
    np.savez(buffer, eva_BI=eva, evc_BI=evc, feat=rng.standard_normal(8))
    published = export.from_npz_bytes(buffer.getvalue(), max_array_bytes=MAX_ARRAY_BYTES)
    assert published.eigenvalues[0].tolist() == [5.0, 3.0, 1.0]
    assert np.allclose(published.eigenvectors[0][:, 0], evc[:, 0])
    assert np.allclose(published.eigenvectors[0][:, 2], evc[:, 1])
    assert published.meta["method"] == "gan-geometry-backward-iter"
    buffer = io.BytesIO()
    np.savez(buffer, eva_FI=eva, evc_FI=evc)
    assert (
        export.from_npz_bytes(buffer.getvalue(), max_array_bytes=MAX_ARRAY_BYTES).meta["method"]
        == "gan-geometry-forward-iter"
    )


def test_files_that_are_not_spectra_are_refused_saying_what_they_are() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, H_avg=np.eye(3), eva_avg=np.ones(3), evc_avg=np.eye(3), feats=np.ones((2, 3)))
    with pytest.raises(export.ExportFormatError, match="average metric"):
        export.from_npz_bytes(buffer.getvalue(), max_array_bytes=MAX_ARRAY_BYTES)
    buffer = io.BytesIO()
    np.savez(buffer, something=np.ones(3))
    with pytest.raises(export.ExportFormatError, match="eva_BP/evc_BP/feat"):
        export.from_npz_bytes(buffer.getvalue(), max_array_bytes=MAX_ARRAY_BYTES)


def _read_like_the_published_pipeline(
    archive: bytes,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """What GAN-Geometry's scan_hess_npz does with a directory of Hess_BP_<i>.npz: the files
    whose names match the pattern, data["eva_BP"], data["evc_BP"], data["feat"] each."""
    pattern = re.compile(r"Hess_BP_(\d*).npz")
    values, vectors, feats = [], [], []
    with zipfile.ZipFile(io.BytesIO(archive)) as files:
        for name in files.namelist():
            if not pattern.findall(name):
                continue
            with np.load(io.BytesIO(files.read(name))) as data:
                values.append(data["eva_BP"])
                vectors.append(data["evc_BP"])
                feats.append(data["feat"])
    return np.array(values), vectors, np.array(tuple(feats)).squeeze()


def test_gan_geometry_export_is_read_by_the_published_keys() -> None:
    rng = np.random.default_rng(2)
    values = np.sort(rng.uniform(0.1, 5, size=(4, 5)), axis=1)[:, ::-1]
    vectors = np.stack([np.linalg.qr(rng.standard_normal((5, 5)))[0] for _ in range(4)])
    codes = rng.standard_normal((4, 5))
    ours = export.PublishedSpectra(values, vectors, codes, {"latent_indices": [0, 1, 2, 5]})
    archive = export.to_gan_geometry_zip(ours)
    with zipfile.ZipFile(io.BytesIO(archive)) as files:
        assert sorted(files.namelist()) == [f"Hess_BP_{i}.npz" for i in (0, 1, 2, 5)]
    eva_col, evc_col, feat_col = _read_like_the_published_pipeline(archive)
    assert np.all(np.diff(eva_col, axis=1) >= 0)  # ascending, as eigh gives
    # The published average_H: mean of evc diag(eva) evcᵀ, then eigh (ascending).
    published_average = np.mean([(v * e) @ v.T for e, v in zip(eva_col, evc_col, strict=True)], 0)
    mean, _, _ = average_metric(values, vectors)
    assert np.allclose(published_average, mean)
    assert np.allclose(np.sort(feat_col, axis=0), np.sort(codes, axis=0))
    # ... and it comes back through our own reader, per-position, in order.
    with zipfile.ZipFile(io.BytesIO(archive)) as files:
        again, _ = export.combine(
            [(n, files.read(n)) for n in files.namelist()], max_array_bytes=MAX_ARRAY_BYTES
        )
    assert again.meta["latent_indices"] == [0, 1, 2, 5]
    assert again.codes is not None and np.allclose(again.codes, codes)
    assert np.allclose(again.eigenvalues, values)


def test_the_stacked_export_keeps_its_own_checks() -> None:
    values = np.array([[3.0, 2.0, 1.0]])
    vectors = np.eye(3)[None]
    data = export.to_npz_bytes(export.PublishedSpectra(values, vectors, None, {"model": "m"}))
    back = export.from_npz_bytes(data, max_array_bytes=MAX_ARRAY_BYTES)
    assert np.array_equal(back.eigenvalues, values) and "source_layout" not in back.meta
    buffer = io.BytesIO()
    np.savez(buffer, eva=np.array([[3.0, 2.0, 1.0]]), evc=vectors)
    with pytest.raises(export.ExportFormatError, match="ascending"):
        export.from_npz_bytes(buffer.getvalue(), max_array_bytes=MAX_ARRAY_BYTES)


# --------------------------------------------------------------------------- interop: range, contents


store = store_fixture("sqlite_url")


def _spectra(n: int, d: int, k: int, seed: int) -> export.PublishedSpectra:
    rng = np.random.default_rng(seed)
    values = np.sort(rng.uniform(0.1, 5, size=(n, k)), axis=1)[:, ::-1].copy()
    vectors = np.stack([np.linalg.qr(rng.standard_normal((d, d)))[0][:, :k] for _ in range(n)])
    return export.PublishedSpectra(values, vectors, rng.standard_normal((n, d)), {})


def _stored_eigenvalues(store: Store, job_id: str) -> np.ndarray:
    return np.stack(
        [
            np.asarray(r.eigenvalues)
            for r in store.list_spectra(job_id=job_id, order_by="latent_index")
        ]
    )


def test_a_zero_one_image_range_rescales_mse_eigenvalues_by_four_and_is_recorded(
    store: Store,
) -> None:
    published = _spectra(3, 5, 5, seed=4)
    names = {"model": "dcgan-faces", "distance": "mse", "method": "gan-geometry-bp"}
    as_is, _ = export.import_job(store, "alice", published, source_sha256="f" * 64, **names)
    zero_one, created = export.import_job(
        store, "alice", published, source_sha256="f" * 64, image_range="[0,1]", **names
    )
    assert created and zero_one.id != as_is.id  # a different reading of the same file
    assert np.allclose(
        _stored_eigenvalues(store, zero_one.id), 4 * _stored_eigenvalues(store, as_is.id)
    )
    assert (
        zero_one.resolved["image_range"] == "[0,1]" and zero_one.resolved["eigenvalue_scale"] == 4.0
    )
    assert "image_range" not in as_is.resolved
    with pytest.raises(export.ExportFormatError, match="only for mse"):
        export.import_job(
            store,
            "alice",
            published,
            source_sha256="f" * 64,
            image_range="[0,1]",
            **{**names, "distance": "lpips-alex"},
        )
    with pytest.raises(export.ExportFormatError, match=r"\[-1,1\], \[0,1\]"):
        export.import_job(
            store, "alice", published, source_sha256="f" * 64, image_range="[0,255]", **names
        )


def _published_average_h(eva: np.ndarray, evc: np.ndarray) -> np.ndarray:
    """GAN-Geometry's average_H as its code does it: an average of shape (eva's k, k) to which
    each position's evc diag(eva) evcᵀ (d, d) is added."""
    total = np.zeros((eva.shape[1], eva.shape[1]))
    for values, vectors in zip(eva, evc, strict=True):
        total += (vectors * values[np.newaxis, :]) @ vectors.T
    return total / len(evc)


def test_an_exports_meta_says_what_it_holds_and_what_average_h_takes(store: Store) -> None:
    names = {"model": "dcgan-faces", "distance": "mse", "method": "jacobian"}
    full, _ = export.import_job(
        store, "alice", _spectra(3, 5, 5, seed=5), source_sha256="a" * 64, **names
    )
    top, _ = export.import_job(
        store, "alice", _spectra(3, 5, 2, seed=6), source_sha256="b" * 64, **names
    )
    full_export = export.export_job(store, full.id)
    top_export = export.export_job(store, top.id)
    assert full_export.meta["contents"]["eigenpairs"] == "all"
    assert full_export.meta["contents"]["gan_geometry"]["average_H"] == "takes it"
    assert top_export.meta["contents"]["eigenpairs"] == "top 2 of 5"
    assert "does not take it" in top_export.meta["contents"]["gan_geometry"]["average_H"]
    assert full_export.meta["image_range"] == "[-1,1]"
    # ... and that is what the published average_H does with each, read from the stacked file.
    for exported, works in ((full_export, True), (top_export, False)):
        with np.load(io.BytesIO(export.to_npz_bytes(exported))) as data:
            eva, evc = data["eva"], data["evc"]
        if works:
            assert np.allclose(
                _published_average_h(eva, evc),
                average_metric(exported.eigenvalues, exported.eigenvectors)[0],
            )
        else:
            with pytest.raises(ValueError):
                _published_average_h(eva, evc)
