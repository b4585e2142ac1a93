#!/usr/bin/env bash
# The full check, exactly as CI runs it: setup, lint, types, then the tests (which start their
# own Kafka broker and Redis through tests/conftest.py). Extra arguments go to pytest, e.g.
#   bash scripts/test.sh tests/infra -x
# BANDO_SKIP_LINT=1 skips ruff and mypy for a quicker local loop.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/python.sh
export PYTHON

bash scripts/setup.sh

if [[ ${BANDO_SKIP_LINT:-0} != 1 ]]; then
  echo "== ruff"
  "$PYTHON" -m ruff check .
  echo "== mypy"
  "$PYTHON" -m mypy
fi

echo "== pytest"
# No cache directory in the checkout; per-test timeout so a hung test fails instead of
# eating CI's time; -ra lists skips so none goes unnoticed. Exit status 5 (no test ran)
# stays a failure.
exec "$PYTHON" -m pytest -q -p no:cacheprovider --timeout=300 -ra --durations=10 "$@"
