#!/usr/bin/env bash
# Every test, as CI runs it: lint, format and type checks, then unit tests, notebooks (nbval),
# docs build and benchmark smoke in one pytest session with the Khronos validation layer on
# (any validation error fails the test that caused it).
set -euo pipefail
cd "$(dirname "$0")/.."
export VKNB_VALIDATION=${VKNB_VALIDATION:-1}
export PYTHONUNBUFFERED=1
echo "==> ruff (lint and format), mypy"
.venv/bin/ruff check --no-cache vknb tests benchmarks scripts docs/gen_api.py
.venv/bin/ruff format --check --no-cache vknb tests benchmarks scripts docs/gen_api.py
.venv/bin/mypy vknb
echo "==> pytest (unit tests, notebooks with nbval, docs, benchmark smoke); VKNB_VALIDATION=$VKNB_VALIDATION"
exec .venv/bin/python -m pytest -p no:cacheprovider --nbval --nbval-current-env \
  --nbval-sanitize-with notebooks/sanitize.cfg tests notebooks "$@"
