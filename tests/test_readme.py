"""The README's command-line example, run in order exactly as written (in an empty directory,
with no SPECTRA_ settings, as a newcomer would): each command succeeds, and what it says it
writes is there."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from api import cli

ROOT = Path(__file__).resolve().parents[1]


def command_line_example(readme: str) -> list[list[str]]:
    """The `spectra` commands of the code block under "## Command line", in order, split as a
    shell splits them (comments dropped)."""
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words[1:] for words in commands if words and words[0] == "spectra"]


def test_the_example_is_read_in_order_without_comments() -> None:
    readme = "## Command line\n\n```bash\n# a note\nspectra run --x 1   # why\nls\nspectra compare A\n```\n\n## Next\n```bash\nspectra no\n```"
    assert command_line_example(readme) == [["run", "--x", "1"], ["compare", "A"]]


def test_the_readme_command_line_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in ("SPECTRA_DATABASE_URL", "SPECTRA_SERVER_URL", "SPECTRA_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    commands = command_line_example((ROOT / "README.md").read_text())
    assert [c[0] for c in commands] == ["run", "run", "compare", "compare", "compare"]
    assert len(set(map(tuple, commands))) == len(commands)
    job_ids: list[str] = []
    for argv in commands:
        argv = [job_ids[0] if word == "JOB_A" else word for word in argv]
        assert cli.main(argv) == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        if argv[0] == "run":
            job_ids.append(printed.strip().splitlines()[-1])  # "the job id last on stdout"
        else:  # a table with the Hessian's selection (and SeFa's where it is compared)
            assert "dcgan-faces" in printed and ("sefa" in printed) == any(
                "sefa" in word for word in argv[1:3]
            )
    # The result document of the second comparison: the 8 stored spectra of the first run, and
    # SeFa's.
    hessian, sefa = json.loads((tmp_path / "result.json").read_text())["members"]
    assert (hessian["n_spectra"], hessian["k"], hessian["d"]) == (8, 20, 100)
    assert hessian["job_ids"] == [job_ids[0]] and sefa["job_ids"] == [job_ids[1]]
    for name in ("spectrum.png", "spectrum.svg", "spectrum.pdf"):
        assert (tmp_path / "figures" / name).stat().st_size > 1000
    assert any(p.name.startswith("montage-") for p in (tmp_path / "plots").iterdir())
    assert (tmp_path / "spectra.db").exists()
