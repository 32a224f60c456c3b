#!/usr/bin/env bash
# The test command (README: `make test`): lint, type-check, then every unit and
# integration test against the real local services (started by the test session if they
# are not running, and stopped again afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy (strict)"
mypy
echo "== pytest"
# The slowest tests are listed at the end: the chaos short run must stay under 5 minutes
# (issue 14), and CI keeps this output when a run fails.
pytest -q -p no:cacheprovider --durations=15 "$@"
