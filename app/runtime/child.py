"""A stage process's entry point: attach the shared segments, run the stage, report how it ended, exit."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from app.redact import setup_logging
from app.runtime.context import StageContext, StopStage
from app.runtime.loops import run_stage
from app.runtime.metrics import FAILED, FINISHED, STARTING, STOPPED, Metrics, MetricsSpec
from app.runtime.queue import QueueSpec, RecordQueue
from app.runtime.ring import FrameRing, RingSpec

log = logging.getLogger("facestream.runtime")

CONFIG_ERROR = 3  # exit code of a stage stopped by a user-facing error: a restart would fail the same way


@dataclass
class StageSpec:
    """A stage as declared in the parent. ``target`` (an ``app.protocol`` Stage or Source) must pickle: an
    instance of a module-level class holding only plain config."""

    name: str
    target: Any
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    rings: tuple[str, ...] = ()
    restarts: int = 0  # restarts allowed per minute after a failure (0: a failure stops the pipeline)


@dataclass
class ChildArgs:
    spec: StageSpec
    rings: dict[str, RingSpec]
    queues: dict[str, QueueSpec]
    producers: dict[str, int]  # per input queue: how many END records mean "all producers done"
    metrics: MetricsSpec
    stop: Any  # multiprocessing Event
    log_level: str = ""  # set up logging this way in the child ("": leave it as it is)


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() if getattr(exc, "user_facing", False) else f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__



def name_process(stage: str) -> None:
    """Name this process ``fs-<stage>`` in /proc/PID/comm so ps, top and the fault tests can find a stage."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: names are a convenience only
        ctypes.CDLL(None, use_errno=True).prctl(15, f"fs-{stage}"[:15].encode(), 0, 0, 0)  # PR_SET_NAME


def free_orphaned_locks(ctx: StageContext, wait: float = 1.0) -> list[str]:
    """After a restart, free the queue locks our killed predecessor died holding.

    In this pipeline a restartable stage is the only consumer of its inputs and the only producer of its
    outputs, so the get-lock of an input (put-lock of an output) can only be held by the previous instance of
    this very stage: if it stays taken for ``wait`` seconds, that process is dead inside it and the lock is
    released here, instead of the new instance blocking on it forever. Returns what was freed.
    """
    freed = []
    for kind, queues, attr in (("get", ctx.inputs, "get_lock"), ("put", ctx.outputs, "put_lock")):
        for name, q in queues.items():
            lock = getattr(q.spec, attr)
            if lock.acquire(timeout=wait):
                lock.release()
            else:
                lock.release()
                freed.append(f"{name}.{kind}")
    if freed:
        log.warning("%s: freed queue locks left by its killed predecessor: %s", ctx.name, ", ".join(freed))
    return freed


def child_main(args: ChildArgs) -> None:
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
        if args.log_level:
            setup_logging(args.log_level)
        name_process(spec.name)
        if any(s.restarts for s in metrics.snapshot() if s.name == spec.name):
            free_orphaned_locks(ctx)
        run_stage(spec.target, ctx)
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

