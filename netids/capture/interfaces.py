"""Network interfaces: what the picker lists, and the link type an interface's frames carry."""

from __future__ import annotations

import fcntl
import json
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from netids.detect.frames import LINKTYPE_ETHERNET, LINKTYPE_RAW

LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_UNKNOWN = 0xFFFF  # a link layer the decoder is not expected to understand
ARPHRD_LOOPBACK = 772
LINKTYPES = {  # ARPHRD_* device type -> LINKTYPE_* of its frames on an AF_PACKET socket
    1: LINKTYPE_ETHERNET,  # ARPHRD_ETHER
    ARPHRD_LOOPBACK: LINKTYPE_ETHERNET,  # lo carries Ethernet headers of zeros
    65534: LINKTYPE_RAW,  # ARPHRD_NONE: tun, wireguard
    768: LINKTYPE_RAW,  # ARPHRD_TUNNEL (ipip)
    776: LINKTYPE_RAW,  # ARPHRD_SIT
    778: LINKTYPE_RAW,  # ARPHRD_IPGRE
    823: LINKTYPE_RAW,  # ARPHRD_IP6GRE
    769: LINKTYPE_RAW,  # ARPHRD_TUNNEL6
    803: LINKTYPE_IEEE802_11_RADIOTAP,
}


@dataclass(frozen=True, slots=True)
class Interface:
    """A network interface as the UI's picker shows it."""

    name: str
    index: int
    mac: str
    up: bool
    linktype: int  # LINKTYPE_* its frames carry
    addresses: tuple[str, ...] = field(default=())


def list_interfaces() -> list[Interface]:
    """The interfaces of this network namespace, for a picker (no root needed)."""
    addresses = _addresses()
    out = []
    for index, name in sorted(socket.if_nameindex()):
        base = Path("/sys/class/net") / name
        mac = _read(base / "address")
        flags = int(_read(base / "flags") or "0", 16)
        out.append(
            Interface(
                name=name,
                index=index,
                mac=mac,
                up=bool(flags & 0x1),  # IFF_UP
                linktype=linktype_of(int(_read(base / "type") or "1")),
                addresses=tuple(addresses.get(name, ())),
            )
        )
    return out


def linktype_of(arphrd: int) -> int:
    """LINKTYPE_* of the frames an AF_PACKET SOCK_RAW socket reads from a device type.

    >>> linktype_of(1), linktype_of(772), linktype_of(65534)
    (1, 1, 101)
    """
    return LINKTYPES.get(arphrd, LINKTYPE_UNKNOWN)


def hwtype(sock: socket.socket, name: str) -> int:
    """ARPHRD_* type of interface ``name`` in the socket's namespace (SIOCGIFHWADDR)."""
    try:
        ifreq = fcntl.ioctl(sock.fileno(), 0x8927, struct.pack("16s16x", name.encode()[:15]))
    except OSError:
        return -1
    return int(struct.unpack_from("H", ifreq, 16)[0])


def _addresses() -> dict[str, list[str]]:
    try:
        out = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=2, check=True
        ).stdout
        return {
            item["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in item.get("addr_info", [])]
            for item in json.loads(out)
        }
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return {}


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
