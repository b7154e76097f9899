#!/usr/bin/env bash
# What the console's browser tests need: Debian's chromium and Playwright's Python package.
# Idempotent. Never `playwright install`: no browser build can be downloaded here; the tests
# drive /usr/bin/chromium through executable_path.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${VENV:-.venv}"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! "$VENV/bin/python" -c "import playwright" >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q "playwright>=1.48,<2"
fi
echo "browser tests: $(chromium --version 2>/dev/null | head -1), playwright $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("playwright"))')"
