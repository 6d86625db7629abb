# ruff: noqa: T201 - a benchmark prints its figures
"""The live app end to end at a pushed rate: capture, decode, context, model, events, database.

    sudo .venv/bin/python bench/bench_live.py [--rate 100000] [--seconds 60]
        [--baseline-rate 10000] [--baseline-seconds 20] [--capture FILE] [--runs 1]

It makes two network namespaces joined by a veth pair (MTU 9000, offloads off), starts the
app's own :class:`~netids.controller.Controller` capturing on one end (the code path of "Start
monitoring" on the dashboard, with a database file), and replays a capture into the other end
with ``tcpreplay --pps RATE --loop``, preloaded. The capture defaults to the shared
``mixed_dev.pcap`` (real benign traffic with 19 attack kinds), from ``NETIDS_SHARED_DATA``
(default ``../shared/data``). The low baseline rate runs first in the same run.

Printed per rate: packets sent, captured, scored, shed (counted but not scored, when the app
sheds load), dropped by the kernel and by the queue, the share lost, the achieved rates, and
CPU seconds by thread (capture, pipeline, event loop, event writer, other), which says where
the time goes. Namespaces are removed at the end, after an error or Ctrl-C, and those of an
earlier run that died are removed at the start. Needs root and tcpreplay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procs import sigterm_as_ctrl_c  # noqa: E402

from netids.config import Settings  # noqa: E402
from netids.controller import Controller  # noqa: E402

PREFIX = "netids-bench-"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    rate: int
    sent: int = 0
    send_seconds: float = 0.0
    captured: int = 0
    scored: int = 0
    shed: int = 0
    unread: int = 0  # of the shed, counted without decoding (deep overload)
    kernel_drops: int = 0
    queue_drops: int = 0
    events: int = 0
    catch_up: float = 0.0  # seconds after the replay until every captured packet was handled
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        """Sent but neither scored nor counted as shed: drops of any kind, counted or not."""
        return max(0, self.sent - self.scored - self.shed)

    def lines(self) -> list[str]:
        pct = 100 * self.lost / self.sent if self.sent else 0.0
        wall = self.send_seconds + self.catch_up
        cpu = "  ".join(f"{k} {v:.1f}" for k, v in self.cpu.items())
        return [
            f"--- pushed at {self.rate:,} packets/s",
            f"sent {self.sent:,} in {self.send_seconds:.1f} s "
            f"({self.sent / max(self.send_seconds, 1e-9):,.0f}/s)  captured {self.captured:,}  "
            f"scored {self.scored:,}  shed {self.shed:,} (counted, not scored; "
            f"{self.unread:,} not decoded)",
            f"dropped: kernel {self.kernel_drops:,}  queue {self.queue_drops:,}  "
            f"lost in all {self.lost:,} = {pct:.2f} % of sent  "
            f"(scored {100 * self.scored / max(self.sent, 1):.1f} %)",
            f"handled {(self.scored + self.shed) / max(wall, 1e-9):,.0f} packets/s "
            f"(caught up {self.catch_up:.1f} s after the replay)  events opened {self.events:,}",
            f"CPU seconds by thread: {cpu}",
        ]


class VethPair:
    """Two namespaces, ``gen`` and ``cap``, joined by a veth pair; deleted on exit, always."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid()}"
        self.gen, self.cap = f"{PREFIX}{self.tag}-gen", f"{PREFIX}{self.tag}-cap"

    def __enter__(self) -> VethPair:
        remove_stale()
        try:
            for ns in (self.gen, self.cap):
                run("ip", "netns", "add", ns)
                run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", self.gen, "link", "add", "veth0", "type", "veth",
                "peer", "name", "veth1", "netns", self.cap)
            for ns, dev in ((self.gen, "veth0"), (self.cap, "veth1")):
                run("ip", "-n", ns, "link", "set", dev, "mtu", "9000")
                subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off",
                                "gso", "off", "gro", "off", "tx", "off", "rx", "off"],
                               capture_output=True, check=False)
                run("ip", "-n", ns, "link", "set", dev, "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def destroy(self) -> None:
        for ns in (self.gen, self.cap):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    async def replay(self, pcap: Path, rate: int, packets: int) -> tuple[int, float]:
        """tcpreplay ``packets`` packets of ``pcap`` (looped) at ``rate``; (sent, seconds)."""
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.gen, "tcpreplay", "-q", "-K", "-i", "veth0",
            "--pps", str(rate), "--loop", "0", "--limit", str(packets), str(pcap),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out = (await proc.communicate())[0].decode(errors="replace")
        finally:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        sent = re.search(r"Successful packets:\s+(\d+)", out)
        secs = re.search(r"packets \(\d+ bytes\) sent in ([\d.]+) seconds", out)
        if sent is None or secs is None:
            raise SystemExit(f"tcpreplay printed no totals: {out.strip()[-300:]}")
        return int(sent.group(1)), float(secs.group(1))


async def measure(pair: VethPair, pcap: Path, rate: int, seconds: float, db: str) -> Result:
    """Run the app's controller on the ``cap`` end while tcpreplay pushes ``rate`` packets/s."""
    ctl = Controller(Settings(db_url=db))
    ctl.open()
    if ctl.detector is None:
        raise SystemExit(f"no model: {ctl.model_error}")
    result = Result(rate)
    try:
        await ctl.start_live("veth1", None, netns=pair.cap)
        await asyncio.sleep(1.0)
        cpu0 = thread_cpu()
        result.sent, result.send_seconds = await pair.replay(pcap, rate, int(rate * seconds))
        t0 = time.monotonic()
        await caught_up(ctl, timeout=120)
        result.catch_up = time.monotonic() - t0
        cpu1 = thread_cpu()
        result.cpu = {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in cpu1}
    finally:
        stats = ctl._source.stats() if ctl._source is not None else None  # noqa: SLF001
        await ctl.stop()
        live = ctl.live
        await ctl.close()
    result.captured = stats.packets if stats else 0
    result.shed = getattr(live, "shed", 0)  # main at c2b1f20 has no shedding
    result.scored = live.packets - result.shed
    result.unread = getattr(live, "unread", 0)
    result.kernel_drops, result.queue_drops = live.kernel_drops, live.queue_drops
    result.events = live.session_events
    return result


async def caught_up(ctl: Controller, timeout: float) -> None:
    """Until the pipeline has handled (scored, shed or dropped) every frame captured so far
    and no new frame came for half a second."""
    deadline, last, still = time.monotonic() + timeout, -1, 0.0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        source = ctl._source  # noqa: SLF001 - the bench reads the capture counters directly
        captured = source.stats().packets if source is not None else 0
        live = ctl.live
        handled = live.packets + live.queue_drops  # packets: scored and shed alike
        still = still + 0.1 if captured == last else 0.0
        last = captured
        if handled >= captured and still >= 0.5:
            return


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by role (Python thread name, else 'other':
    torch's and the database driver's own threads)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    roles = {"MainThread": "event loop", "netids-capture": "capture",
             "netids-event-writer": "event writer"}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            fields = task.joinpath("stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
            name = names.get(int(task.name), "")
            role = "pipeline" if name.startswith("netids-pipeline") else roles.get(name, "other")
            out[role] = out.get(role, 0.0) + cpu
    return out


def remove_stale() -> None:
    """Namespaces of earlier bench runs whose process is gone (kill -9)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        ns = line.split()[0] if line.strip() else ""
        owner = ns[len(PREFIX):].split("-", 1)[0] if ns.startswith(PREFIX) else ""
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {done.stderr.strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100_000, help="packets/s (default 100000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="replay length (60)")
    parser.add_argument("--baseline-rate", type=int, default=10_000, help="low rate (10000)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0, help="its length (20)")
    parser.add_argument("--capture", type=Path, help="pcap to replay (default mixed_dev.pcap)")
    parser.add_argument("--runs", type=int, default=1, help="repeat the pair of rates")
    args = parser.parse_args()
    data = Path(os.environ.get("NETIDS_SHARED_DATA", ROOT.parent / "shared" / "data"))
    pcap = args.capture or data / "mixed_dev.pcap"
    if os.geteuid() != 0:
        sys.exit("the live bench needs root (network namespaces, raw sockets)")
    if not pcap.is_file():
        sys.exit(f"capture not found: {pcap} (set NETIDS_SHARED_DATA or pass --capture)")
    sigterm_as_ctrl_c()  # the namespaces are removed
    print(f"replaying {pcap} ({ROOT})")
    with VethPair() as pair, tempfile.TemporaryDirectory() as tmp:
        for run_no in range(args.runs):
            for rate, secs in ((args.baseline_rate, args.baseline_seconds),
                               (args.rate, args.seconds)):
                db = f"sqlite:///{tmp}/bench-{run_no}-{rate}.sqlite"
                result = asyncio.run(measure(pair, pcap, rate, secs, db))
                print("\n".join(result.lines()), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted: the bench's namespaces are removed")
