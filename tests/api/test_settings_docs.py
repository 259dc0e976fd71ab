"""docs/settings.md lists every setting with its default (issue 21): a Settings field missing
there, a documented variable that no longer exists, or a default that drifted, fails here."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic.fields import FieldInfo

import api.client
from services.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "settings.md"
ROW = re.compile(r"^\| `(SPECTRA_[A-Z0-9_]+)` \| ([^|]+) \| (.+) \|$")
TEST_ONLY = {"SPECTRA_TEST_PG_ADMIN", "SPECTRA_TEST_REDIS_URL"}


def _documented() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line.strip())
        if match:
            name, default, meaning = match.groups()
            assert name not in rows, f"{name} is documented twice"
            rows[name] = (default.strip(), meaning.strip())
    return rows


def _shown(field: FieldInfo) -> str:
    """A field's default as the table writes it."""
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if default == "":
        return "empty"
    if isinstance(default, str):
        return f"`{default}`"
    return str(default)


def test_every_setting_is_documented_with_its_default() -> None:
    documented = _documented()
    fields = {f"SPECTRA_{name.upper()}": field for name, field in Settings.model_fields.items()}
    missing = sorted(set(fields) - set(documented))
    assert not missing, f"docs/settings.md lacks {missing}"
    stale = sorted(set(documented) - set(fields))
    assert not stale, f"docs/settings.md documents settings that do not exist: {stale}"
    for name, field in fields.items():
        default, meaning = documented[name]
        assert default == _shown(field), f"{name}: documented default {default}, is {_shown(field)}"
        assert len(meaning) > 20, f"{name}: say what it means"


def test_every_spectra_variable_in_the_code_is_a_setting() -> None:
    # The names the services, the API, the workers and the deployment files mention.
    fields = {f"SPECTRA_{name.upper()}" for name in Settings.model_fields}
    named: set[str] = set()
    for folder in ("services", "api", "worker", "deploy"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".env", ".yml", ".yaml", ".sh", ""}:
                named |= set(re.findall(r"SPECTRA_[A-Z][A-Z0-9_]*[A-Z0-9]", path.read_text()))
    assert not sorted(named - fields - TEST_ONLY), "a SPECTRA_ variable outside Settings"
    assert all(variable in DOC.read_text() for variable in TEST_ONLY)


def test_the_python_clients_variables_are_the_settings_twins() -> None:
    # The client (api/client.py, or a package of that name) reads SPECTRA_SERVER_URL and
    # SPECTRA_TOKEN without pydantic.
    client = Path(api.client.__file__)
    files = client.parent.rglob("*.py") if client.name == "__init__.py" else [client]
    source = "".join(path.read_text() for path in files)
    assert {"SPECTRA_SERVER_URL", "SPECTRA_TOKEN"} <= set(re.findall(r"SPECTRA_[A-Z_]+", source))
    assert {"server_url", "token"} <= set(Settings.model_fields)
