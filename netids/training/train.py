"""Train a detector on normal traffic: a function with a config, returning a report.

The same function serves ``python app.py train`` and the UI's capture-and-retrain (run it in a
worker thread; it reports progress through a callback and stops when a ``threading.Event`` is
set). Data is cut into tumbling windows per capture; blocks of windows are split at random
into training, validation (early stopping, learning-rate schedule) and calibration (never
trained on: the calibrated score is fitted there).

Minimum data: :data:`MIN_PACKETS` normal packets (about a minute of a busy lab network), so
that at least 1,000 packets are held back for calibration.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np
import torch

from netids import __version__
from netids.detect import counted
from netids.detect.calibration import (
    MIN_CALIBRATION,
    RANGE_WEIGHT,
    Calibrator,
    InputSurprise,
    SurpriseCombiner,
    threshold_for,
)
from netids.detect.context import FEATURE_NAMES
from netids.detect.model import ModelConfig, PacketAutoencoder, to_windows
from netids.detect.packets import PacketBatch
from netids.detect.scaling import (
    CATEGORICAL,
    PACKET_NUMERIC,
    RobustScaler,
    categorical_codes,
    past_range,
    raw_numeric,
    share_floors,
)
from netids.training.checkpoint import Checkpoint
from netids.training.data import check_training_data, cold_starts
from netids.training.quality import traffic_profile

log = logging.getLogger(__name__)

MIN_PACKETS = 8000  # normal packets needed to train (20% of them calibrate: >= 1,000)
BLOCK_WINDOWS = 32  # windows per block when splitting train / validation / calibration


class TrainingError(Exception):
    """Training cannot run (too little data, nothing readable): the message says why."""


class TrainingCancelled(Exception):
    """The cancel event was set."""


@dataclass
class TrainConfig:
    window: int = 16  # packets per tumbling window
    d_model: int = 32  # model width (see ModelConfig)
    n_layer: int = 2  # encoder layers
    n_head: int = 4  # attention heads
    latent: int = 8  # per-packet bottleneck
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    batch_windows: int = 64  # windows per optimisation step (1,024 packets)
    lr: float = 3e-3  # initial learning rate (AdamW), lowered on plateau
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without validation improvement before stopping
    val_fraction: float = 0.15  # share of window blocks for validation
    calib_fraction: float = 0.2  # share of window blocks held back for calibration
    max_train_windows: int = 20000  # windows sampled per epoch at most (keeps runs short)
    target_false_alarm: float = 0.001  # default threshold = 1 - this
    # stretches per capture also featurised from a fresh context: off by default, they cost
    # scans and sweeps detection on the dev mix (docs/drift.md)
    cold_starts: int = 0
    warmup: float = 60.0  # seconds each of them lasts (see data.cold_starts)
    range_weight: float = RANGE_WEIGHT  # nats per scaled unit past the training range
    seed: int = 0
    threads: int = 2  # torch threads while training


@dataclass
class TrainReport:
    checkpoint: Checkpoint
    epochs: int
    best_epoch: int
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, val_loss, lr
    seconds: float = 0.0
    packets: int = 0
    stopped_early: bool = False
    warnings: list[str] = field(default_factory=list)  # doubts about the data (see data.py)


Progress = Callable[[int, float, float], None]  # (epoch, train_loss, val_loss)


def train(
    captures: Sequence[tuple[PacketBatch, np.ndarray]],
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    sources: Sequence[str] = (),
    warn: Callable[[str], None] | None = None,
) -> TrainReport:
    """Train on normal captures, each ``(packets, features)`` with features in
    ``FEATURE_NAMES`` order; return the report. Data with essentially no IP traffic is
    refused (:class:`TrainingError`); thin or attack-like data is trained on, each doubt
    passed to ``warn`` first and kept in the report and the checkpoint's metadata."""
    config = config or TrainConfig()
    started = time.monotonic()
    n_total = sum(len(p) for p, _ in captures)
    if n_total < MIN_PACKETS:
        raise TrainingError(f"too little normal traffic: {n_total} packets, training needs at "
                            f"least {MIN_PACKETS} (about a minute of a busy network)")
    check = check_training_data(PacketBatch.concat([p for p, _ in captures]))
    if check.refusal:
        raise TrainingError(check.refusal)
    for text in check.warnings:
        (warn or partial(log.warning, "%s"))(text)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    before_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        starts = [s for p, _ in captures for s in cold_starts(p, config.cold_starts, config.warmup)]
        data = _prepare([*captures, *starts], config, rng)
        model = PacketAutoencoder(data.model_config(config))
        model.set_code_prior(data.train_codes())
        fit = _fit(model, data, config, rng, progress, cancel)
        checkpoint = _checkpoint(model, data, config, fit, captures, sources)
    finally:
        torch.set_num_threads(before_threads)
    seconds = time.monotonic() - started
    checkpoint.metadata["metrics"]["train_seconds"] = round(seconds, 1)
    checkpoint.metadata["data_warnings"] = list(check.warnings)
    return TrainReport(checkpoint=checkpoint, epochs=len(fit.history), best_epoch=fit.best_epoch,
                       history=fit.history, seconds=seconds, packets=int(n_total),
                       stopped_early=len(fit.history) < config.epochs,
                       warnings=list(check.warnings))


@dataclass
class _Windows:
    """The captures cut into tumbling windows, scaled, and split into training (0), validation
    (1) and calibration (2) blocks."""

    scaler: RobustScaler  # fitted on training windows only
    names: list[str]  # numeric inputs: packet fields, then context features
    target: torch.Tensor  # [W, T, k] scaled numeric inputs, what the model reconstructs
    num: torch.Tensor  # [W, T, k] the same clamped to the training range: the model's input
    cod: torch.Tensor  # [W, T, n_fields] categorical codes
    pad: torch.Tensor  # [W, T] True where a window is padded past its capture's end
    excess: np.ndarray  # [W, T] distance past the training range (see Detector.input_errors)
    roles: np.ndarray  # [W, T] int8 packet roles (counted.roles): what counts on each
    split: np.ndarray  # [W] 0 / 1 / 2
    packets: int

    def index(self, part: int) -> np.ndarray:
        return np.flatnonzero(self.split == part)

    def model_config(self, config: TrainConfig) -> ModelConfig:
        return ModelConfig(n_numeric=self.target.shape[2], vocab_sizes=tuple(CATEGORICAL.values()),
                           share_floor=share_floors(),
                           window=config.window, d_model=config.d_model, n_head=config.n_head,
                           n_layer=config.n_layer, latent=config.latent)

    def train_codes(self) -> np.ndarray:
        """Categorical codes of the real training packets [n_train, n_fields]."""
        in_train = torch.from_numpy(self.split == 0)
        return self.cod[in_train][~self.pad[in_train]].numpy()


def _prepare(captures: Sequence[tuple[PacketBatch, np.ndarray]], config: TrainConfig,
             rng: np.random.Generator) -> _Windows:
    T = config.window
    raw_w, cod_w, pad_w, role_w = [], [], [], []
    for packets, feats in captures:
        r, (c, p) = _windows(raw_numeric(packets, feats), categorical_codes(packets), T)
        raw_w.append(r)
        cod_w.append(c)
        pad_w.append(p)
        role_w.append(to_windows(counted.packet_roles(packets, feats, FEATURE_NAMES)[:, None],
                                 T)[0][:, :, 0])
    raw = np.concatenate(raw_w)  # [W, T, n_numeric], unscaled
    pad = torch.from_numpy(np.concatenate(pad_w))  # [W, T]
    split = _split(len(raw), T, config, rng)
    if (~pad[split == 2]).sum() < MIN_CALIBRATION:
        raise TrainingError(f"too little normal traffic to hold back {MIN_CALIBRATION} packets "
                            f"for calibration; give more than {MIN_PACKETS} packets")
    # scaling (and the input range) from training windows only: held-back windows see the
    # model exactly as fresh traffic will
    train_rows = raw[split == 0][~pad.numpy()[split == 0]]  # [n_train, n_numeric]
    names = list(PACKET_NUMERIC) + list(FEATURE_NAMES)
    scaler = RobustScaler.fit(train_rows, rates=np.array(["_rate_" in n for n in names]))
    W, k = raw.shape[0], raw.shape[2]
    scaled = scaler.transform(raw.reshape(W * T, k))
    clamped = scaler.clamp(scaled)
    roles = np.concatenate(role_w).astype(np.int8)  # [W, T]; padding: 0
    return _Windows(
        scaler=scaler, names=names,
        target=torch.from_numpy(scaled.reshape(W, T, k)),
        num=torch.from_numpy(clamped.reshape(W, T, k)),
        cod=torch.from_numpy(np.concatenate(cod_w)), pad=pad,
        excess=past_range(scaled, clamped, roles.reshape(-1),
                          counted.uncounted_inputs(names)).reshape(W, T),
        roles=roles, split=split,
        packets=sum(len(p) for p, _ in captures),
    )


@dataclass
class _Fit:
    best_val: float
    best_epoch: int
    history: list[dict]  # per epoch: train_loss, val_loss, lr


def _fit(model: PacketAutoencoder, data: _Windows, config: TrainConfig,
         rng: np.random.Generator, progress: Progress | None,
         cancel: threading.Event | None) -> _Fit:
    """Epochs until validation stops improving for ``patience`` epochs; the model is left
    with its best weights, in eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.3, patience=1)
    idx_train, idx_val = data.index(0), data.index(1)
    best, best_state, best_epoch, bad, history = np.inf, None, 0, 0, []
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(idx_train)[: config.max_train_windows]
        train_loss = _epoch(model, opt, data, order, config.batch_windows, cancel)
        val = _evaluate_loss(model, data.num, data.cod, data.pad, data.target, idx_val,
                             config.batch_windows)
        sched.step(val)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val,
                        "lr": opt.param_groups[0]["lr"]})
        log.info("epoch %d train %.4f val %.4f", epoch, train_loss, val)
        if progress is not None:
            progress(epoch, train_loss, val)
        if val < best - 1e-4:
            best, best_epoch, bad = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= config.patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return _Fit(float(best), best_epoch, history)


def _epoch(model: PacketAutoencoder, opt: torch.optim.Optimizer, data: _Windows,
           order: np.ndarray, batch_windows: int, cancel: threading.Event | None) -> float:
    """One pass over ``order``'s windows; the mean training loss."""
    model.train()
    losses = []
    for s in range(0, len(order), batch_windows):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled("training cancelled")
        b = torch.from_numpy(order[s:s + batch_windows])
        loss = _loss(model, data.num[b], data.cod[b], data.pad[b], data.target[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def _checkpoint(model: PacketAutoencoder, data: _Windows, config: TrainConfig, fit: _Fit,
                captures: Sequence[tuple[PacketBatch, np.ndarray]],
                sources: Sequence[str]) -> Checkpoint:
    """Fit how rare each input's error is (training windows), then calibrate on the held-back
    windows, and pack it all with the metadata."""
    idx_train, idx_cal = data.index(0), data.index(2)
    errors = partial(_errors, model, data.num, data.cod, data.pad, data.target, data.excess,
                     data.roles)
    train_err, _, _ = errors(idx_train[:config.max_train_windows])
    categorical = np.arange(train_err.shape[1]) >= data.target.shape[2]  # past the numeric
    surprise = InputSurprise.fit(train_err, min_tail_scale=np.where(categorical, 1.0, 0.0))
    names = [*data.names, *CATEGORICAL]
    services = counted.service_inputs(names)  # capped as the detector caps them
    capped = counted.cap_service_surprise(surprise.transform(train_err), services)
    combiner = SurpriseCombiner.fit(capped, range_weight=config.range_weight)
    # held-back windows step past the training range as fresh traffic does: calibrated with it,
    # and scored as the detector scores them (what does not count: netids.detect.counted)
    cal_err, cal_excess, cal_roles = errors(idx_cal)
    calibrator = Calibrator.fit(combiner.combine(counted.as_counted(
        surprise.transform(cal_err), combiner.mean, services, cal_roles,
        counted.uncounted_inputs(names)), cal_excess))
    return Checkpoint(
        config=model.config,
        state_dict=model.state_dict(),
        scaler=data.scaler,
        calibrator=calibrator,
        surprise=surprise,
        combiner=combiner,
        threshold=threshold_for(config.target_false_alarm),
        feature_names=list(FEATURE_NAMES),
        numeric_names=data.names,
        categorical_names=list(CATEGORICAL),
        metadata=_metadata(model, data, config, fit, calibrator, captures, sources),
    )


def _metadata(model: PacketAutoencoder, data: _Windows, config: TrainConfig, fit: _Fit,
              calibrator: Calibrator, captures: Sequence[tuple[PacketBatch, np.ndarray]],
              sources: Sequence[str]) -> dict:
    spans = [(float(t.min()), float(t.max())) for t in
             (p.ts[np.isfinite(p.ts) & (p.ts > 0)] for p, _ in captures) if len(t)]
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "netids_version": __version__,
        "sources": list(sources),
        "packets": sum(len(p) for p, _ in captures),
        "cold_start_packets": int(data.packets) - sum(len(p) for p, _ in captures),
        "windows": {"train": len(data.index(0)), "val": len(data.index(1)),
                    "calibration": len(data.index(2))},
        "time_span": {"first": min((a for a, _ in spans), default=None),
                      "last": max((b for _, b in spans), default=None),
                      "seconds": sum(b - a for a, b in spans)},  # of traffic, per capture
        **traffic_profile([p for p, _ in captures]),  # hosts, protocols (quality checks)
        "train_config": asdict(config),
        "metrics": {"best_val_loss": fit.best_val, "best_epoch": fit.best_epoch,
                    "epochs_run": len(fit.history), "history": fit.history,
                    "calibration_packets": int(calibrator.n)},
        "params": model.n_params(),
    }


def _windows(numeric: np.ndarray, codes: np.ndarray, T: int):
    """Pad one capture to whole windows: numeric [W, T, k], (codes [W, T, c], pad [W, T])."""
    num, pad = to_windows(numeric, T)
    cod, _ = to_windows(codes.astype(np.int64, copy=False), T)
    return num, (cod, pad)


def _split(n_windows: int, T: int, config: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """0 train / 1 validation / 2 calibration per window, assigned in random contiguous blocks
    of ``BLOCK_WINDOWS`` (neighbouring windows are alike, so whole blocks are held back), with
    enough calibration blocks for ``MIN_CALIBRATION`` packets. Held-back blocks come from the
    same period as training; traffic from a later period drifts, and its false-alarm rate is
    higher (measured in docs/detector.md)."""
    n_blocks = -(-n_windows // BLOCK_WINDOWS)
    n_cal = max(round(config.calib_fraction * n_blocks),
                -(-MIN_CALIBRATION // (BLOCK_WINDOWS * T)) + 1)
    n_val = max(round(config.val_fraction * n_blocks), 1)
    block = np.zeros(n_blocks, np.int64)
    order = rng.permutation(n_blocks)
    block[order[:n_cal]] = 2
    block[order[n_cal:n_cal + n_val]] = 1
    return np.repeat(block, BLOCK_WINDOWS)[:n_windows]


def _loss(model, num, cod, pad, target) -> torch.Tensor:
    err = model.losses(num, cod, pad, target)  # [B, T, k]
    keep = (~pad).unsqueeze(-1).float()  # [B, T, 1]
    return (err * keep).sum() / (keep.sum() * err.shape[2]).clamp(min=1)


def _evaluate_loss(model, num, cod, pad, target, idx, bs) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(idx), bs * 4):
            b = torch.from_numpy(idx[s:s + bs * 4])
            k = float((~pad[b]).sum())
            total += float(_loss(model, num[b], cod[b], pad[b], target[b])) * k
            count += k
    return total / max(count, 1.0)


def _errors(model, num, cod, pad, target, excess, roles, idx,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-input errors [n_real_packets, k] of the given windows (padding dropped), those
    packets' distance past the training range (``excess`` [W, T], see ``past_range``) and
    their roles (``roles`` [W, T], see ``counted.roles``)."""
    out, far, ans = [], [], []
    with torch.inference_mode():
        for s in range(0, len(idx), 256):
            b = torch.from_numpy(idx[s:s + 256])
            p = pad[b]
            err = model.errors(num[b], cod[b], p, target[b])  # [B, T, k]
            out.append(err[~p].numpy())
            far.append(excess[idx[s:s + 256]][~p.numpy()])
            ans.append(roles[idx[s:s + 256]][~p.numpy()])
    if not out:
        return np.zeros((0, 1), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int8)
    return np.concatenate(out), np.concatenate(far), np.concatenate(ans)
