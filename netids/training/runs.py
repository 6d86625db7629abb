"""Training runs the controller starts: a model trained in a background process on collected
traffic (the training page) or on what learning in place kept (:mod:`netids.training.in_place`),
recorded as a model version and made active unless its concerns hold it for review.

A mixin of :class:`netids.controller.Controller`: it uses the controller's settings, registry,
model loading and published state, which this package may not import.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from netids.capture.live import LiveSource
from netids.detect.dns import DnsRecord
from netids.detect.packets import PacketBatch
from netids.training.background import train_in_process
from netids.training.checkpoint import CheckpointError
from netids.training.in_place import LearnConfig, Learner, LearningState
from netids.training.kept import keep_learned, remember_active, teach_learned
from netids.training.quality import concerns
from netids.training.retrain import TrainingCancelled, TrainingError, TrainingState
from netids.training.train import TrainConfig

log = logging.getLogger(__name__)

READY_CHECK_SECONDS = 1.0  # how often learning asks whether it is ready, packets or not


class TrainingRuns:
    """Background training and learning in place, for the controller."""

    async def _train(self, data: tuple[PacketBatch, np.ndarray], dns: list[DnsRecord],
                     name: str, config: TrainConfig | None, source: str, how: str) -> bool:
        """Train ``models/NAME.pt`` in a background process (the pages stay responsive),
        record it with what it was trained on for the behaviour and DNS detectors (``dns``:
        the DNS messages among ``data``'s packets), and make it active unless its concerns
        hold it for review."""
        state, out = self.training, self.settings.models_dir / f"{name}.pt"
        state.phase, state.model, state.generation = "training", name, state.generation + 1
        self._cancel.clear()
        loop = asyncio.get_running_loop()

        try:
            report, metadata = await loop.run_in_executor(
                None, train_in_process, data, out, config or TrainConfig(), source, how,
                state.progress, self._cancel)
        except (TrainingError, TrainingCancelled, CheckpointError) as exc:
            return self._training_failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - a failed training never takes the app down
            log.exception("training failed")
            return self._training_failed(f"training failed: {exc}")
        state.report = report
        await loop.run_in_executor(None, keep_learned, self.settings.models_dir, out, data[0], dns)
        state.concerns = concerns(metadata, metadata["threshold"], self.quality)
        await loop.run_in_executor(None, self.registry.add, name, out, metadata,
                                   not state.concerns)
        if state.concerns:  # the page asks before activating it (activate_model)
            state.phase = "review"
        elif not await self._activate_trained(out):
            return self._training_failed(f"the new model could not be loaded: {self.model_error}")
        else:
            state.phase = "done"
        state.generation += 1
        return True

    async def _activate_trained(self, path: Path) -> bool:
        """Load a model trained here and teach the live capture what it was trained on;
        without a database the models folder remembers it (:mod:`netids.training.kept`), so
        the next start uses it and does not learn again."""
        if not self.load_model(path):
            return False
        if self.engine is None:
            remember_active(self.settings.models_dir, path)
        await self._teach_capture()
        return True

    async def _teach_capture(self) -> None:
        """The running live capture's behaviour and DNS detectors learn the normal of the
        model just made active, when it was trained here (its connections and DNS messages,
        kept by :func:`~netids.training.kept.keep_learned`); a model from elsewhere teaches
        nothing."""
        if self._sink is None or not self.live.running or not isinstance(self._source, LiveSource):
            return
        # on the pipeline's one thread, between batches: the detectors are not shared
        await asyncio.get_running_loop().run_in_executor(
            self._pool, teach_learned, self.settings.models_dir, self._digest, self._sink)

    # -- learning the network in place (netids.training.in_place) -----------------------------
    def _begin_learning(self) -> None:
        """Learn from the live capture just started, and watch the clock: on a quiet network
        no batch arrives to ask whether the time is up."""
        self.learning = LearningState("learning", self.settings.learn.seconds, time.monotonic())
        learner = self._learner = Learner(self.learning, LearnConfig(self.settings.learn.seconds))
        self._learn_watch = asyncio.create_task(self._watch_learning(learner))

    async def _watch_learning(self, learner: Learner) -> None:
        """Start training once ``learner`` is ready, whether packets come or not; ends with
        that learner (learning skipped, stopped, trained or declined)."""
        while self._learner is learner:
            if learner.ready(time.monotonic()):
                self._train_learned_soon()
            await asyncio.sleep(READY_CHECK_SECONDS)

    def skip_learning(self) -> None:
        """Alert on every kind with the current model from now on (until the next start)."""
        if self.learning.phase == "training":
            self.cancel_training()
        self._wants_learning = False
        self._end_learning("skipped", "learning skipped: every kind is alerted")

    def can_train_learned(self) -> bool:
        """Learning kept enough packets to train on now, before its time is up."""
        return self._learner is not None and self._learner.ready(math.inf)

    def train_learned_now(self) -> bool:
        """Train on what learning kept so far, before its time is up."""
        if not self.can_train_learned():
            return False
        self._train_learned_soon()
        return True

    def _train_learned_soon(self) -> None:
        self.learning.phase, self.learning.generation = "training", self.learning.generation + 1
        self._learn_task = asyncio.create_task(self._train_learned())

    async def _train_learned(self) -> bool:
        """Train on the learned traffic; the model becomes active unless it is held for review."""
        learner = self._learner
        self.training = TrainingState(phase="training", source=f"{self.live.source}, learned")
        data = await asyncio.get_running_loop().run_in_executor(None, learner.data) \
            if learner is not None else None
        epochs = self.settings.learn.epochs
        if learner is not None and data is not None and len(data[0]) < learner.config.min_packets:
            self.learning.phase = "learning"  # too few left far from alerts: learn on
            self.training = TrainingState()
            return False
        if data is None:
            ok = self._training_failed("learning kept no traffic to train on")
        else:
            ok = await self._train(data, learner.dns_records() if learner is not None else [],
                                   f"learned-{datetime.now(UTC):%Y%m%d-%H%M%S}",
                                   TrainConfig(epochs=epochs) if epochs else None,
                                   self.training.source, "learning")
        self._learned(self.training.phase if ok else "failed")
        return ok

    def _learned(self, phase: str) -> None:
        """The learned model's fate: done, review (a person decides), declined or failed."""
        if self.learning.phase == "skipped":  # skipped while it trained: the skip stands
            return
        if phase in ("done", "declined"):
            self._wants_learning = False
        messages = {"failed": f"learning failed, the shipped model stays: {self.training.error}",
                    "declined": "the learned model was not activated: the shipped model stays"}
        learner = self._learner
        self._end_learning(phase, messages.get(phase, ""))
        if phase == "review":  # still holding back: the learned model may yet be activated
            self._learner = learner

    def _end_learning(self, phase: str, message: str) -> None:
        self.learning.phase, self.learning.message = phase, message
        self.learning.generation += 1
        self._learner = None
