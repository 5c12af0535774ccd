"""Stage processes and the supervisor that starts, watches and stops them.

A stage is declared in the parent with a picklable *target* and the names of its queues and rings; the
child (started with ``spawn``) attaches the shared segments, builds its compute objects in ``setup`` and
loops. Nothing heavy (CUDA, models) is ever created in the parent. Three target forms:

* an object with ``process(record, ctx)`` (and optional ``setup(ctx)``, ``finish(ctx)``, ``teardown()``):
  the runtime loops ``get → process → put`` and forwards end-of-stream;
* the same with ``process_batch(records, ctx)`` instead: the runtime hands it up to ``batch_size`` records at
  once, as many as arrive within ``batch_wait`` seconds of the first (what is already queued is taken at once);
* an object with ``run(ctx)`` (and optional ``setup``/``teardown``): it owns its loop (sources, sinks);
* a plain callable ``target(ctx)``: same as ``run``.

The supervisor (``Pipeline``) owns every segment and unlinks them all whatever happens: normal end, a stage
failing or being killed, Ctrl-C or SIGTERM to the parent. If the parent itself is SIGKILLed, the children
notice their parent is gone and exit, and Python's resource tracker unlinks the segments.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_sentinels
from typing import Any

from app.runtime.metrics import FAILED, FINISHED, RUNNING, STARTING, STOPPED, Metrics, MetricsSpec, StageMetrics
from app.runtime.shm import POLICIES, FrameRing, QueueSpec, Record, RecordQueue, RingSpec

log = logging.getLogger("facestream.runtime")

_POLL = 0.05  # longest a blocked get/put waits before looking at the stop flag
CONFIG_ERROR = 3  # exit code of a stage stopped by a user-facing error: a restart would fail the same way


class StopStage(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a stage by ``ctx.get``/``ctx.put`` when the pipeline is stopping."""


@dataclass
class StageSpec:
    """A stage as declared in the parent. ``target`` must pickle (module-level class/function)."""

    name: str
    target: Any
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    rings: tuple[str, ...] = ()
    restarts: int = 0  # restarts allowed per minute after a failure (0: a failure stops the pipeline)


@dataclass
class _ChildArgs:
    spec: StageSpec
    rings: dict[str, RingSpec]
    queues: dict[str, QueueSpec]
    producers: dict[str, int]  # per input queue: how many END records mean "all producers done"
    metrics: MetricsSpec
    stop: Any  # multiprocessing Event


class StageContext:
    """What a stage sees inside its process: its rings and queues, the stop flag, its metrics row."""

    def __init__(self, name: str, rings: dict[str, FrameRing], inputs: dict[str, RecordQueue],
                 outputs: dict[str, RecordQueue], stop: Any, metrics: Metrics,
                 producers: dict[str, int] | None = None) -> None:
        self.name = name
        self.rings = rings
        self.inputs = inputs
        self.outputs = outputs
        self.stop_event = stop
        self.all_metrics = metrics
        self.metrics: StageMetrics = metrics.writer(name)
        self._producers = producers or {}
        self._ends = dict.fromkeys(inputs, 0)
        self._open = list(inputs)  # inputs that have not ended yet
        self._rr = 0
        self._ended = False
        self._parent = mp.parent_process()
        self._taken = False  # a record has come in: from here the wait for input is the queue clock's
        self._next_parent_check = 0.0

    # -- stopping ---------------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """True once the pipeline is stopping (or the supervisor died): leave your loop."""
        if self.stop_event.is_set():
            return True
        now = time.monotonic()
        if self._parent is not None and now >= self._next_parent_check:
            self._next_parent_check = now + 0.25
            if not self._parent.is_alive():
                self.stop_event.set()
                return True
        return False

    def request_stop(self) -> None:
        """Stop the whole pipeline (e.g. the display window was closed)."""
        self.stop_event.set()

    @property
    def ring(self) -> FrameRing:
        """The stage's only (or first) ring."""
        return next(iter(self.rings.values()))

    # -- input ------------------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Record | None:
        """The next record from any input; ``Record.end()`` once every producer of every input has ended;
        None after ``timeout``. Raises StopStage when the pipeline stops."""
        if not self._open:
            if self.inputs:
                return Record.end()
            raise ValueError(f"stage {self.name} has no inputs")
        # the queue clock runs from the first record on: before it the stage waits for the others' set-up
        counted, t0 = self._taken, time.perf_counter()
        try:
            rec = self._get(timeout)
        finally:
            if counted:
                self.metrics.waited(get=time.perf_counter() - t0)
        self._taken = self._taken or rec is not None
        return rec

    def _get(self, timeout: float | None) -> Record | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.stopping:
                raise StopStage
            n = len(self._open)
            slice_ = _POLL if n == 1 else 0.005
            if deadline is not None:  # never wait past the caller's deadline (0: only what is queued now)
                slice_ = min(slice_, max(0.0, deadline - time.monotonic()))
            for k in range(n):
                qname = self._open[(self._rr + k) % n]
                q = self.inputs[qname]
                rec = q.get(timeout=slice_ if k == n - 1 else 0)
                if rec is None:
                    continue
                self._rr = (self._rr + k + 1) % n
                self.metrics.depth(sum(i.qsize() for i in self.inputs.values()))
                if rec.is_end:
                    self._ends[qname] += 1
                    if self._ends[qname] >= self._producers.get(qname, 1):
                        self._open.remove(qname)
                        if not self._open:
                            return Record.end(rec.seq, rec.ts, rec.stream)
                    break
                rec.queue = qname
                return rec
            if deadline is not None and time.monotonic() >= deadline:
                return None

    # -- output -----------------------------------------------------------------------------------------
    def put(self, record: Record, output: str | None = None) -> None:
        """Send ``record`` to ``output`` (default: every output), waiting on ``block`` queues while not stopping."""
        targets = [self.outputs[output]] if output else list(self.outputs.values())
        t0 = time.perf_counter()
        for q in targets:
            while not q.put(record, timeout=_POLL):
                if self.stopping:
                    raise StopStage
        self.metrics.waited(put=time.perf_counter() - t0)
        if any(q.spec.policy == "drop_oldest" for q in targets):
            self.metrics.set_drops(sum(q.drops for q in self.outputs.values()))

    def emit(self, result: Record | Iterable[Record] | None) -> None:
        if result is None:
            return
        for r in [result] if isinstance(result, Record) else result:
            self.put(r)

    def end(self) -> None:
        """Send end-of-stream to every output (once)."""
        if not self._ended:
            self._ended = True
            for q in self.outputs.values():
                while not q.put(Record.end(), timeout=_POLL):
                    if self.stopping:
                        raise StopStage
            if any(q.spec.policy == "drop_oldest" for q in self.outputs.values()):
                self.metrics.set_drops(sum(q.drops for q in self.outputs.values()))

    def close(self) -> None:
        for seg in [*self.rings.values(), *self.inputs.values(), *self.outputs.values(), self.all_metrics]:
            seg.close()


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() if getattr(exc, "user_facing", False) else f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__


def next_batch(ctx: StageContext, size: int, wait: float) -> tuple[list[Record], bool]:
    """Up to ``size`` records: block for the first, then take what arrives within ``wait`` seconds of it.
    Returns (records, ended): ``ended`` once end-of-stream came (the records before it are still returned)."""
    first = ctx.get()
    while first is None:
        first = ctx.get()
    if first.is_end:
        return [], True
    batch = [first]
    deadline = time.monotonic() + wait
    while len(batch) < size:
        rec = ctx.get(timeout=max(0.0, deadline - time.monotonic()))
        if rec is None:
            break
        if rec.is_end:
            return batch, True
        batch.append(rec)
    return batch, False


def _record_loop(target: Any, ctx: StageContext) -> None:
    while True:
        rec = ctx.get()
        if rec is None:
            continue
        if rec.is_end:
            break
        t0 = time.perf_counter()
        out = target.process(rec, ctx)
        ctx.metrics.tick(busy=time.perf_counter() - t0, ts=rec.ts)
        ctx.emit(out)


def _batch_loop(target: Any, ctx: StageContext) -> None:
    size = max(1, int(getattr(target, "batch_size", 1)))
    wait = float(getattr(target, "batch_wait", 0.0))
    ended = False
    while not ended:
        batch, ended = next_batch(ctx, size, wait)
        if not batch:
            continue
        t0 = time.perf_counter()
        out = target.process_batch(batch, ctx)
        busy = (time.perf_counter() - t0) / len(batch)
        for rec in batch:
            ctx.metrics.tick(busy=busy, ts=rec.ts)
        ctx.emit(out)


def run_target(target: Any, ctx: StageContext) -> None:
    """Run one stage's target to completion inside ``ctx`` (also usable in-process, e.g. in tests)."""
    setup = getattr(target, "setup", None)
    teardown = getattr(target, "teardown", None)
    if callable(setup):
        setup(ctx)
    ctx.metrics.status(RUNNING)
    try:
        if hasattr(target, "process_batch") or hasattr(target, "process"):
            (_batch_loop if hasattr(target, "process_batch") else _record_loop)(target, ctx)
            finish = getattr(target, "finish", None)
            if callable(finish):  # what the stage held back (e.g. embed+track's overlapping batch) goes on at the end
                ctx.emit(finish(ctx))
        elif hasattr(target, "run"):
            target.run(ctx)
        elif callable(target):
            target(ctx)
        else:
            raise TypeError(f"stage target {target!r} has neither process(), run() nor __call__")
        ctx.end()
    finally:
        if callable(teardown):
            teardown()


def _child_main(args: _ChildArgs) -> None:
    """Entry point of a stage process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the supervisor decides
    signal.signal(signal.SIGTERM, _on_sigterm)
    spec = args.spec
    metrics = Metrics.attach(args.metrics)
    row = metrics.writer(spec.name)
    row.status(STARTING)
    ctx = None
    code = 0
    try:
        rings = {n: FrameRing.attach(args.rings[n]) for n in spec.rings}
        inputs = {n: RecordQueue.attach(args.queues[n]) for n in spec.inputs}
        outputs = {n: RecordQueue.attach(args.queues[n]) for n in spec.outputs}
        ctx = StageContext(spec.name, rings, inputs, outputs, args.stop, metrics, args.producers)
        run_target(spec.target, ctx)
        row.status(FINISHED)
    except StopStage:
        row.status(STOPPED)
    except SystemExit as e:
        row.status(STOPPED if e.code in (0, None, 128 + signal.SIGTERM) else FAILED, f"exit {e.code}")
        code = 0 if e.code in (0, None) else e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - report anything, then fail the stage
        row.status(FAILED, _one_line(e))
        if not getattr(e, "user_facing", False) or os.environ.get("FACESTREAM_DEBUG"):
            traceback.print_exc()  # a bug: the whole story; a user-facing error is reported as its one line
        code = CONFIG_ERROR if getattr(e, "user_facing", False) else 1
    finally:
        if ctx is not None:
            ctx.close()
        else:
            metrics.close()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)  # skip atexit/finalizers of libraries (CUDA contexts, threads) that may hang a clean exit


# ----------------------------------------------------------------------------------------------------------
# Supervisor
# ----------------------------------------------------------------------------------------------------------

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

    def __init__(self, grace: float = 5.0) -> None:
        self.grace = grace
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

    def _child_args(self, spec: StageSpec) -> _ChildArgs:
        producers = {q: sum(q in s.outputs for s in self.stages.values()) or 1 for q in spec.inputs}
        return _ChildArgs(spec, {r: self.rings[r].spec for r in spec.rings},
                          {q: self.queues[q].spec for q in (*spec.inputs, *spec.outputs)},
                          producers, self.metrics.spec, self._stop)

    def _start_stage(self, spec: StageSpec) -> None:
        p = self._mp.Process(target=_child_main, args=(self._child_args(spec),), name=f"fs-{spec.name}", daemon=True)
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
