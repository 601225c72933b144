#!/usr/bin/env bash
# The test suite: ruff, stripped notebooks, then ONE pytest session that runs
# the unit tests and every notebook cell (nbval-lax) on smoke-prepared copies.
set -euo pipefail
cd "$(dirname "$0")/.."
V=.venv/bin
export HYPOTHESIS_PROFILE=ci  # derandomized property tests (tests/conftest.py)
export MTLKIT_WIDGETS=off     # notebooks' widget cells inert under nbval (mtlkit.nb.setup)
echo "== ruff"; $V/ruff check mtlkit tests benchmarks data_scripts notebooks scripts
echo "== nbstripout --verify"; $V/nbstripout --verify notebooks/*.ipynb
echo "== smoke-prepared notebooks"
rm -rf runs/smoke-prepared
$V/python -m mtlkit.nbrun notebooks/*.ipynb --profile smoke --prepare-only --no-progress --out runs/smoke-prepared
echo "== pytest"
set +e
$V/python -m pytest tests runs/smoke-prepared --nbval-lax --nbval-current-env \
  -n "${PYTEST_WORKERS:-2}" --dist loadfile -p no:randomly -q "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: the suite is broken, failing" >&2
fi
exit $rc
