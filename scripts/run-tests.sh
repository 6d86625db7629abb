#!/usr/bin/env bash
# Set up (system packages, venv, PostgreSQL) and run the whole test suite; arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export NETIDS_TEST_PG_URL="${NETIDS_TEST_PG_URL:-$(bash scripts/start_postgres.sh)}"
exec .venv/bin/python -m pytest "$@"
