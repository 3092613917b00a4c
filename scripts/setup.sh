#!/usr/bin/env bash
# One-command set-up on a fresh clone: a virtual environment in .venv, imgclust installed into it
# (editable, with the test extras), and the verified InceptionV3 weights in models/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/imgclust download
# Headless Chromium for the report's browser tests (Debian's package; Playwright downloads no browser).
# Only as root and only when missing; without it those tests are skipped with the reason.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium not installed: browser tests will be skipped"
fi
echo "set-up done: run '.venv/bin/imgclust run' for the example, '.venv/bin/python -m pytest' for the tests"
