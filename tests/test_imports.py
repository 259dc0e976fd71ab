"""The charter's structure, checked on the source: imports go one way and form no cycle.

The import graph is read with ``ast`` (every import statement, also those inside functions;
imports under ``if TYPE_CHECKING:`` are left out, as they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("services", "api", "worker")


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts:
                continue
            name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def _targets(
    modules: dict[str, Path], current: str, node: ast.Import | ast.ImportFrom
) -> list[str]:
    package = current if modules[current].name == "__init__.py" else current.rsplit(".", 1)[0]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = package
        for _ in range(node.level - 1):
            parent = parent.rsplit(".", 1)[0]
        base = f"{parent}.{node.module}" if node.module else parent
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (not counting its own parent packages, which
    the import system loads first in any case)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        type_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in type_only:
                for target in _targets(modules, name, node):
                    while target and target not in modules:
                        target = target.rsplit(".", 1)[0] if "." in target else ""
                    if target and target != name and target not in parents:
                        deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_known_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_project_modules() -> None:
    graph = import_graph()
    assert "services.geometry.linalg" in graph and "services.store.jobs" in graph
    assert cycles(graph) == []


def test_imports_go_one_way() -> None:
    graph = import_graph()
    upward = sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        for dep in deps
        if (module.startswith("services") and dep.split(".")[0] in ("api", "worker"))
        or (module.startswith("api") and dep.startswith("worker"))
    )
    assert upward == []


MAX_LINES = 600


def files_over(limit: int, root: Path = ROOT) -> dict[str, int]:
    """Every Python file of the project's packages (migrations included: they are code too)
    longer than ``limit`` lines, by path relative to ``root``."""
    return {
        str(path.relative_to(root)): n
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > limit
    }


def test_the_length_rule_sees_files_in_nested_packages(tmp_path: Path) -> None:
    nested = tmp_path / "services" / "geometry" / "families"
    nested.mkdir(parents=True)
    (nested / "long.py").write_text("x = 1\n" * 601)
    (nested / "short.py").write_text("x = 1\n" * 600)
    for package in ("api", "worker"):
        (tmp_path / package).mkdir()
    (tmp_path / "api" / "cli.py").write_text("x = 1\n" * 700)
    assert files_over(MAX_LINES, tmp_path) == {
        "services/geometry/families/long.py": 601,
        "api/cli.py": 700,
    }


def test_no_module_over_600_lines_in_any_package() -> None:
    """One concept per file: no module of services/, api/ or worker/ grows past 600 lines."""
    assert files_over(MAX_LINES) == {}


def _external_imports(path: Path) -> set[str]:
    """The top-level names of every package a module imports that is not the project's own
    (imports under ``if TYPE_CHECKING:`` included: a type-only import of SQLAlchemy in the core
    would still say the core knows about SQL)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(PACKAGES)


SQL_PACKAGES = {"sqlalchemy", "psycopg", "psycopg_pool", "alembic"}
SERVICE_PACKAGES = {"celery", "kombu", "redis", "fastapi", "starlette", "httpx", "uvicorn"}


def test_only_the_store_speaks_sql() -> None:
    speakers = sorted(
        name
        for name, path in _modules().items()
        if _external_imports(path) & SQL_PACKAGES and not name.startswith("services.store")
    )
    assert speakers == []


def test_the_geometry_core_knows_no_store_no_pipeline_and_no_service() -> None:
    graph = import_graph()
    outward = sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        if module.startswith("services.geometry")
        for dep in deps
        if dep.startswith(("services.store", "services.pipeline", "services.comparisons"))
    )
    services_used = sorted(
        f"{name} -> {package}"
        for name, path in _modules().items()
        if name.startswith("services.geometry")
        for package in _external_imports(path) & (SERVICE_PACKAGES | SQL_PACKAGES)
    )
    assert outward == [] and services_used == []


# `get_settings()` reads the environment; `api.deps.get_settings(request)` only hands on the
# app's own Settings. The edges: where a process starts (the app factory, the worker, the command line's entry and
# its process launcher, Alembic's environment) and the definition itself.
SETTINGS_EDGES = ("api.app", "api.cli", "worker", "services.config", "services.store.migrations")


def test_settings_are_read_only_at_the_edges() -> None:
    readers = sorted(
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "get_settings()" in path.read_text()
        and not ".".join(path.relative_to(ROOT).with_suffix("").parts).startswith(SETTINGS_EDGES)
    )
    assert readers == []
