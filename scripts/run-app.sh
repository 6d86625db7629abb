#!/usr/bin/env bash
# Set up (first run only) and start netids; arguments go to app.py (e.g. --native, score ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
