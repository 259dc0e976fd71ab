"""Store benchmark: one 512×512 float32 spectrum on PostgreSQL over loopback.

Measures, as medians over repeats in one run: write time (save_spectrum: validation, sha256,
one transaction), full eigenvector read, top-10 eigenvector read (a substr slice), metadata
read, and the size on disk per spectrum (pg_total_relation_size deltas of every store table,
TOAST and indexes included) against the raw bytes of its arrays.

    .venv/bin/python bench/bench_store.py [--repeats 50] [--d 512]

Targets (issue 3): write <= 10 ms, full read <= 5 ms, top-10 read <= 1 ms, size within 5 %.
Uses a throw-away database on SPECTRA_BENCH_PG_ADMIN (default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import text

from services.store import ChunkPlan, Store
from services.store.codecs import sha256_hex
from services.store.queries import _ONE_VECTOR_SQL_POSTGRES
from services.store.results import (
    _COUNT_SPECTRUM_SQL,
    _INSERT_SPECTRUM_SQL,
    SpectrumToSave,
    _prepared,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import Table, write_results  # noqa: E402

ADMIN_DSN = os.environ.get(
    "SPECTRA_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TABLES = ("spectra", "eigenvectors")
TARGETS = {"write_ms": 10.0, "full_read_ms": 5.0, "top10_read_ms": 1.0, "size_overhead_pct": 5.0}


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def _disk_bytes(store: Store) -> int:
    with store.engine.connect() as conn:
        return sum(
            int(conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar_one())
            for t in TABLES
        )


def _arrays(d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((d, d)).astype(np.float32)  # stands in for an orthonormal U
    eigenvalues = np.sort(rng.exponential(size=d))[::-1].copy()
    return rng.standard_normal(d), eigenvalues, vectors


class _PlainPsycopg:
    """The floor on this machine, measured alternately with the store so both see the same
    load: plain psycopg on one bytea column with the same storage (EXTERNAL), one committed
    INSERT per spectrum (no checksum, no metadata), binary-format SELECTs."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url.replace("+psycopg", ""))
        self.conn.execute("CREATE TABLE raw_blobs (id int PRIMARY KEY, data bytea NOT NULL)")
        self.conn.execute("ALTER TABLE raw_blobs ALTER COLUMN data SET STORAGE EXTERNAL")
        self.conn.commit()
        self.reader = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)
        self.cursor = self.reader.cursor(binary=True)

    def insert(self, index: int, data: bytes) -> None:
        self.conn.execute("INSERT INTO raw_blobs VALUES (%s, %s)", (index, data))
        self.conn.commit()

    def select(self, index: int) -> bytes:
        row = self.cursor.execute("SELECT data FROM raw_blobs WHERE id = %s", (index,)).fetchone()
        return bytes(row[0]) if row else b""

    def substr(self, index: int, length: int) -> bytes:
        row = self.cursor.execute(
            "SELECT substr(data, 1, %s) FROM raw_blobs WHERE id = %s", (length, index)
        ).fetchone()
        return bytes(row[0]) if row else b""

    def close(self) -> None:
        self.conn.close()
        self.reader.close()


class _StoreSqlOnPsycopg:
    """The store's own statements on its own tables, run by plain psycopg with everything
    prepared beforehand (row, bytes, sha256) and one kept connection and cursor: what the
    schema costs, so that store / this is what the store's code adds per call."""

    def __init__(self, url: str) -> None:
        self.insert_sql, self.count_sql = _INSERT_SPECTRUM_SQL, _COUNT_SPECTRUM_SQL
        self.conn = psycopg.connect(url.replace("+psycopg", ""))
        self.reader = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)
        self.cursor = self.reader.cursor(binary=True)

    def save(self, insert: dict[str, Any], count: dict[str, Any]) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(self.insert_sql, insert)
            cursor.execute(self.count_sql, count)
        self.conn.commit()

    def top(self, spectrum_id: str, k: int) -> bytes:
        row = self.cursor.execute(_ONE_VECTOR_SQL_POSTGRES, {"k": k, "id": spectrum_id}).fetchone()
        return bytes(row[4]) if row else b""

    def close(self) -> None:
        self.conn.close()
        self.reader.close()


def _spectrum(
    job_id: str, index: int, arrays: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> SpectrumToSave:
    code, eigenvalues, vectors = arrays
    return SpectrumToSave(
        job_id,
        index,
        code,
        eigenvalues,
        vectors,
        summary=SUMMARY,
        diagnostics={"wall_time_s": 1.0},
        model="bench",
        distance="mse",
        method="jacobian",
        dtype="float32",
    )


def _store_sql_params(
    job_id: str, index: int, arrays: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two statements' parameters as save_spectrum builds them, for latent ``index``."""
    row, vector_dtype, data = _prepared(_spectrum(job_id, index, arrays))
    insert = {
        **row,
        "diagnostics": json.dumps(row["diagnostics"]),
        "vector_dtype": vector_dtype,
        "data": data,
    }
    count = {
        "spectrum_id": row["id"],
        "sha256": sha256_hex(data),
        "job_id": job_id,
        "latent_index": index,
    }
    return insert, count


SUMMARY = {
    "top_eigenvalue": 1.0,
    "trace": 2.0,
    "dims_99": 3,
    "dims_999": 4,
    "participation_ratio": 1.5,
}


def run(repeats: int, d: int) -> dict[str, Any]:
    database = f"spectra_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    url = ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"
    times: dict[str, list[float]] = {
        name: []
        for name in (
            "write",
            "full",
            "top10",
            "meta",
            "batch",
            "raw_insert",
            "raw_select",
            "raw_substr",
            "sha256",
            "sql_write",
            "sql_top10",
        )
    }
    load_before = os.getloadavg()[0]
    try:
        with Store(url) as store:
            store.migrate()
            plain = _PlainPsycopg(url)
            store_sql = _StoreSqlOnPsycopg(url)
            warmup = 5
            n = warmup + repeats
            job, _ = store.create_job(
                "bench", {"bench": d}, {"model": "bench"}, "bench", None, n, [ChunkPlan(0, [0])]
            )
            # The same spectra again, written by the store's statements on plain psycopg.
            sql_job, _ = store.create_job(
                "bench",
                {"bench": d, "sql": True},
                {"model": "bench"},
                "bench-sql",
                None,
                n,
                [ChunkPlan(0, [0])],
            )
            inputs = [_arrays(d, seed) for seed in range(n)]

            def write(index: int) -> bool:
                # save_spectrum's own path: it builds this and stores a batch of one.
                return store.save_spectra([_spectrum(job.id, index, inputs[index])])[0]

            def as_rows(index: int) -> bytes:
                return np.ascontiguousarray(inputs[index][2].T).tobytes()

            sql_params = [_store_sql_params(sql_job.id, i, inputs[i]) for i in range(n)]
            for index in range(warmup):
                write(index)
                plain.insert(index, as_rows(index))
                store_sql.save(*sql_params[index])
            before = _disk_bytes(store)
            for index in range(warmup, n):
                times["write"].append(_timed(lambda i=index: write(i))[0])
                data = as_rows(index)
                times["raw_insert"].append(_timed(lambda i=index, b=data: plain.insert(i, b))[0])
                times["sha256"].append(_timed(lambda b=data: hashlib.sha256(b).hexdigest())[0])
            after = _disk_bytes(store)
            for index in range(warmup, n):
                times["sql_write"].append(_timed(lambda p=sql_params[index]: store_sql.save(*p))[0])

            ids = {r.latent_index: r.id for r in store.list_spectra(job_id=job.id, limit=n)}
            # One pass per kind of read (random order), the store and plain psycopg alternating:
            # on a busy machine a small query right after a 1 MiB read is several times slower
            # (for plain psycopg as much as for the store), so kinds are not mixed.
            rng = np.random.default_rng(0)
            top10_bytes = 10 * d * 4
            for index in rng.permutation(np.arange(warmup, n)):
                seconds, full = _timed(lambda s=ids[int(index)]: store.eigenvectors(s))
                times["full"].append(seconds)
                assert full.tobytes() == inputs[index][2].tobytes(), "full read is not bit-exact"
                times["raw_select"].append(_timed(lambda i=int(index): plain.select(i))[0])
            for index in rng.permutation(np.arange(warmup, n)):
                seconds, top = _timed(lambda s=ids[int(index)]: store.eigenvectors(s, k=10))
                times["top10"].append(seconds)
                assert np.array_equal(top, inputs[index][2][:, :10]), "top-10 read is wrong"
                times["raw_substr"].append(
                    _timed(lambda i=int(index): plain.substr(i, top10_bytes))[0]
                )
                times["sql_top10"].append(_timed(lambda s=ids[int(index)]: store_sql.top(s, 10))[0])
            for index in rng.permutation(np.arange(warmup, n)):
                times["meta"].append(_timed(lambda s=ids[int(index)]: store.get_spectrum(s))[0])
            batch_ids = [ids[i] for i in range(warmup, n)]
            for _ in range(5):
                seconds = _timed(lambda: store.top_k_eigenvectors(batch_ids, 10))[0]
                times["batch"].append(seconds / repeats)
            plain.close()
            store_sql.close()
            raw_vectors = d * d * 4
            raw_total = raw_vectors + d * 8 + d * 8  # + eigenvalues and code, float64
            disk_per_spectrum = (after - before) / repeats
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    with psycopg.connect(ADMIN_DSN) as admin:
        server = admin.execute("SHOW server_version").fetchone()
    medians = {name: _median_ms(values) for name, values in times.items()}
    return {
        "d": d,
        "k": d,
        "dtype": "float32",
        "repeats": repeats,
        "write_ms": medians["write"],
        "full_read_ms": medians["full"],
        "top10_read_ms": medians["top10"],
        "metadata_read_ms": medians["meta"],
        "top10_batch_per_spectrum_ms": medians["batch"],
        "write_ms_p90": float(np.percentile(times["write"], 90) * 1000),
        "full_read_ms_p90": float(np.percentile(times["full"], 90) * 1000),
        "top10_read_ms_p90": float(np.percentile(times["top10"], 90) * 1000),
        "raw_insert_ms": medians["raw_insert"],
        "raw_select_ms": medians["raw_select"],
        "raw_substr_ms": medians["raw_substr"],
        "raw_sha256_ms": medians["sha256"],
        "store_sql_write_ms": medians["sql_write"],
        "store_sql_top10_ms": medians["sql_top10"],
        "raw_bytes_per_spectrum": raw_total,
        "raw_eigenvector_bytes": raw_vectors,
        "disk_bytes_per_spectrum": disk_per_spectrum,
        "size_overhead_pct": 100 * (disk_per_spectrum / raw_total - 1),
        "full_read_vs_top10": medians["full"] / medians["top10"],
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "targets": TARGETS,
        "postgresql": server[0] if server else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
    }


def report(results: dict[str, Any]) -> None:
    rows = [
        (
            "write (save_spectrum)",
            f"{results['write_ms']:.2f} ms",
            f"{results['write_ms_p90']:.2f}",
            f"<= {TARGETS['write_ms']:g} ms",
        ),
        (
            "full read (512 vectors)",
            f"{results['full_read_ms']:.2f} ms",
            f"{results['full_read_ms_p90']:.2f}",
            f"<= {TARGETS['full_read_ms']:g} ms",
        ),
        (
            "top-10 read (substr)",
            f"{results['top10_read_ms']:.3f} ms",
            f"{results['top10_read_ms_p90']:.3f}",
            f"<= {TARGETS['top10_read_ms']:g} ms",
        ),
        ("metadata read (get_spectrum)", f"{results['metadata_read_ms']:.3f} ms", "", ""),
        (
            "top-10, batch of all, per spectrum",
            f"{results['top10_batch_per_spectrum_ms']:.3f} ms",
            "",
            "",
        ),
        (
            "disk per spectrum",
            f"{results['disk_bytes_per_spectrum'] / 1024:.1f} KiB",
            "",
            f"raw {results['raw_bytes_per_spectrum'] / 1024:.1f} KiB",
        ),
        ("plain psycopg INSERT+COMMIT 1 MiB", f"{results['raw_insert_ms']:.2f} ms", "", ""),
        ("sha256 of 1 MiB (hashlib)", f"{results['raw_sha256_ms']:.2f} ms", "", ""),
        ("plain psycopg binary SELECT 1 MiB", f"{results['raw_select_ms']:.2f} ms", "", ""),
        ("plain psycopg substr top-10", f"{results['raw_substr_ms']:.3f} ms", "", ""),
        (
            "size overhead vs raw",
            f"{results['size_overhead_pct']:+.2f} %",
            "",
            f"<= {TARGETS['size_overhead_pct']:g} %",
        ),
    ]
    print(
        f"store benchmark: {results['d']}x{results['k']} float32 spectra, PostgreSQL "
        f"{results['postgresql']} over loopback, median of {results['repeats']} "
        f"({results['machine']})"
    )
    print(f"{'measure':36} {'median':>12} {'p90 ms':>8}  target")
    for name, median, p90, target in rows:
        print(f"{name:36} {median:>12} {p90:>8}  {target}")
    print(
        f"full read / top-10 read (same run): {results['full_read_vs_top10']:.1f}x; store / "
        f"plain psycopg: write {results['write_ms'] / results['raw_insert_ms']:.2f}x, full "
        f"read {results['full_read_ms'] / results['raw_select_ms']:.2f}x, top-10 "
        f"{results['top10_read_ms'] / results['raw_substr_ms']:.2f}x; "
        f"load average {results['load_average_1min']['before']:.1f} before, "
        f"{results['load_average_1min']['after']:.1f} after, on {os.cpu_count()} cores"
    )


def table(results: dict[str, Any]) -> Table:
    """Each path of the store beside plain psycopg doing the same I/O (issue 24: within 1.5x)."""

    def ratio(store_key: str, plain_key: str) -> float:
        return float(results[store_key] / results[plain_key])

    rows = [
        [
            "write (save_spectrum)",
            results["write_ms"],
            results["write_ms_p90"],
            results["raw_insert_ms"],
            ratio("write_ms", "raw_insert_ms"),
            results["store_sql_write_ms"],
            ratio("write_ms", "store_sql_write_ms"),
            f"<= {TARGETS['write_ms']:g} ms",
        ],
        [
            "full read",
            results["full_read_ms"],
            results["full_read_ms_p90"],
            results["raw_select_ms"],
            ratio("full_read_ms", "raw_select_ms"),
            None,
            None,
            f"<= {TARGETS['full_read_ms']:g} ms",
        ],
        [
            "top-10 eigenvectors (substr)",
            results["top10_read_ms"],
            results["top10_read_ms_p90"],
            results["raw_substr_ms"],
            ratio("top10_read_ms", "raw_substr_ms"),
            results["store_sql_top10_ms"],
            ratio("top10_read_ms", "store_sql_top10_ms"),
            f"<= {TARGETS['top10_read_ms']:g} ms",
        ],
        ["metadata read (get_spectrum)", results["metadata_read_ms"], *[None] * 6],
        [
            "top-10, batch of all, per spectrum",
            results["top10_batch_per_spectrum_ms"],
            *[None] * 6,
        ],
    ]
    return Table(
        title=f"Store: {results['d']}×{results['k']} float32 spectra, PostgreSQL "
        f"{results['postgresql']} over loopback, median of {results['repeats']}",
        columns=[
            "path",
            "store ms",
            "p90 ms",
            "plain psycopg ms",
            "store / plain",
            "store's SQL on psycopg ms",
            "store / its SQL",
            "target",
        ],
        rows=rows,
        notes=[
            "Plain psycopg: the same bytes by one INSERT + COMMIT, one binary SELECT, one "
            "substring; target store / plain ≤ 1.5 on every path. The store's write also "
            f"hashes the bytes (sha256 alone: {results['raw_sha256_ms']:.2f} ms).",
            "Store's SQL on psycopg: the store's own statements on its own tables (the write's "
            "two, with the spectra row's indexes and the job's counters; the top-10 read keyed "
            "by the spectrum's id), run by plain psycopg on one kept connection with the row, "
            "bytes and sha256 made beforehand. store / plain is what the schema and the code "
            "add together; store / its SQL is what the code adds (validation, the transposed "
            "copy, the hash, the pool, error handling).",
            f"Disk per spectrum {results['disk_bytes_per_spectrum'] / 1024:.1f} KiB for "
            f"{results['raw_bytes_per_spectrum'] / 1024:.1f} KiB raw "
            f"({results['size_overhead_pct']:+.2f} %, target ≤ {TARGETS['size_overhead_pct']:g} %).",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--d", type=int, default=512)
    arguments = parser.parse_args()
    results = run(arguments.repeats, arguments.d)
    report(results)
    write_results("store", results, table(results))


if __name__ == "__main__":
    main()
