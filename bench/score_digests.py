"""Score every capture of the shared data with the shipped model and compare each score CSV
(and the events stored for two captures) with its stored digest: a restructure that changes
no behaviour changes no digest.

    .venv/bin/python bench/score_digests.py            # compare with bench/score_digests.json
    .venv/bin/python bench/score_digests.py --update   # store the current digests

The command run is exactly ``python app.py score CAPTURE --out CSV`` (``netids.cli.main``), so
the CSV is what a user gets, at the precision it prints. Captures come from
``NETIDS_SHARED_DATA`` (default ``../shared/data``). The stored events of the bundled lab sample
and of ``mixed_dev.pcap`` (``score --db``, then ``export --format jsonl``) are compared too,
without what differs by design between runs (event ids, write times).
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


EVENT_CAPTURES = ("netids/samples/lab_sample.pcap", "mixed_dev.pcap")
RUN_FIELDS = ("event_id", "updated_at", "sensor")  # differ between runs by design


def events_digest(capture: Path, workdir: Path) -> str:
    """sha256 of the events ``score --db`` stores for ``capture``, run-specific fields left
    out and rows sorted (write order follows event ids)."""
    db, out = f"sqlite:///{workdir / 'events.sqlite'}", workdir / "events.jsonl"
    (workdir / "events.sqlite").unlink(missing_ok=True)
    with contextlib.redirect_stderr(io.StringIO()):
        cli.main(["score", str(capture), "--out", str(workdir / "scores.csv"), "--db", db])
        cli.main(["export", "--db", db, "--format", "jsonl", "--out", str(out)])
    rows = []
    for line in out.read_text().splitlines():
        row = json.loads(line)
        rows.append(json.dumps({k: v for k, v in row.items() if k not in RUN_FIELDS},
                               sort_keys=True))
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


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
        for name in EVENT_CAPTURES:
            path = ROOT / name if name.startswith("netids/") else data / name
            now[f"events of {name}"] = events_digest(path, Path(tmp))
    if args.update:
        DIGESTS.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"stored {len(now)} digests in {DIGESTS}")
        return 0
    stored = json.loads(DIGESTS.read_text())
    changed = sorted(k for k in now.keys() | stored.keys() if now.get(k) != stored.get(k))
    for name in changed:
        print(f"differs: {name}: {stored.get(name)} -> {now.get(name)}")
    print(f"{len(now) - len(changed)} of {len(now)} digests (score CSVs and stored events) "
          f"identical to the stored ones")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
