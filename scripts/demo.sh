#!/usr/bin/env bash
# The demo, from a fresh machine: installs what is missing (scripts/setup.sh), then runs
# `bando demo`: Kafka broker, Redis, scorer, board writer, wall display, notifier, simulator.
# Extra arguments go to `bando demo` (see `bando demo --help`). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/python.sh
export PYTHON
bash scripts/setup.sh
exec "$PYTHON" -m bando.cli demo "$@"
