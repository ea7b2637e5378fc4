#!/usr/bin/env bash
# Install headless Chromium and its WebDriver for the dashboard's browser test
# (tests/platform/test_dashboard.py) and benchmark (benchmarks/dashboard_load.py).
#
#   bash scripts/setup_browser.sh       # `make test` runs it before pytest
#
# Debian's `chromium` and `chromium-driver` packages, installed with apt-get only when
# /usr/bin/chromium or /usr/bin/chromedriver is missing: a second run does nothing. Needs root
# (or sudo) the first time; apt talks only to the configured package mirrors.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
DRIVER=/usr/bin/chromedriver

if [ -x "$CHROMIUM" ] && [ -x "$DRIVER" ]; then
  exit 0
fi

fail() {
  echo "[setup_browser] $*" >&2
  echo "[setup_browser] the dashboard's browser test needs $CHROMIUM and $DRIVER; install Debian's" \
       "'chromium' and 'chromium-driver' packages (apt-get install chromium chromium-driver) and rerun" >&2
  exit 1
}

if ! command -v apt-get >/dev/null 2>&1; then
  fail "apt-get not found: this script installs Debian's packages only"
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  fail "installing packages needs root: rerun as root or with password-less sudo"
fi

echo "[setup_browser] installing chromium and chromium-driver with apt-get (once)"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q >/dev/null || fail "apt-get update failed (see the messages above)"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
  || fail "apt-get install chromium chromium-driver failed (see the messages above)"

[ -x "$CHROMIUM" ] || fail "$CHROMIUM is still missing after the install"
[ -x "$DRIVER" ] || fail "$DRIVER is still missing after the install"
echo "[setup_browser] $("$CHROMIUM" --version 2>/dev/null || echo chromium) and $("$DRIVER" --version 2>/dev/null | cut -d' ' -f1-2) ready"
