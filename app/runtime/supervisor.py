"""The supervisor: declares rings, queues and stages, starts every stage with ``spawn``, watches, tears down.

Nothing heavy (CUDA, models) is ever created here. It owns every segment and unlinks them all whatever happens:
normal end, a stage failing or being killed, Ctrl-C or SIGTERM to the parent. If the parent itself is
SIGKILLed, the children notice their parent is gone and exit, and Python's resource tracker unlinks the segments.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_sentinels
from typing import Any

from app.runtime.child import CONFIG_ERROR, ChildArgs, StageSpec, child_main
from app.runtime.metrics import Metrics
from app.runtime.queue import POLICIES, RecordQueue
from app.runtime.ring import FrameRing

log = logging.getLogger("facestream.runtime")


@dataclass
class StageFailure:
    stage: str
    exitcode: int | None
    error: str

    def __str__(self) -> str:
        if self.exitcode is not None and self.exitcode < 0:
            try:
                how = f"killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:
                how = f"killed by signal {-self.exitcode}"
        else:
            how = f"exit code {self.exitcode}"
        return f"stage {self.stage} died ({how})" + (f": {self.error}" if self.error else "")


@dataclass
class PipelineResult:
    """How a run ended. reason: finished (every stage done), stopped (a stage or ``Pipeline.stop`` asked),
    timeout, interrupted (SIGINT), terminated (SIGTERM) or failed."""

    reason: str
    failures: list[StageFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return {"finished": 0, "stopped": 0, "timeout": 0, "interrupted": 130, "terminated": 143}.get(self.reason, 1)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def summary(self) -> str:
        if self.failures:
            return "; ".join(str(f) for f in self.failures)
        return self.reason


class Pipeline:
    """Declare rings, queues and stages; ``run()`` creates the segments, starts every stage with ``spawn``,
    watches them and always tears everything down."""

    def __init__(self, grace: float = 5.0, log_level: str = "") -> None:
        self.grace = grace
        self.log_level = log_level
        self._ring_decl: dict[str, tuple[int, int, int, int]] = {}
        self._queue_decl: dict[str, tuple[int, int, str]] = {}
        self.stages: dict[str, StageSpec] = {}
        self.rings: dict[str, FrameRing] = {}
        self.queues: dict[str, RecordQueue] = {}
        self.metrics: Metrics | None = None
        self._mp = mp.get_context("spawn")
        self._stop = self._mp.Event()
        self._procs: dict[str, Any] = {}
        self._restarts: dict[str, deque[float]] = {}
        self._signal: int | None = None
        self._started = False
        self.final_stats: list = []

    # -- declaration ------------------------------------------------------------------------------------
    def ring(self, name: str, slots: int, height: int, width: int, channels: int = 3) -> None:
        self._ring_decl[name] = (slots, height, width, channels)

    def queue(self, name: str, capacity: int = 8, slot_bytes: int = 1 << 20, policy: str = "block") -> None:
        if policy not in POLICIES:
            raise ValueError(f"queue policy {policy!r}: choose one of {', '.join(POLICIES)}")
        self._queue_decl[name] = (capacity, slot_bytes, policy)

    def stage(self, name: str, target: Any, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
              rings: Iterable[str] = (), restarts: int = 0) -> StageSpec:
        if name in self.stages:
            raise ValueError(f"stage {name} declared twice")
        spec = StageSpec(name, target, tuple(inputs), tuple(outputs), tuple(rings), restarts)
        for q in (*spec.inputs, *spec.outputs):
            if q not in self._queue_decl:
                raise ValueError(f"stage {name}: queue {q} is not declared")
        for r in spec.rings:
            if r not in self._ring_decl:
                raise ValueError(f"stage {name}: ring {r} is not declared")
        self.stages[name] = spec
        return spec

    # -- running ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create every segment and start every stage. On any error, everything created is released."""
        if self._started:
            raise RuntimeError("a pipeline runs once")
        self._started = True
        try:
            for name, (slots, h, w, c) in self._ring_decl.items():
                self.rings[name] = FrameRing.create(slots, h, w, c)
            for name, (cap, size, policy) in self._queue_decl.items():
                self.queues[name] = RecordQueue.create(cap, size, policy)
            self.metrics = Metrics.create(list(self.stages))
            for spec in self.stages.values():
                self._start_stage(spec)
        except BaseException:
            self.shutdown()
            raise

    def _child_args(self, spec: StageSpec) -> ChildArgs:
        producers = {q: sum(q in s.outputs for s in self.stages.values()) or 1 for q in spec.inputs}
        return ChildArgs(spec, {r: self.rings[r].spec for r in spec.rings},
                          {q: self.queues[q].spec for q in (*spec.inputs, *spec.outputs)},
                          producers, self.metrics.spec, self._stop, self.log_level)

    def _start_stage(self, spec: StageSpec) -> None:
        p = self._mp.Process(target=child_main, args=(self._child_args(spec),), name=f"fs-{spec.name}", daemon=True)
        try:
            p.start()
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise TypeError(f"stage {spec.name}: its target must pickle (an instance of a module-level class or a "
                            f"module-level function, holding only plain config) — {e}") from e
        self._procs[spec.name] = p
        log.debug("started stage %s (pid %d)", spec.name, p.pid)

    def stop(self) -> None:
        """Ask every stage to stop (thread-safe; also what a stage's ``ctx.request_stop()`` does)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> PipelineResult:
        """Watch the stages until they all finish, one fails, a stop is asked, a signal arrives or ``timeout``."""
        t0 = time.monotonic()
        failures: list[StageFailure] = []
        done: set[str] = set()
        while True:
            if self._signal is not None:
                return PipelineResult("interrupted" if self._signal == signal.SIGINT else "terminated", failures,
                                      time.monotonic() - t0)
            if self._stop.is_set():
                return PipelineResult("stopped", failures, time.monotonic() - t0)
            for name, p in self._procs.items():
                if name in done or p.exitcode is None:
                    continue
                if p.exitcode == 0:
                    done.add(name)
                    continue
                _, error = self.metrics.status(name)
                failure = StageFailure(name, p.exitcode, error)
                if p.exitcode != CONFIG_ERROR and self._may_restart(name):
                    log.warning("%s; restarting it", failure)
                    p.close()
                    self.metrics.reset_row(name)
                    self._start_stage(self.stages[name])
                    continue
                log.debug("%s", failure)  # the result carries it: whoever ran the pipeline says it, once
                failures.append(failure)
                return PipelineResult("failed", failures, time.monotonic() - t0)
            if len(done) == len(self._procs):
                return PipelineResult("finished", failures, time.monotonic() - t0)
            if timeout is not None and time.monotonic() - t0 >= timeout:
                return PipelineResult("timeout", failures, time.monotonic() - t0)
            alive = [p.sentinel for n, p in self._procs.items() if n not in done]
            wait_sentinels(alive, timeout=0.1)

    def _may_restart(self, name: str) -> bool:
        allowed = self.stages[name].restarts
        if allowed <= 0 or self._stop.is_set():
            return False
        recent = self._restarts.setdefault(name, deque())
        now = time.monotonic()
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        if len(recent) >= allowed:
            return False
        recent.append(now)
        return True

    def _join_all(self) -> None:
        deadline = time.monotonic() + self.grace
        for p in self._procs.values():
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self._procs.values():
            if p.is_alive():
                log.warning("stage process %s did not stop in %.1f s: terminating", p.name, self.grace)
                p.terminate()
        for p in self._procs.values():
            p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)

    def run(self, timeout: float | None = None) -> PipelineResult:
        """start → wait → shutdown, with SIGINT/SIGTERM turned into a clean stop while it runs."""
        restore = self._install_signals()
        try:
            self.start()
            result = self.wait(timeout)
            if result.reason in ("stopped", "finished", "timeout"):
                self._collect_late_failures(result)
            return result
        finally:
            try:
                self.shutdown()
            finally:
                restore()

    def shutdown(self) -> None:
        """Stop every stage (stop flag → join → SIGTERM → SIGKILL) and unlink every segment. Idempotent."""
        self._stop.set()
        try:
            self._join_all()
        finally:
            if self.metrics is not None:
                self.final_stats = self.metrics.snapshot()
            for seg in [*self.rings.values(), *self.queues.values(), *([self.metrics] if self.metrics else [])]:
                try:
                    seg.close()
                except Exception as e:  # noqa: BLE001 - keep unlinking the others
                    log.warning("could not release %s: %s", getattr(seg, "name", seg), e)
            self.rings.clear()
            self.queues.clear()
            self.metrics = None

    def _collect_late_failures(self, result: PipelineResult) -> None:
        # a stage that crashed while others were stopping still counts as a failure
        for name, p in self._procs.items():
            p.join(0.5 if result.reason != "finished" else 0)
            if p.exitcode not in (None, 0):
                result.failures.append(StageFailure(name, p.exitcode, self.metrics.status(name)[1]))
        if result.failures:
            result.reason = "failed"

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum, frame):
            self._signal = signum
            self._stop.set()

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(s, h) for s, h in old.items()]

    def stage_stats(self) -> list:
        """Per-stage stats now (while running) or as they were at shutdown."""
        return self.metrics.snapshot() if self.metrics else self.final_stats
