"""Connection records as Zeek's conn.log has them, and their text in Zeek's TSV format.

A :class:`ConnRecord` is what the connection tracker (:mod:`netids.detect.connections`) emits
and what behaviour detectors read: one frozen record per connection when it ends (closed,
timed out, evicted, or at the end of the input), plus ``in_progress`` snapshots of long ones.
Field names and meanings follow Zeek's ``Conn::Info`` (scripts/base/protocols/conn/main.zeek);
the fields after ``resp_ip_bytes`` are netids' own. :func:`zeek_header` and :func:`zeek_line`
write the log as Zeek's ASCII writer does (``#separator \\x09``, ``-`` for unset fields).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Well-known responder ports, the service guess (Zeek finds services by inspecting payload;
# netids guesses from the port alone, so a web server on port 22 is called "ssh"). These are
# also the "likely server ports" that decide who originated a connection seen midstream.
SERVICES: dict[tuple[str, int], str] = {
    **{("tcp", port): name for port, name in (
        (20, "ftp-data"), (21, "ftp"), (22, "ssh"), (23, "telnet"), (25, "smtp"), (53, "dns"),
        (80, "http"), (88, "krb"), (110, "pop3"), (111, "rpc"), (135, "dce_rpc"),
        (139, "smb"), (143, "imap"), (389, "ldap"), (443, "ssl"), (445, "smb"),
        (465, "smtp"), (502, "modbus"), (587, "smtp"), (636, "ldap"), (993, "imap"),
        (995, "pop3"), (1433, "mssql"), (1883, "mqtt"), (3128, "http"), (3306, "mysql"),
        (3389, "rdp"), (5432, "postgresql"), (5900, "vnc"), (6379, "redis"),
        (8000, "http"), (8080, "http"), (8443, "ssl"), (8883, "ssl"))},
    **{("udp", port): name for port, name in (
        (53, "dns"), (67, "dhcp"), (68, "dhcp"), (69, "tftp"), (88, "krb"), (123, "ntp"),
        (137, "netbios-ns"), (138, "netbios-dgm"), (161, "snmp"), (162, "snmp"),
        (443, "quic"), (500, "ipsec"), (514, "syslog"), (1812, "radius"), (1900, "ssdp"),
        (5060, "sip"), (5353, "dns"), (5355, "dns"))},
}
SERVER_PORTS = {proto: sorted(p for t, p in SERVICES if t == proto) for proto in ("tcp", "udp")}

ZEEK_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
               "service", "duration", "orig_bytes", "resp_bytes", "conn_state", "missed_bytes",
               "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")
ZEEK_TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval",
              "count", "count", "string", "count", "string", "count", "count", "count", "count")
EXTRA_FIELDS = ("orig_sizes", "resp_sizes", "in_progress", "ended")
EXTRA_TYPES = ("vector[count]", "vector[count]", "bool", "string")


@dataclass(frozen=True, slots=True)
class ConnRecord:
    """One connection, as Zeek's conn.log has it, plus what netids' detectors need.

    Bytes are payload bytes (TCP and UDP payload, ICMP data after its 8-byte header); Zeek
    takes TCP's from sequence numbers, so the two differ when segments are retransmitted.
    ``duration``, ``orig_bytes`` and ``resp_bytes`` are None when the connection lasted no
    time (one packet), as Zeek leaves them unset.
    """

    ts: float  # first packet
    uid: str  # "C" and 17 base-62 digits, unique in a run
    orig_h: str
    orig_p: int  # ICMP: the message type
    resp_h: str
    resp_p: int  # ICMP: the counterpart type (echo reply for a request), else the code
    proto: str  # "tcp", "udp" or "icmp" (ICMPv6 too, as in Zeek)
    service: str | None  # guessed from the responder's port: see SERVICES
    duration: float | None  # first packet to last (TCP: to the packet that closed both sides)
    orig_bytes: int | None
    resp_bytes: int | None
    conn_state: str  # Zeek's: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH
    missed_bytes: int  # always 0: netids does not reassemble streams
    history: str | None  # Zeek's letters (see netids.detect.conn_state); None for ICMP
    orig_pkts: int
    orig_ip_bytes: int  # IP bytes (headers included) the originator sent
    resp_pkts: int
    resp_ip_bytes: int
    orig_sizes: tuple[int, ...]  # payload sizes of the originator's first payload packets
    resp_sizes: tuple[int, ...]  # ... and the responder's (at most ConnConfig.sizes_kept)
    in_progress: bool  # a snapshot of a long connection still open; its final record follows
    ended: str  # why it was written: closed, timeout, evicted, end of input; "" in progress


def zeek_header(path: str = "conn", opened: str = "") -> str:
    """The header lines of Zeek's ASCII log format, with netids' extra fields at the end."""
    lines = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
             "#unset_field\t-", f"#path\t{path}"]
    if opened:
        lines.append(f"#open\t{opened}")
    lines.append("#fields\t" + "\t".join(ZEEK_FIELDS + EXTRA_FIELDS))
    lines.append("#types\t" + "\t".join(ZEEK_TYPES + EXTRA_TYPES))
    return "\n".join(lines) + "\n"


def zeek_line(r: ConnRecord) -> str:
    """One record as a line of Zeek's TSV (no newline).

    >>> r = ConnRecord(1.5, "Cabc", "10.0.0.1", 40000, "10.0.0.2", 22, "tcp", "ssh", 0.25,
    ...                0, 0, "S0", 0, "S", 1, 60, 0, 0, (), (), False, "timeout")
    >>> zeek_line(r).split("\\t")[6:14]
    ['tcp', 'ssh', '0.250000', '0', '0', 'S0', '0', 'S']
    """
    def opt(value: object) -> str:
        return "-" if value is None else str(value)

    def sizes(values: tuple[int, ...]) -> str:
        return ",".join(map(str, values)) if values else "(empty)"

    duration = "-" if r.duration is None else f"{r.duration:.6f}"
    fields = (f"{r.ts:.6f}", r.uid, r.orig_h, str(r.orig_p), r.resp_h, str(r.resp_p), r.proto,
              opt(r.service), duration, opt(r.orig_bytes), opt(r.resp_bytes), r.conn_state,
              str(r.missed_bytes), opt(r.history), str(r.orig_pkts), str(r.orig_ip_bytes),
              str(r.resp_pkts), str(r.resp_ip_bytes), sizes(r.orig_sizes), sizes(r.resp_sizes),
              "T" if r.in_progress else "F", r.ended or "-")
    return "\t".join(fields)


_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                        dtype=np.uint8)


def make_uids(seed: int, serials: np.ndarray) -> list[str]:
    """Zeek-like uids ("C" and 17 base-62 digits), reproducible from a seed and serial numbers.

    >>> a, b = make_uids(0, np.array([1, 2]))
    >>> a == make_uids(0, np.array([1]))[0], a == b, a[0], len(a)
    (True, False, 'C', 18)
    """
    x = serials.astype(np.uint64) ^ np.uint64(seed & (2**64 - 1))
    digits = []
    for width in (11, 6):  # two splitmix64 outputs: 11 digits of one, 6 of the next
        x = splitmix(x)
        value = x
        for _ in range(width):
            digits.append(value % np.uint64(62))
            value = value // np.uint64(62)
    chars = _BASE62[np.stack(digits, axis=1).astype(np.intp)]
    return ["C" + text for text in chars.view(f"S{len(digits)}").ravel().astype(str).tolist()]


def splitmix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)  # uint64 arithmetic wraps around, as intended
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
