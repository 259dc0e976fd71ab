#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: lint, format, types, docs, migrations, tests.
#   bash deploy/check.sh [PYTEST_ARGS...]    (arguments go to both pytest runs)
# CHECK_TEST_WORKERS sets how many processes run the tests (default: two per CPU).
set -euo pipefail
venv="${VENV:-.venv}"
bin="$venv/bin"
code=(services worker api tests bench)

echo "== ruff check"; "$bin/ruff" check "${code[@]}"
echo "== ruff format --check"; "$bin/ruff" format --check "${code[@]}"
echo "== mypy --strict (services api worker tests: pyproject's [tool.mypy])"; "$bin/mypy"

# The documentation site: --strict turns a broken link or a page missing from the nav into a failure.
echo "== mkdocs build --strict"
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
if ! NO_MKDOCS_2_WARNING=1 "$bin/mkdocs" build --strict --site-dir "$site/html" >"$site/log" 2>&1; then
    grep -v "^INFO" "$site/log" >&2; exit 1
fi

# The compose file is validated wherever a docker client is present (no engine needed).
if docker compose version >/dev/null 2>&1; then
    echo "== docker compose config"
    docker compose -f docker-compose.yml --env-file deploy/example.env config --quiet
elif command -v docker-compose >/dev/null 2>&1; then
    echo "== docker-compose config"
    docker-compose -f docker-compose.yml --env-file deploy/example.env config --quiet
fi

# Two pytest runs. The first runs every test not marked `timed`, whole modules at a time
# (--dist loadfile: a module's fixtures, a cluster of workers, a private PostgreSQL, a
# browser, start once), in twice as many processes as there are CPUs: most of the suite's time
# is spent waiting (on workers, restarts, outages, a browser), and a CPU-bound test gets its
# share of the cores (tests/conftest.py sets one BLAS and OpenMP thread per process). The
# modules with a slow test start first (tests/conftest.py orders them), so the short ones fill
# the time beside them. Every test there has its own database (or SQLite file), its own
# Redis and its own ports, so processes share no state. The second runs the few tests that
# assert a wall-clock bound of about a second (`timed`), alone.
# Both runs happen even when the first fails, so one run shows every failure; a run that a
# filter leaves empty (pytest's exit 5, e.g. `-k` naming only tests of the other run) is no
# failure. CHECK_TEST_WORKERS sets the first run's process count.
status=0
workers="${CHECK_TEST_WORKERS:-$(( $(nproc) * 2 ))}"
echo "== pytest ($workers processes)"
"$bin/python" -m pytest -n "$workers" --dist loadfile -m "not timed" "$@" \
    || { code=$?; [ "$code" = 5 ] || status=$code; }
echo "== pytest, timed tests (alone)"
"$bin/python" -m pytest -m timed "$@" || { code=$?; [ "$code" = 5 ] || status=$code; }
exit "$status"
