#!/usr/bin/env bash
# Every test, as CI runs it: lint, unit tests, notebooks (nbval), docs build, benchmark smoke,
# all in one pytest session with the Khronos validation layer on (any validation error fails the
# test that caused it).
set -euo pipefail
cd "$(dirname "$0")/.."
export VKNB_VALIDATION=${VKNB_VALIDATION:-1}
export PYTHONUNBUFFERED=1
echo "==> ruff"
.venv/bin/ruff check vknb tests benchmarks scripts
echo "==> pytest (unit tests, notebooks with nbval, docs, benchmark smoke); VKNB_VALIDATION=$VKNB_VALIDATION"
exec .venv/bin/python -m pytest -p no:cacheprovider --nbval --nbval-current-env \
  --nbval-sanitize-with notebooks/sanitize.cfg tests notebooks "$@"
