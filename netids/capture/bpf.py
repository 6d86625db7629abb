"""Capture filters: tcpdump syntax compiled to classic BPF by libpcap (through scapy)."""

from __future__ import annotations

import ctypes
import logging
import struct

from netids.capture.source import CaptureError
from netids.detect.frames import LINKTYPE_ETHERNET

log = logging.getLogger(__name__)


class BpfProgram:
    """A compiled classic BPF program, kept alive as long as its ``sock_fprog`` is used."""

    def __init__(self, insns: bytes, count: int) -> None:
        self._buf = ctypes.create_string_buffer(insns, len(insns))
        self.fprog = struct.pack("HL", count, ctypes.addressof(self._buf))


def compile_filter(expr: str, linktype: int = LINKTYPE_ETHERNET) -> BpfProgram:
    """Compile a tcpdump-syntax filter with libpcap (through scapy); no root needed.

    Frames of every interface are matched as Ethernet frames (``lo`` included), or as
    raw IP when ``linktype`` is LINKTYPE_RAW.
    """
    try:
        from scapy.arch.common import compile_filter as scapy_compile
        from scapy.error import Scapy_Exception
    except ImportError as exc:  # pragma: no cover - scapy is a dependency
        raise CaptureError("capture filters need scapy installed") from exc
    try:
        prog = scapy_compile(expr, linktype=linktype)
    except ImportError as exc:
        raise CaptureError(
            "cannot compile capture filters: libpcap is not installed (apt install libpcap0.8)"
        ) from exc
    except Scapy_Exception as exc:
        text = str(exc)
        reason = text[text.rfind("(") + 1 : -1] if text.endswith(")") else text
        raise CaptureError(f"invalid capture filter {expr!r}: {reason}") from exc
    count = int(prog.bf_len)
    insns = ctypes.string_at(prog.bf_insns, count * 8)
    try:
        from scapy.libs.winpcapy import pcap_freecode

        pcap_freecode(ctypes.byref(prog))
    except Exception:
        log.debug("pcap_freecode failed", exc_info=True)
    return BpfProgram(insns, count)


def compile_live(expr: str, interface: str) -> BpfProgram | None:
    """libpcap's program for a live interface of this namespace, or None if it cannot open it.

    Unlike a program compiled for a link type alone, it knows the interface's real link type
    and that the kernel keeps VLAN tags out of the frame (so ``vlan`` filters work).
    """
    try:
        from scapy.libs.structures import bpf_program
        from scapy.libs.winpcapy import (
            PCAP_ERRBUF_SIZE,
            pcap_close,
            pcap_compile,
            pcap_freecode,
            pcap_open_live,
        )
    except (ImportError, OSError):
        return None
    err = ctypes.create_string_buffer(PCAP_ERRBUF_SIZE)
    pcap = pcap_open_live(interface.encode(), 65535, 0, 0, err)
    if not pcap:
        return None
    try:
        prog = bpf_program()
        if pcap_compile(pcap, ctypes.byref(prog), expr.encode(), 1, -1) == -1:
            return None
        count = int(prog.bf_len)
        insns = ctypes.string_at(prog.bf_insns, count * 8)
        pcap_freecode(ctypes.byref(prog))
        return BpfProgram(insns, count)
    finally:
        pcap_close(pcap)
