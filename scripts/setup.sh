#!/usr/bin/env bash
# One-command set-up on a fresh clone: a virtual environment in .venv, imgclust installed into it
# (editable, with the test extras and JAX, whose golden weight tests CI runs too), the verified
# network weights in models/, and, where they can be installed, Tesseract (`imgclust ocr`) and
# Chromium (the report's browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# Tesseract (for `imgclust ocr`) comes from the system's packages: installed here when running as
# root on Debian/Ubuntu and missing; otherwise only a note (everything else works without it).
if ! command -v tesseract >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
              tesseract-ocr tesseract-ocr-eng; } ||
            echo "note: could not install tesseract; 'imgclust ocr' will say so until it is installed" >&2
    else
        echo "note: tesseract not found; 'imgclust ocr' needs it: sudo apt-get install tesseract-ocr tesseract-ocr-eng" >&2
    fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,jax]"
.venv/bin/imgclust download
# Headless Chromium for the report's browser tests (Debian's package; Playwright downloads no browser).
# Only as root and only when missing; without it those tests are skipped with the reason.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) ||
        echo "chromium not installed: browser tests will be skipped"
fi
echo "set-up done: run '.venv/bin/imgclust run' for the example, '.venv/bin/python -m pytest' for the tests"
