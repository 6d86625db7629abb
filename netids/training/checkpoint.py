"""Save and load detector checkpoints: weights, scaling, calibration, config and metadata.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values, so it
loads with ``weights_only=True`` (no code runs on load). Writing goes to a temporary file in the
same folder, fsynced, then ``os.replace``-d over the target: a crash mid-save leaves the old
file (or none), never half a file. Loading validates everything and raises
:class:`CheckpointError` with a message a person can act on.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from netids.detect.calibration import Calibrator, InputSurprise, SurpriseCombiner
from netids.detect.detector import Checkpoint, CheckpointError, Detector
from netids.detect.model import ModelConfig
from netids.detect.scaling import RobustScaler

FORMAT = "netids-detector"
FORMAT_VERSION = 5  # 2: MAC-binding and reply context features, the surprise combiner;
# 3: the training prior of categorical values (model buffer code_log_prior); 4: address and MAC
# classes, rates logged with a scale of at least a factor e, new services and hosts counted on
# initiating packets only; 5: gaps averaged in log10 seconds, share floors of network fields


def save(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; return the path. Raises
    :class:`CheckpointError` for a path that is not a file (see :func:`check_writable`)."""
    path = Path(path)
    check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": checkpoint.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in checkpoint.state_dict.items()},
        "scaler": checkpoint.scaler.state(),
        "calibrator": checkpoint.calibrator.state(),
        "surprise": checkpoint.surprise.state(),
        "combiner": checkpoint.combiner.state(),
        "threshold": float(checkpoint.threshold),
        "feature_names": list(checkpoint.feature_names),
        "numeric_names": list(checkpoint.numeric_names),
        "categorical_names": list(checkpoint.categorical_names),
        "metadata": checkpoint.metadata,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: Path) -> None:
    """Refuse to write a checkpoint over anything but a regular file: the atomic replace
    would put it in the place of a folder's name, a device (``/dev/full``) or a pipe."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder: name the checkpoint file, e.g. "
                              f"{path / 'model.pt'}")
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path} is not a regular file: a checkpoint is not written "
                              f"in its place")
    folder = next((p for p in path.parents if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise CheckpointError(f"cannot write {path}: {folder} is not a writable folder")


def load(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; :class:`CheckpointError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(f"{path} is not a readable netids model (corrupt or truncated: "
                              f"{type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a netids model checkpoint")
    version = payload.get("version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}; this netids "
                              f"reads version {FORMAT_VERSION}: retrain with `python app.py train`")
    try:
        checkpoint = Checkpoint(
            config=ModelConfig(**payload["config"]),
            state_dict=dict(payload["state_dict"]),
            scaler=RobustScaler.from_state(payload["scaler"]),
            calibrator=Calibrator.from_state(payload["calibrator"]),
            surprise=InputSurprise.from_state(payload["surprise"]),
            combiner=SurpriseCombiner.from_state(payload["combiner"]),
            threshold=float(payload["threshold"]),
            feature_names=[str(n) for n in payload["feature_names"]],
            numeric_names=[str(n) for n in payload["numeric_names"]],
            categorical_names=[str(n) for n in payload["categorical_names"]],
            metadata=dict(payload.get("metadata") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is an incomplete netids checkpoint ({exc})") from None
    n_inputs = checkpoint.config.n_numeric + len(checkpoint.config.vocab_sizes)
    if (len(checkpoint.surprise.knots) != n_inputs
            or len(checkpoint.combiner.mean) != n_inputs
            or len(checkpoint.numeric_names) != checkpoint.config.n_numeric
            or len(checkpoint.scaler.median) != checkpoint.config.n_numeric
            or not 0.0 < checkpoint.threshold < 1.0):
        raise CheckpointError(f"{path} is inconsistent: its parts disagree on the input size")
    return checkpoint


def read_metadata(path: str | Path) -> dict:
    """The metadata of the checkpoint at ``path`` (what it was trained on, when, its figures)
    with its default ``threshold``; :class:`CheckpointError` when it is unreadable."""
    checkpoint = load(path)
    return {**checkpoint.metadata, "threshold": checkpoint.threshold}


def load_detector(path: str | Path, threads: int = 1) -> Detector:
    """The detector of the checkpoint at ``path``; :class:`CheckpointError` (plain message)
    when it is unusable."""
    return Detector(load(path), threads)
