"""netids entry point: ``python app.py --help``."""

import sys

from netids.cli import main

if __name__ in {"__main__", "__mp_main__"}:
    sys.exit(main())
