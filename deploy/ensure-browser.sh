#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver when either is missing (idempotent), for the
# browser tests of the web interface (tests/ui). Exits non-zero when they cannot be installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver are installed"
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing chromium and chromium-driver for the browser tests" >&2
( $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver ) >/dev/null \
    || { echo "could not install chromium and chromium-driver (needed by tests/ui)" >&2; exit 1; }
command -v chromium >/dev/null && command -v chromedriver >/dev/null
