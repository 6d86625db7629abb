"""What the app keeps in its models folder between starts, database or not.

- **The active model without a database.** With a database the model registry says which
  version is active and which were trained here. Without one (it is down, or not wanted) the
  models folder says it: a checkpoint trained here carries ``trained_here`` in its metadata
  (:mod:`netids.training.background` writes it), and ``active-model.txt`` names the one made
  active, so a network learned once is not learned again at every start.
- **The threshold adapter's state** (:class:`~netids.detect.adaptive.AdapterState`), in
  ``adapted/DIGEST.npz``, keyed by the active checkpoint's SHA-256: the calibration keeps
  following this network across restarts, and a new or retrained model starts fresh.
- **What a model trained here was trained on, for the behaviour and DNS detectors**: the
  connection records and DNS messages of the traffic learning in place or the training page
  kept, in ``learned/DIGEST.json`` (owner-only, like every file here), keyed by the model's
  SHA-256: whenever that model is made active (at once, after review, or rolled back to),
  and at every live start while it is, the detectors learn this network's normal again
  (long-held services, busy servers, domains of many names).

Writing is best effort: a read-only or full folder is logged, never raised, since the app
runs on without either file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from netids.detect.adaptive import AdapterState, ThresholdAdapter
from netids.detect.conn_records import ConnRecord
from netids.detect.connections import connection_records
from netids.detect.dns import DnsRecord
from netids.detect.packets import PacketBatch
from netids.training.checkpoint import CheckpointError, read_metadata

log = logging.getLogger(__name__)

ACTIVE_FILE = "active-model.txt"  # the active checkpoint's file name, in the models folder
ADAPTED_DIR = "adapted"  # the adapter states, one file per model digest
LEARNED_DIR = "learned"  # what learned models were learned from, one file per model digest


def model_digest(path: Path) -> str:
    """The checkpoint's SHA-256 (hex): what an adapter state belongs to."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remember_active(models_dir: Path, model: Path) -> None:
    """Note ``model`` (a checkpoint in ``models_dir``) as the active one."""
    _write(models_dir / ACTIVE_FILE, model.name.encode())


def remembered_active(models_dir: Path) -> Path | None:
    """The checkpoint noted active by :func:`remember_active`, if it is still there."""
    try:
        name = (models_dir / ACTIVE_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    path = models_dir / name
    return path if name and "/" not in name and path.is_file() else None


def trained_here(models_dir: Path, shipped: Path) -> list[dict]:
    """The metadata of every readable checkpoint in ``models_dir`` trained here (learned in
    place or on the training page), the shipped model left out."""
    found = []
    for path in sorted(models_dir.glob("*.pt")) if models_dir.is_dir() else []:
        if path.resolve() == shipped.resolve():
            continue
        try:
            metadata = read_metadata(path)
        except CheckpointError:
            continue
        if metadata.get("trained_here"):
            found.append(metadata)
    return found


@dataclass(frozen=True, slots=True)
class SessionMemory:
    """Where one live session's threshold adapter and behaviour detectors are restored from,
    and the adapter kept: what is kept for the model with ``digest`` in ``models_dir``."""

    models_dir: Path
    digest: str

    def restore(self, adapter: ThresholdAdapter | None, sink: Learning | None = None) -> None:
        """Continue from the state kept for this model, if any, and teach ``sink``'s
        detectors what the model was learned from (before the first batch)."""
        state = load_adapter(self.models_dir, self.digest) if adapter is not None else None
        if adapter is not None and state is not None:
            adapter.restore(state)
        if sink is not None:
            teach_learned(self.models_dir, self.digest, sink)

    def keep(self, adapter: ThresholdAdapter | None) -> None:
        """Keep the adapter's state for the next start, once it has learned anything."""
        if adapter is not None and (adapter.learned or adapter.scale > 1.0):
            save_adapter(self.models_dir, self.digest, adapter.state())


class Learning(Protocol):
    """What learns a network's normal: the event sink's behaviour and DNS detectors."""

    def learn_behaviour(self, records: list[ConnRecord]) -> None: ...

    def learn_dns(self, records: list[DnsRecord]) -> None: ...


def save_learned(models_dir: Path, digest: str, connections: list[ConnRecord],
                 dns: list[DnsRecord]) -> None:
    """Keep what the model with ``digest`` was learned from, for its next starts."""
    _keep(models_dir / LEARNED_DIR / f"{digest}.json", "learned normal",
          json.dumps({"connections": [asdict(r) for r in connections],
                      "dns": [asdict(r) for r in dns]}).encode())


def keep_learned(models_dir: Path, model: Path, packets: PacketBatch,
                 dns: list[DnsRecord]) -> None:
    """Keep what the checkpoint ``model`` was trained on for the behaviour and DNS detectors:
    the connection records of ``packets``, and ``dns``, the DNS messages among them."""
    save_learned(models_dir, model_digest(model), connection_records(packets), dns)


def teach_learned(models_dir: Path, digest: str, sink: Learning) -> None:
    """``sink``'s detectors learn what the model with ``digest`` was trained on, when it was
    trained here (nothing kept: they keep their defaults)."""
    learned = load_learned(models_dir, digest)
    if learned is not None:
        sink.learn_behaviour(learned[0])
        sink.learn_dns(learned[1])


def load_learned(models_dir: Path,
                 digest: str) -> tuple[list[ConnRecord], list[DnsRecord]] | None:
    """(connection records, DNS messages) kept for the model with ``digest``; None when none
    were kept or the file is unreadable (the detectors then start from their defaults)."""
    path = models_dir / LEARNED_DIR / f"{digest}.json"
    if not path.is_file():
        return None
    try:
        kept = json.loads(path.read_bytes())
        connections = [ConnRecord(**{**r, "orig_sizes": tuple(r["orig_sizes"]),
                                     "resp_sizes": tuple(r["resp_sizes"])})
                       for r in kept["connections"]]
        dns = [DnsRecord(**r) for r in kept["dns"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("learned normal not restored: %s is unreadable (%s)", path, exc)
        return None
    return connections, dns


def save_adapter(models_dir: Path, digest: str, state: AdapterState) -> None:
    """Keep an adapter's state for the model with ``digest``."""
    lengths = np.array([len(s) for s in state.samples], np.int64)
    values = np.concatenate(state.samples) if state.samples else np.zeros(0)
    with tempfile.TemporaryFile() as buffer:
        np.savez(buffer, scale=np.float64(state.scale), learned=np.int64(state.learned),
                 lengths=lengths, values=values.astype(np.float64))
        buffer.seek(0)
        _keep(models_dir / ADAPTED_DIR / f"{digest}.npz", "threshold adaptation", buffer.read())


def load_adapter(models_dir: Path, digest: str) -> AdapterState | None:
    """The state kept for the model with ``digest``; None when there is none or it is
    unreadable (the adapter then starts from the trained calibration)."""
    path = models_dir / ADAPTED_DIR / f"{digest}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            lengths, values = f["lengths"], f["values"]
            scale, learned = float(f["scale"]), int(f["learned"])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("threshold adaptation not restored: %s is unreadable (%s)", path, exc)
        return None
    if lengths.sum() != len(values) or (lengths < 0).any() or not np.isfinite(scale):
        log.warning("threshold adaptation not restored: %s is inconsistent", path)
        return None
    samples = np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []
    return AdapterState(scale, learned, tuple(samples))


def _keep(path: Path, what: str, data: bytes) -> None:
    """Write ``data`` to ``path``, making its folder; a folder that cannot be made is logged
    as ``what`` not kept."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("%s not kept: %s: %s", what, path.parent, exc.strerror)
        return
    _write(path, data)


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (a crash leaves the old file or the new)."""
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("not kept: %s: %s", path, exc.strerror or exc)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
