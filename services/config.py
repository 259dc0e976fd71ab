"""Settings from the environment (prefix ``SPECTRA_``), with safe defaults for embedded use."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me-dev-only"


class UnsafeSettingsError(RuntimeError, ValueError):
    """Settings a server must not start with; the message says what to set. (A ValueError as
    well, so the command line prints the message instead of a traceback.)"""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPECTRA_", env_file=None, extra="ignore")

    mode: Literal["embedded", "development", "production"] = "embedded"
    database_url: str = "sqlite:///spectra.db"
    broker_url: str = "redis://127.0.0.1:6379/0"
    # Signs the web interface's session cookies; a server listening beyond loopback refuses
    # the default (check_serving_ready).
    secret_key: str = Field(default=DEFAULT_SECRET, repr=False)
    device: str = "cpu"
    # Models the HTTP API serves besides the built-in registry, comma-separated, e.g.
    # "python:/opt/models/mine.py:build,biggan-deep:/opt/models/biggan-deep-256". File-based
    # loaders run code from the named file, so the API never accepts one that an operator has
    # not listed here (the local command line, run by the file's owner, accepts any).
    extra_models: str = ""
    # Where NVIDIA's torch_utils and dnnlib live (a stylegan2-ada-pytorch or stylegan3 clone):
    # put on sys.path while a stylegan2-ada:PKL network pickle is unpickled.
    nvidia_code_dir: str = ""

    # Client side: the server that the command line's server commands and the Python client
    # talk to (empty: the command line works on the database instead), and the API key they
    # send. api/client.py reads these two variables itself, without pydantic, so that it
    # imports nothing heavy: it is their documented twin (tests/api/test_settings_docs.py).
    server_url: str = ""
    token: str = Field(default="", repr=False)

    # Limits on what one request may ask for; all configurable.
    max_latents_per_job: int = Field(default=10_000, ge=1)
    # StyleGAN2 W+ at 1024 px is 18 x 512 = 9216; the planner refuses what no worker can hold.
    max_latent_dim: int = Field(default=16384, ge=1)
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Any body that is not a file upload (JSON): at most this, and at most max_upload_bytes.
    max_json_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    # What the arrays of one uploaded .npz may declare uncompressed, all members together:
    # checked from the archive's directory before a byte is inflated.
    max_array_bytes: int = Field(default=256 * 1024 * 1024, ge=1)

    # Pipeline tuning.
    chunk_time_limit_s: int = Field(default=3600, ge=10)
    # A running chunk's lease: renewed every heartbeat, given away (compare-and-set) once no
    # beat came for stale_after_s, i.e. three missed beats. The reapers sweep every
    # stale_after_s / 5, so a dead worker's chunk runs again within about 20 s of its death.
    heartbeat_interval_s: float = Field(default=4.0, gt=0)
    stale_after_s: float = Field(default=15.0, gt=0)
    max_chunk_attempts: int = Field(default=3, ge=1)
    # How long a chunk's runner waits on a store that cannot answer (down, or its disk full)
    # before it hands its chunk back, charging nothing to the latent it was computing.
    # Embedded runs (`spectra run`) wait at most a minute and then say so.
    store_wait_s: float = Field(default=1800.0, gt=0)
    # A worker's Prometheus /metrics port (0: none). `spectra worker` gives its N-th device
    # worker this port + N.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    # Planning (services/pipeline/estimate.py). The memory one worker may use for one code;
    # unset: most of its device's memory. Jobs that fit no worker are refused at submit.
    worker_memory_gb: float | None = Field(default=None, gt=0)
    # Latents at least this large are planned from a cost profile (a few tangent batches
    # measured once per model by a worker, stored); smaller ones from counts alone.
    plan_probe_min_dim: int = Field(default=256, ge=1)
    # Threads a worker computes with (torch.set_num_threads at its start), and the planner's
    # probe with, so that planned times are a worker's; unset: torch's default (the cores,
    # or OMP_NUM_THREADS).
    worker_threads: int | None = Field(default=None, ge=1, le=1024)
    # Workers computing at once on one host (CPU workers share its cores, caches and memory
    # bandwidth): the planner's probe measures how much they slow each other at this count.
    workers_per_host: int = Field(default=1, ge=1, le=256)
    # Above this latent dimension a full-spectrum job keeps only the top `default_top_k`
    # eigenvectors unless top_k is given (all eigenvalues and the trace are still kept).
    full_eigenvectors_max_dim: int = Field(default=2048, ge=1)
    default_top_k: int = Field(default=100, ge=1)

    # Analyses of stored spectra (services/comparisons/). Homogeneity costs every ordered
    # pair of positions; beyond this many pairs it runs over a seeded random sample of
    # positions (the most whose pairs fit: 250 000 pairs is 500 positions), said and recorded.
    homogeneity_max_pairs: int = Field(default=250_000, ge=2)
    # Where homogeneity and the average metric run: "auto" is the GPU where there is one,
    # else the CPU; "cuda" / "cuda:N" / "cpu" pin it ("cuda" without CUDA is refused).
    analysis_device: str = Field(default="auto", min_length=1, max_length=20)
    # Eigenvectors read from the store at once while an analysis streams over positions
    # (float64 megabytes after conversion): bounds memory whatever the selection's size.
    # The accumulation holds a few working copies of one chunk (float32 read, float64,
    # scaled and transposed), so the transient is several times this figure.
    analysis_chunk_mb: float = Field(default=64.0, gt=0)

    @property
    def extra_model_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.extra_models.split(",") if name.strip())

    def check_serving_ready(self, host: str) -> None:
        """Refuse to listen on ``host`` with the development secret unless only this machine
        can connect (a loopback address), whatever the mode: the secret signs the web
        interface's cookies. Also every check of ``check_production_ready``."""
        self.check_production_ready()
        if self.secret_key == DEFAULT_SECRET and not is_loopback(host):
            raise UnsafeSettingsError(
                f"refusing to listen on {host!r} with the development SPECTRA_SECRET_KEY: set "
                "SPECTRA_SECRET_KEY to a long random value (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`), or listen on 127.0.0.1 only"
            )

    def check_production_ready(self) -> None:
        """Refuse to serve in production mode with the built-in development secret."""
        if self.mode == "production" and self.secret_key == DEFAULT_SECRET:
            raise UnsafeSettingsError(
                "SPECTRA_SECRET_KEY still has its development default; set it to a long random "
                "value (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`) "
                "before starting the API with SPECTRA_MODE=production."
            )


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
