"""The controller: runs one monitoring session (live or file) through the pipeline, events and
store, and publishes what the UI shows.

The UI never touches the capture thread, the model or the database writer directly: it calls
the commands here (start, stop, threshold) and reads :attr:`Controller.live`, a bounded set of
aggregates updated once per batch. Nothing here loops over packets in Python; per batch it
does a handful of numpy reductions, so the UI's cost does not grow with the packet rate.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from netids.capture.bpf import compile_filter
from netids.capture.files import FileSource
from netids.capture.interfaces import Interface, list_interfaces
from netids.capture.live import LiveSource
from netids.capture.pcapfile import CaptureFileError
from netids.capture.source import CaptureError
from netids.config import Settings
from netids.detect.connections import ConnConfig
from netids.detect.detector import Detector
from netids.detect.event_records import GRADES, SEVERITIES, EventUpdate, grade, nines
from netids.detect.frames import FrameBatch
from netids.detect.pipeline import Pipeline
from netids.detect.scored import ScoredBatch
from netids.detect.shedding import LoadShedder, SheddingConfig, batches_to_merge
from netids.detect.tracking import ConnFeed
from netids.live import LiveState, publish
from netids.parallel.allocator import HeapTrimmer
from netids.store.engine import open_database
from netids.store.eve import EveLog, open_eve
from netids.store.model_registry import ModelRegistry
from netids.store.sink import EventSink
from netids.store.tables import ModelVersion
from netids.store.writer import EventStore
from netids.training.checkpoint import CheckpointError, load_detector, read_metadata
from netids.training.in_place import Learner, LearningState, needs_learning
from netids.training.kept import SessionMemory, model_digest, remembered_active, trained_here
from netids.training.quality import Concern, Limits, concerns
from netids.training.retrain import TrafficCollector, TrainingError, TrainingState
from netids.training.runs import TrainingRuns
from netids.training.train import TrainConfig

log = logging.getLogger(__name__)

class Controller(TrainingRuns):
    """Owns the detector, the store and at most one running monitoring session."""

    def __init__(self, settings: Settings, quality: Limits | None = None) -> None:
        """``quality``: where a trained model's figures ask for review before activation."""
        self.settings, self.quality = settings, quality or Limits()
        self.live = LiveState()
        self.detector: Detector | None = None
        self.model_error = self.db_error = ""
        self.store: EventStore | None = None
        self.engine: Engine | None = None
        self.eve: EveLog | None = None  # --eve: stored events as EVE lines too
        self.training = TrainingState()
        self._collector: TrafficCollector | None = None
        self._cancel = threading.Event()
        self._threshold = settings.threshold
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netids-pipeline")
        self.heap = HeapTrimmer()  # hands freed batch memory back to the kernel
        self._task: asyncio.Task[None] | None = None
        self._source: LiveSource | FileSource | None = None
        self._sink: EventSink | None = None  # the running capture's (learning hands it records)
        self.learning = LearningState(seconds=settings.learn.seconds)
        self._learner: Learner | None = None
        self._learn_task: asyncio.Task[bool] | None = None
        self._learn_watch: asyncio.Task[None] | None = None
        self._digest = ""  # the active checkpoint's SHA-256: its adapter state's key
        self._wants_learning = False  # set by open(): the shipped model and none trained here

    # -- life cycle (app.on_startup / app.on_shutdown) ---------------------------------------
    def open(self) -> None:
        """Load the model and open the database; failures are kept as plain messages."""
        try:
            self.engine = open_database(self.settings.db_url, self.settings.storage)
            self.store = EventStore(self.engine, sensor=self.settings.sensor,
                                    settings=self.settings.storage)
        except Exception as exc:  # noqa: BLE001 - any database failure is shown, not raised
            self.db_error = f"database unavailable ({self.settings.db_url}): {exc}"
            log.error("%s", self.db_error)
        self.eve = open_eve(self.settings.eve, self.settings.sensor)
        active = self._active_model_path()
        self.load_model(active)
        trained = ([v.details or {} for v in self.registry.versions()] if self.engine
                   else trained_here(self.settings.models_dir, self.settings.learn.shipped))
        self._wants_learning = self.settings.learn.enabled and needs_learning(
            active, self.settings.learn.shipped, trained)

    def _active_model_path(self) -> Path:
        """The model marked active in the database, else the configured one (which is then
        recorded as the first version, so a roll-back can always return to it). Without a
        database, the one the models folder remembers (netids.training.kept)."""
        if self.engine is None:
            return remembered_active(self.settings.models_dir) or self.settings.model_path
        versions = self.registry.versions()
        for version in versions:
            if version.active and Path(version.path).is_file():
                return Path(version.path)
        if not versions and self.settings.model_path.is_file():
            self.registry.add(self.settings.model_path.stem, self.settings.model_path,
                              active=True)
        return self.settings.model_path

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.engine)

    async def close(self) -> None:
        self.cancel_training()
        await self.stop()
        if self.store is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
            self.store = None
        if self.eve is not None:
            self.eve.close()
        self._pool.shutdown(wait=True)

    def load_model(self, path: Path) -> bool:
        """Switch to the checkpoint at ``path``; keep the previous model if it fails."""
        try:
            detector = load_detector(path, threads=self.settings.torch_threads)
        except CheckpointError as exc:
            self.model_error = str(exc)
            self.live.message = f"model not loaded: {exc}"
            return False
        self.detector, self.model_error, self._digest = detector, "", model_digest(path)
        self.live.threshold = detector.threshold if self._threshold is None else self._threshold
        self.live.message = f"model {path.name} active"
        self.live.generation += 1
        return True

    # -- commands ---------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self.live.threshold

    def set_threshold(self, value: float) -> None:
        """Applies to the next batch, live; events keep the score they were detected with."""
        if not 0.0 <= value <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        self._threshold = float(value)
        self.live.threshold = float(value)
        self.live.generation += 1

    async def start_live(self, interface: str | None, bpf: str | None = None, *,
                         netns: str | None = None, learn: bool = True) -> None:
        """Start monitoring an interface (None: all), in network namespace ``netns`` when
        given, learning the network first when no model was trained here (``learn``);
        raises CaptureError in plain words."""
        source = LiveSource(interface, bpf, self.settings.capture, netns=netns)
        label = (interface or "all interfaces") + (f" (filter: {bpf})" if bpf else "")
        await self._start(source, label)
        if learn and self._wants_learning and not self.learning.holding:
            self._begin_learning()

    async def start_file(self, path: Path, *, realtime: bool = False) -> None:
        """Analyse a capture file through the same pipeline as live traffic."""
        source = FileSource(path, self.settings.capture, realtime=realtime, max_gap=1.0)
        await self._start(source, path.name)

    async def stop(self) -> None:
        if self.learning.phase == "learning":
            self._end_learning("stopped", "learning stopped with the capture: it starts over "
                                          "with the next live capture")
        if self._source is not None:
            self._source.stop()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def wait(self) -> None:
        """Until the running session ends (a file is finished, or stop())."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- for the pages (netids.ui imports no capture, detect, training or database internals) --
    def has_database(self) -> bool:
        return self.engine is not None

    def session(self) -> Session:
        """A database session for the store's query functions (blocking: run.io_bound)."""
        if self.engine is None:
            raise RuntimeError(f"no database: {self.db_error or 'not open'}")
        return Session(self.engine)

    def store_error(self) -> str:
        """The event writer's last database error; '' while it writes fine or there is none."""
        return self.store.stats.last_error if self.store is not None else ""

    @staticmethod
    def interfaces() -> list[Interface]:
        """The network interfaces to capture on (raises OSError when they cannot be listed)."""
        return list_interfaces()

    @staticmethod
    def filter_problem(expr: str) -> str | None:
        """Why a capture filter (tcpdump syntax) does not compile, in plain words, else None."""
        try:
            compile_filter(expr)
        except CaptureError as exc:
            return str(exc)
        return None

    default_train_config = staticmethod(TrainConfig)
    severities = staticmethod(lambda: SEVERITIES)  # event severities, in rising order
    grades = GRADES  # the levels an event table shows, in rising order
    grade = staticmethod(grade)  # an event's level at a threshold: how far past, and its kind
    nines = staticmethod(nines)  # -log10(1 - score): 3 for 0.999, 6 for 0.999999

    # -- training -----------------------------------------------------------------------------
    async def start_training_capture(self, interface: str | None, bpf: str | None = None) -> None:
        """Monitor an interface and keep its traffic as normal traffic to train on."""
        await self.start_live(interface, bpf, learn=False)
        self._begin_collecting(self.live.source, from_file=False)

    async def start_training_file(self, path: Path) -> None:
        """Use a capture file of normal traffic for training (it is analysed as it is read)."""
        await self.start_file(path)
        self._begin_collecting(path.name, from_file=True)

    def _begin_collecting(self, source: str, from_file: bool) -> None:
        self.training = TrainingState(phase="capturing", source=source, from_file=from_file)
        self._collector = TrafficCollector(self.training)

    async def stop_and_train(self, name: str, config: TrainConfig | None = None) -> bool:
        """Stop collecting, train, save ``models/NAME.pt`` and make it the active model.

        A failure leaves the previous model active and says why in ``training.error``.
        """
        state, collector = self.training, self._collector
        if collector is None or state.phase != "capturing":
            raise TrainingError("start a capture for training first")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            raise TrainingError("a model name uses letters, digits, '.', '_' and '-' only")
        out = self.settings.models_dir / f"{name}.pt"
        taken = {v.name for v in await asyncio.get_running_loop().run_in_executor(
            None, self.registry.versions)}
        if name in taken or out.exists():
            raise TrainingError(f"a model named {name!r} exists already: choose another name")
        if self.live.running and isinstance(self._source, LiveSource):
            await self.stop()
        else:
            await self.wait()
        self._collector = None
        data = collector.data()
        if data is None:
            return self._training_failed("no traffic was captured for training")
        return await self._train(data, collector.dns_records(), name, config, state.source,
                                 "training page")

    def cancel_training(self) -> None:
        self._cancel.set()

    def _training_failed(self, why: str) -> bool:
        self.training.phase, self.training.error = "failed", why
        self.training.generation += 1
        self.live.message = f"training failed, previous model kept: {why}"
        return False

    def model_versions(self) -> list[ModelVersion]:
        """Stored model versions, newest first (blocking: call through run.io_bound)."""
        return self.registry.versions()

    async def activate_model(self, name: str) -> bool:
        """Make a stored model version active (also how a roll-back is done)."""
        versions = {v.name: v for v in await asyncio.get_running_loop().run_in_executor(
            None, self.registry.versions)}
        if name not in versions:
            self.live.message = f"no model version named {name!r}"
            return False
        if not self.load_model(Path(versions[name].path)):
            return False
        await asyncio.get_running_loop().run_in_executor(None, self.registry.activate, name)
        await self._teach_capture()
        return True

    async def accept_trained(self) -> bool:
        """Activate the model held for review, its concerns shown and accepted."""
        state = self.training
        if state.phase != "review":
            return False
        path = self.settings.models_dir / f"{state.model}.pt"
        if not (await self.activate_model(state.model) if self.engine is not None
                else await self._activate_trained(path)):
            return False
        state.phase, state.generation = "done", state.generation + 1
        if self.learning.phase == "review":
            self._learned("done")
        return True

    def decline_trained(self) -> None:
        """Keep the previous model; the new one stays listed, inactive."""
        if self.training.phase == "review":
            self.training.phase = "declined"
            self.training.generation += 1
            if self.learning.phase == "review":
                self._learned("declined")

    def model_card(self, version: ModelVersion) -> tuple[dict, list[Concern]]:
        """What a version's card shows: its metadata (what it was trained on, when, its
        validation figures) and its concerns. Versions recorded without metadata (the
        shipped model, recorded at first start) read their checkpoint's. Blocking."""
        try:
            details = read_metadata(Path(version.path))
        except CheckpointError:  # the file is gone: what was recorded
            return dict(version.details or {}), []
        return details, concerns(details, details["threshold"])

    # -- the session ------------------------------------------------------------------------
    async def _start(self, source: LiveSource | FileSource, label: str) -> None:
        if self.detector is None:
            raise CaptureError(f"no model loaded: {self.model_error}")
        await self.stop()
        source.start(asyncio.get_running_loop())
        self._source = source
        threshold = self.detector.threshold if self._threshold is None else self._threshold
        pipeline = Pipeline(self.detector, threshold=threshold,
                            adapt=self.settings.adapt_threshold,
                            warmup=isinstance(source, LiveSource))  # a sensor starting up
        memory = SessionMemory(self.settings.models_dir, self._digest) \
            if isinstance(source, LiveSource) else None  # a file may be of another network
        self.live = LiveState(running=True, source=label, threshold=threshold,
                              events=self.live.events, message=f"monitoring {label}",
                              rate_mark=(time.monotonic(), 0))
        self._sink = EventSink(self.store, eve=self.eve, conns=ConnFeed(ConnConfig(
            seed=secrets.randbits(63))))  # behaviour scores packets, database or not
        if memory is not None:  # what this network taught the adapter and the detectors
            memory.restore(pipeline.adapter, self._sink)
        self._task = asyncio.create_task(self._run(source, pipeline, self._sink, memory))

    async def _run(self, source: LiveSource | FileSource, pipeline: Pipeline,
                   sink: EventSink, memory: SessionMemory | None) -> None:
        loop, live, c = asyncio.get_running_loop(), self.live, self.settings.capture
        shedder = LoadShedder(SheddingConfig.for_backlog(c.shed_load, c.shed_backlog,
                                                         c.min_scored_share))
        merge = max(1, c.merge_batches)
        try:
            async for frames in source.batches():
                pipeline.threshold = live.threshold
                backlog = source.backlog()  # batches behind this one: how far we fell behind
                share = shedder.share_for(backlog)
                more = batches_to_merge(share, merge) - 1 if backlog else 0
                group = [frames, *source.waiting(more)]
                scored, updates = await loop.run_in_executor(
                    self._pool, _score_and_aggregate, pipeline, sink, group, share,
                    not shedder.deep, self._learner, self.heap)
                live.scored_share = share
                self._publish(live, pipeline, scored, updates, source, sink)
        except (CaptureError, CaptureFileError) as exc:
            live.error = live.message = str(exc)
        except Exception as exc:  # noqa: BLE001 - the app stays up and says what happened
            log.exception("monitoring stopped")
            live.error = live.message = f"monitoring stopped: {exc}"
        finally:
            source.stop()
            self._publish(live, pipeline, None, sink.finish(), source, sink)
            if memory is not None:  # for the next start
                memory.keep(pipeline.adapter)
            live.running = False
            if not live.error:
                live.message = f"finished {live.source}: {live.packets} packets, " \
                               f"{live.anomalies} anomalous"
            live.generation += 1

    def _publish(self, live: LiveState, pipeline: Pipeline, scored: ScoredBatch | None,
                 updates: list[EventUpdate], source: LiveSource | FileSource,
                 sink: EventSink) -> None:
        if scored is not None and self._collector is not None:
            self._collector(scored)
        publish(live, pipeline, scored, updates, source, sink,
                self.store.stats if self.store is not None else None)
        if self._learner is not None and self._learner.ready(time.monotonic()):
            self._train_learned_soon()


def _score_and_aggregate(pipeline: Pipeline, sink: EventSink, group: list[FrameBatch],
                         share: float, decode_shed: bool, learner: Learner | None,
                         heap: HeapTrimmer) -> tuple[ScoredBatch, list[EventUpdate]]:
    """Consecutive batches, as one, through the pipeline, behaviour, learning (holding back
    kinds that depend on the network) and events, on the pipeline thread, off the loop."""
    scored = sink.rescore(pipeline.process(FrameBatch.concat(group), share,
                                           decode_shed=decode_shed))[0]  # + behaviour
    if learner is not None:
        scored = learner.observe(scored)
    heap.after_batch(time.monotonic())  # what earlier batches freed goes back to the kernel
    return scored, sink.add(scored)
