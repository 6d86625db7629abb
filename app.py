"""netids entry point: ``python app.py --help``."""

import sys

from netids.cli import main

if __name__ in {"__main__", "__mp_main__"}:
    status = main()
    if status:  # a clean return (the UI stopped, a command succeeded) must not raise SystemExit:
        sys.exit(status)  # NiceGUI's test fixtures run this file and carry on

