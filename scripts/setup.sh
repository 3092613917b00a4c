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
echo "set-up done: run '.venv/bin/imgclust run' for the example, '.venv/bin/python -m pytest' for the tests"
