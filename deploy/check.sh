#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it: lint, types, migrations, tests.
set -euo pipefail
venv="${VENV:-.venv}"
bin="$venv/bin"
echo "== ruff"; "$bin/ruff" check services worker api tests bench
echo "== mypy (services api worker)"; "$bin/mypy" services api worker
# The compose file is validated wherever a docker client is present (no engine needed).
if docker compose version >/dev/null 2>&1; then
    echo "== docker compose config"
    docker compose -f docker-compose.yml --env-file deploy/example.env config --quiet
elif command -v docker-compose >/dev/null 2>&1; then
    echo "== docker-compose config"
    docker-compose -f docker-compose.yml --env-file deploy/example.env config --quiet
fi
echo "== pytest"
"$bin/python" -m pytest "$@"
