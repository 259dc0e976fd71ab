"""The README and the documentation site stay true: every link resolves inside the repository,
and nothing points at files outside it (the site itself is built with --strict by make test)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def local_links(markdown: str) -> list[str]:
    """The targets of a page's Markdown links that are not web addresses or in-page anchors."""
    return [
        target.split("#")[0]
        for target in LINK.findall(markdown)
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    ]


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Links of ``page`` whose file is missing or lies outside ``root``."""
    broken = []
    for target in local_links(page.read_text()):
        resolved = (page.parent / target).resolve()
        if not resolved.is_relative_to(root) or not resolved.exists():
            broken.append(target)
    return broken


def test_the_link_check_finds_missing_and_outside_targets(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](here.md) [anchor](here.md#a) [web](https://example.org/x.md) [self](#top)\n"
        "[missing](gone.md) [outside](../elsewhere/DESIGN.md)"
    )
    assert broken_links(page, tmp_path) == ["gone.md", "../elsewhere/DESIGN.md"]


def test_every_readme_and_docs_link_resolves_inside_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert {str(p.relative_to(ROOT)): broken_links(p) for p in pages if broken_links(p)} == {}


def test_no_page_names_a_file_outside_the_repository() -> None:
    """Prose too: a path such as ../shared/… in backquotes is as unreadable to a newcomer as a
    broken link."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    outside = {
        str(p.relative_to(ROOT)): hits
        for p in pages
        if (hits := re.findall(r"\.\./[\w./-]+", p.read_text()))
    }
    assert outside == {}


def test_the_readme_is_a_five_minute_read() -> None:
    """What it is, the two commands, one example per face and links: not a lab notebook."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for face in ("## Two commands", "## Command line", "## HTTP", "## Python client"):
        assert face in text
