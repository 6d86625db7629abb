"""Training in a child process, so the app's event loop, capture and pipeline keep their core.

A thread would share the GIL with the pages and the pipeline for the minutes training takes;
the child (``python -m netids.training.background JOB_DIR``, run at a lower priority) trains with
:func:`~netids.training.train.train` on the packets and features written to ``JOB_DIR``, saves
the checkpoint atomically, and reports each epoch and the final report as one JSON line on
its stdout. The owner cancels by ending it; the child ends itself when its owner is gone.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from netids.detect.packets import COLUMNS, PacketBatch
from netids.training.checkpoint import read_metadata, save
from netids.training.retrain import describe
from netids.training.train import Progress, TrainConfig, TrainingCancelled, TrainingError, train

POLL_SECONDS = 0.2  # how often the owner checks for cancellation while it waits
NICE = 5  # the child's lower priority: capture and the pages come first
IMPORT_ROOT = Path(__file__).resolve().parents[2]  # where `netids` is imported from


def train_in_process(data: tuple[PacketBatch, np.ndarray], out: Path, config: TrainConfig,
                     source: str, how: str, progress: Progress,
                     cancel: threading.Event) -> tuple[str, dict]:
    """Train on ``data`` in a child process and save the checkpoint at ``out`` (blocking: run
    it off the event loop); return the report in words (see :func:`describe`) and the
    checkpoint's metadata, marked as trained here (``how``: "learning", "training page"; kept
    in the checkpoint too, see :mod:`netids.training.kept`).
    Raises :class:`TrainingError` in the child's words, :class:`TrainingCancelled` once
    ``cancel`` is set (the child is ended), :class:`CheckpointError` for an unreadable result.
    """
    report = _run_child(data, out, config, [source], how, progress, cancel)
    return report, read_metadata(out)


def _run_child(data: tuple[PacketBatch, np.ndarray], out: Path, config: TrainConfig,
               sources: Sequence[str], how: str, progress: Progress,
               cancel: threading.Event) -> str:
    packets, features = data
    with tempfile.TemporaryDirectory(prefix="netids-train-") as job:
        np.savez(Path(job) / "data.npz", features=features, **packets.columns())
        (Path(job) / "job.json").write_text(json.dumps(
            {"out": str(out), "config": asdict(config), "sources": list(sources), "how": how}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(IMPORT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        errors_path = Path(job) / "errors.txt"  # a file: a full pipe would block the child
        with errors_path.open("wb") as errors_file:
            child = subprocess.Popen([sys.executable, "-m", "netids.training.background", job],
                                     stdout=subprocess.PIPE, stderr=errors_file,
                                     stdin=subprocess.DEVNULL, env=env)
        followed = False
        try:
            report = _follow(child, progress, cancel)
            followed = True
        finally:
            try:  # once its output ended the child only exits; on cancel it is ended now
                child.wait(timeout=10 if followed else 0)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        errors = errors_path.read_text(errors="replace")
    if report is None:
        last = errors.strip().splitlines()[-1] if errors.strip() else ""
        raise TrainingError(last or f"the training process ended unexpectedly "
                                    f"(exit status {child.returncode})")
    return report


def _follow(child: subprocess.Popen, progress: Progress,
            cancel: threading.Event) -> str | None:
    """Pass the child's epochs to ``progress`` until it ends; its report, if it gave one.
    Reads the pipe's bytes as they come (a buffered reader would hide lines from select)."""
    assert child.stdout is not None
    fd, pending = child.stdout.fileno(), b""
    while True:
        if cancel.is_set():
            child.kill()
            raise TrainingCancelled("training cancelled")
        ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "report" in message:
                return str(message["report"])
            progress(message["epoch"], message["train_loss"], message["val_loss"])


def main(job_dir: str) -> int:
    """The child: train on the job, save, print the report; a refusal is one line on stderr."""
    os.nice(NICE)
    threading.Thread(target=_end_with_owner, args=(os.getppid(),), daemon=True).start()
    job = json.loads((Path(job_dir) / "job.json").read_text())
    with np.load(Path(job_dir) / "data.npz") as arrays:
        packets = PacketBatch(**{name: arrays[name] for name in COLUMNS})
        features = arrays["features"]

    def emit(epoch: int, train_loss: float, val_loss: float) -> None:
        sys.stdout.write(json.dumps({"epoch": epoch, "train_loss": float(train_loss),
                                     "val_loss": float(val_loss)}) + "\n")
        sys.stdout.flush()

    try:
        report = train([(packets, features)], TrainConfig(**job["config"]), progress=emit,
                       sources=job["sources"], warn=lambda _: None)
        # in the file too: without a database, the models folder says what was trained here
        report.checkpoint.metadata["trained_here"] = job["how"]
        save(report.checkpoint, job["out"])
    except (TrainingError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sys.stdout.write(json.dumps({"report": describe(report)}) + "\n")
    return 0


def _end_with_owner(owner: int) -> None:
    """Exit when the owner process is gone (the child is re-parented then)."""
    while os.getppid() == owner:
        threading.Event().wait(1.0)
    os._exit(3)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
