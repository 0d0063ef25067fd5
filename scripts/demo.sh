#!/usr/bin/env bash
# The README's first command: sets up .venv, then runs the main job on the embedded default
# (local Kafka-compatible broker + real redis-server, built-in synthetic city). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mobstream demo "$@"
