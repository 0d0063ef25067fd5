#!/usr/bin/env bash
# The README's test command: sets up .venv if needed, then runs the test suite.
#   bash scripts/test.sh           default run: unit + integration (real broker, real Redis), no slow tests
#   bash scripts/test.sh --all     also the tests marked slow
#   bash scripts/test.sh -k words  any other arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
marker=(-m "not slow")
if [ "${1:-}" = "--all" ]; then marker=(); shift; fi
exec .venv/bin/python -m pytest "${marker[@]}" "$@"
