"""Score every capture of the shared data with the shipped model and compare each score CSV
with its stored digest: a restructure that changes no behaviour changes no digest.

    .venv/bin/python bench/score_digests.py            # compare with bench/score_digests.json
    .venv/bin/python bench/score_digests.py --update   # store the current digests

The command run is exactly ``python app.py score CAPTURE --out CSV`` (``netids.cli.main``), so
the CSV is what a user gets, at the precision it prints. Captures come from
``NETIDS_SHARED_DATA`` (default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netids import cli  # noqa: E402

DIGESTS = Path(__file__).with_suffix(".json")


def shared_data() -> Path:
    return Path(os.environ.get("NETIDS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def digest_of(capture: Path, workdir: Path) -> str:
    """sha256 of the score CSV of ``capture``, or ``error: ...`` when the command refuses it."""
    out = workdir / "scores.csv"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["score", str(capture), "--out", str(out)])
    if status:
        return "error: " + err.getvalue().strip().splitlines()[-1]
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="store the digests measured now")
    args = parser.parse_args()
    data = shared_data()
    captures = sorted(p for p in data.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    if not captures:
        print(f"no captures under {data}")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        now = {str(p.relative_to(data)): digest_of(p, Path(tmp)) for p in captures}
    if args.update:
        DIGESTS.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"stored {len(now)} digests in {DIGESTS}")
        return 0
    stored = json.loads(DIGESTS.read_text())
    changed = sorted(k for k in now.keys() | stored.keys() if now.get(k) != stored.get(k))
    for name in changed:
        print(f"differs: {name}: {stored.get(name)} -> {now.get(name)}")
    print(f"{len(now) - len(changed)} of {len(now)} score CSVs identical to the stored digests")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
