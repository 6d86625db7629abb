"""Scoring throughput of the real model: batched tumbling windows vs one call per packet.

    python bench/bench_model.py [--model models/default.pt] [--capture FILE] [--threads 2]

Prints packets/s for the detector's ``score_batch`` on batches of 1,024 and of 4,096 packets
(the pipeline's batch): scaling, network under ``torch.inference_mode``, per-input surprise and
calibration, everything the pipeline pays; for the network alone, and for the seed's way, one
model call per packet, measured in the same run on the same packets. Last, the two cores as
``score`` uses them: one forked worker and the main process scoring batches side by side (one
torch thread each, batches handed over through shared memory, results in order).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netids.detect.detector import Detector  # noqa: E402
from netids.detect.model import to_windows  # noqa: E402
from netids.detect.scaling import categorical_codes, raw_numeric  # noqa: E402
from netids.parallel.workers import OrderedPool, can_fork  # noqa: E402
from netids.training.checkpoint import load_detector
from netids.training.data import read_capture

log = logging.getLogger("bench")


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} packets/s"


def network_inputs(det: Detector, packets, feats) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's scaled inputs and codes for whole windows of the capture."""
    scaler = det.checkpoint.scaler
    m = len(packets) // det.window * det.window
    scaled = scaler.transform(raw_numeric(packets, feats, det.packet_numeric))
    num, _ = to_windows(scaler.clamp(scaled)[:m], det.window)
    cod, _ = to_windows(categorical_codes(packets)[:m], det.window)
    return torch.from_numpy(num.astype("float32")), torch.from_numpy(cod)


def two_processes(det: Detector, packets, feats, batch: int) -> float:
    """Seconds to score the capture with a forked worker and the main process side by side."""
    batches = [(packets.take(slice(a, a + batch)), feats[a:a + batch])
               for a in range(0, len(packets), batch)]
    with OrderedPool(lambda item: det.score_batch(*item).scores, processes=1) as pool:
        pool.submit(batches[0])
        pool.next()  # the worker is up and warm
        t = time.perf_counter()
        for item in batches:
            pool.submit(item)
            while pool.ready():
                pool.next()
        while pool.pending:
            pool.next()
        return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default.pt"))
    parser.add_argument("--capture",
                        default=str(ROOT.parent / "shared" / "data" / "mixed_dev.pcap"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1024, 4096],
                        help="packets per score_batch call")
    parser.add_argument("--single", type=int, default=2000, help="packets scored one by one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    packets, feats = read_capture(args.capture)
    n = len(packets)
    log.info("capture %s: %d packets; model %s", args.capture, n, args.model)
    for threads in args.threads:
        det = load_detector(Path(args.model), threads=threads)
        det.score_batch(packets.take(slice(0, 4096)), feats[:4096])  # warm-up
        num, cod = network_inputs(det, packets, feats)
        k = min(args.single, n)
        t = time.perf_counter()
        for i in range(k):
            det.score_batch(packets.take(slice(i, i + 1)), feats[i:i + 1])
        single = (time.perf_counter() - t) / k
        log.info("threads %d: one call per packet %s", threads, rate(k, single * k))
        for batch in args.batch:
            t = time.perf_counter()
            for a in range(0, n, batch):
                det.score_batch(packets.take(slice(a, a + batch)), feats[a:a + batch])
            batched = time.perf_counter() - t
            # the network alone on the same packets, its inputs prepared beforehand
            torch.set_num_threads(threads)
            w = batch // det.window
            t = time.perf_counter()
            with torch.inference_mode():
                for a in range(0, len(num), w):
                    det.model.errors(num[a:a + w], cod[a:a + w])
            network = time.perf_counter() - t
            log.info("threads %d: score_batch x%d %s (%.0fx one call per packet) | "
                     "network only %s", threads, batch, rate(n, batched), single / (batched / n),
                     rate(len(num) * det.window, network))
    if can_fork():
        det = load_detector(Path(args.model), threads=1)
        for batch in args.batch:
            both = two_processes(det, packets, feats, batch)
            log.info("2 processes (a worker and the main process, 1 thread each): "
                     "score_batch x%d %s", batch, rate(n, both))
    return 0


if __name__ == "__main__":
    sys.exit(main())
