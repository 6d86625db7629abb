#!/usr/bin/env bash
# Set up (first run only) and start netids; arguments go to app.py (e.g. --native, score ...).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " == *" --native "* ]]; then
    bash scripts/setup.sh --native
else
    bash scripts/setup.sh
fi
exec .venv/bin/python app.py "$@"
