#!/usr/bin/env bash
# The README's first command (`make demo`): bring up the local services, migrate, run the
# pipeline end to end on one bootstrap, print the event chain, and stop what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pipeline.demo "$@"
