"""``python app.py export --db URL --format csv|jsonl --out FILE``: stored events, written out.

``--format pcap --event ID --out FILE`` writes the sample packets of one event instead;
``--connections --format zeek|csv`` the stored connections (those behind ``--event ID`` with
one), as a Zeek conn.log or CSV.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from netids.commands import CommandError, fraction
from netids.config import Settings
from netids.detect.event_records import SEVERITIES
from netids.store.conn_export import FORMATS as CONN_FORMATS
from netids.store.conn_export import export_connections
from netids.store.conn_queries import ConnFilter
from netids.store.engine import open_database
from netids.store.export import FORMATS, export_events, export_samples_pcap
from netids.store.queries import EventFilter, address_range, get_event


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(name, help="write stored events as CSV or JSON lines, or samples as pcap")
    p.add_argument("--db", default=argparse.SUPPRESS, help="database URL (default: NETIDS_DB)")
    p.add_argument("--format", required=True, choices=[*FORMATS, "pcap", "zeek"],
                   help="zeek: with --connections, Zeek's conn.log TSV")
    p.add_argument("--connections", action="store_true",
                   help="write stored connections (--format zeek or csv) instead of events")
    p.add_argument("--state", help="with --connections: Zeek's conn_state (S0, SF, REJ, ...)")
    p.add_argument("--out", required=True, help="output file ('-' for stdout, csv/jsonl only)")
    p.add_argument("--event", help="event id whose sample packets --format pcap writes "
                                   "(with --connections: whose connections)")
    p.add_argument("--since", type=_time, help="events going on at or after (ISO 8601, UTC)")
    p.add_argument("--until", type=_time, help="events started at or before (ISO 8601, UTC)")
    p.add_argument("--sensor")
    p.add_argument("--src", help="source address or CIDR")
    p.add_argument("--dst", help="destination address or CIDR")
    p.add_argument("--proto")
    p.add_argument("--kind")
    p.add_argument("--min-score", type=fraction)
    p.add_argument("--min-severity", choices=SEVERITIES)


def run(args: argparse.Namespace, settings: Settings) -> int:
    for text in (args.src, args.dst):
        if text:
            try:
                address_range(text)  # a bad filter is refused before the output is created
            except ValueError as exc:
                raise CommandError(str(exc)) from None
    url = settings.db_url
    if url.startswith("sqlite") and "///" in url:
        path = Path(url.split("///", 1)[1])
        if not path.exists():
            raise CommandError(f"no database at {path}")
    try:
        engine = open_database(url, settings.storage)
        with Session(engine) as session:
            if args.connections or args.format == "zeek":
                return _connections(args, session)
            if args.format == "pcap":
                return _pcap(args, session)
            flt = EventFilter(
                since=args.since, until=args.until, sensor=args.sensor, src=args.src,
                dst=args.dst, proto=args.proto, kind=args.kind, min_score=args.min_score,
                min_severity=args.min_severity,
            )
            if args.out == "-":
                n = export_events(sys.stdout, args.format, session=session, filter=flt)
            else:
                with Path(args.out).open("w", encoding="utf-8", newline="") as fh:
                    n = export_events(fh, args.format, session=session, filter=flt)
    except ValueError as exc:  # a filter the user typed (bad CIDR, ...)
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"database {engine_name(url)}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise CommandError(f"{args.out}: {exc.strerror}") from None
    if args.out != "-":
        sys.stderr.write(f"{n} events written to {args.out}\n")
    return 0


def _connections(args: argparse.Namespace, session: Session) -> int:
    if not args.connections or args.format not in CONN_FORMATS:
        raise CommandError("connections are written with --connections --format zeek or csv")
    flt = ConnFilter(since=args.since, until=args.until, sensor=args.sensor, src=args.src,
                     dst=args.dst, proto=args.proto, state=args.state, event=args.event)
    if args.out == "-":
        n = export_connections(sys.stdout, args.format, session=session, filter=flt)
    else:
        with Path(args.out).open("w", encoding="utf-8", newline="") as fh:
            n = export_connections(fh, args.format, session=session, filter=flt)
        sys.stderr.write(f"{n} connections written to {args.out}\n")
    return 0


def _pcap(args: argparse.Namespace, session: Session) -> int:
    if not args.event:
        raise CommandError("--format pcap needs --event ID")
    if args.out == "-":
        raise CommandError("--out - (standard output) is for csv and jsonl; give a file name "
                           "for the pcap")
    if get_event(args.event, session=session) is None:
        raise CommandError(f"no event {args.event}")
    n = export_samples_pcap(args.event, args.out, session=session)
    sys.stderr.write(f"{n} sample packets written to {args.out}\n")
    return 0


def _time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def engine_name(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a message helper must not fail
        return "?"
