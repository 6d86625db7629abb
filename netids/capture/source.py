"""What both capture sources share: the error the user reads and the counters they keep."""

from __future__ import annotations

from dataclasses import dataclass

PERMISSION_HINT = (
    "capture needs root or CAP_NET_RAW: run as root, or "
    "`sudo setcap cap_net_raw,cap_net_admin+eip $(readlink -f $(which python3))`"
)


class CaptureError(Exception):
    """A capture that cannot start or stopped; the message is meant for the user as it is."""


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """Counters of one capture session since ``start()``."""

    packets: int = 0  # frames handed on (or dropped by the queue)
    bytes: int = 0  # wire bytes of those frames
    kernel_drops: int = 0  # frames the kernel could not put in the ring (reader too slow)
    queue_drops: int = 0  # frames dropped because the consumer fell behind
    queue_dropped_batches: int = 0
    batches: int = 0  # batches handed to the consumer
