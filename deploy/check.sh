#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: lint, format, types, docs, migrations, tests.
#   bash deploy/check.sh [PYTEST_ARGS...]    (arguments go to both pytest runs)
# CHECK_TEST_WORKERS sets how many processes run the parallel tier (default: one per CPU).
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

# Two pytest runs. The parallel tier is every test that computes on the CPU or on its own
# database (each test has its own PostgreSQL database or SQLite file, so processes share no
# state); a file stays in one process (--dist loadfile) so its module fixtures start once.
# The serial tier holds the tests that measure time or memory of processes they start (workers,
# servers, a browser, network namespaces): two of them at once on a small machine would
# measure each other.
# Both tiers run even when the first fails, so one run shows every failure; a tier that a
# filter leaves empty (pytest's exit 5, e.g. `-k` naming tests of the other tier) is no failure.
serial=(tests/pipeline tests/api tests/ui)
status=0
echo "== pytest, parallel tier (${CHECK_TEST_WORKERS:-auto} processes)"
"$bin/python" -m pytest -n "${CHECK_TEST_WORKERS:-auto}" --dist loadfile \
    $(printf -- '--ignore=%s ' "${serial[@]}") "$@" || { code=$?; [ "$code" = 5 ] || status=$code; }
echo "== pytest, serial tier"
"$bin/python" -m pytest "${serial[@]}" "$@" || { code=$?; [ "$code" = 5 ] || status=$code; }
exit "$status"
