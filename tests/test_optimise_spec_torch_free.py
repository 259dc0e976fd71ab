"""The optimisation spec is torch-free, like the spectra job's: `spectra optimise --help` and
its flags start without the geometry core (issue 25: every --help under half a second)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import contextlib, io, sys
import services.optimise_job_spec
from api.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
    main(["optimise", "--help"])
assert "--optimiser" in out.getvalue(), out.getvalue()[:500]
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_optimise_help_imports_no_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout


def test_the_spec_still_checks_its_optimiser_options() -> None:
    import pytest
    from pydantic import ValidationError

    from services.optimise_job_spec import BasisFromJob, OptimiseSpec

    with pytest.raises(ValidationError, match="needs k"):
        OptimiseSpec(optimiser="adam-topk", basis=BasisFromJob(job="j"))
    assert OptimiseSpec(optimiser="cma", sigma=0.3).optimiser_settings().sigma == 0.3
