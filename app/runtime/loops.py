"""The loops that drive a stage (``app.protocol``): a source's produce loop, and get → ring lookup → process →
torn-frame check → put for every other stage. Written once here, for every stage, in or out of a process."""

from __future__ import annotations

import time
from typing import Any

from app.protocol import Source, Stage
from app.runtime.context import StageContext
from app.runtime.metrics import RUNNING
from app.runtime.record import End
from app.runtime.ring import ring_name
from app.types import Faces

SETUP_WAIT = 300.0  # longest a source waits for the other stages' setup (models, CUDA graphs)


def next_batch(ctx: StageContext, size: int, wait: float, idle_after: float | None = None,
               idle=None) -> tuple[list[Faces], bool]:
    """Up to ``size`` records: block for the first (calling ``idle`` every ``idle_after`` seconds without one),
    then take what arrives within ``wait`` seconds of it. Returns (records, ended): ``ended`` once end-of-stream
    came (the records before it are still returned)."""
    first = ctx.get(timeout=idle_after)
    while first is None:
        if idle is not None:
            idle()
        first = ctx.get(timeout=idle_after)
    if isinstance(first, End):
        return [], True
    batch = [first]
    deadline = time.monotonic() + wait
    while len(batch) < size:
        rec = ctx.get(timeout=max(0.0, deadline - time.monotonic()))
        if rec is None:
            break
        if isinstance(rec, End):
            return batch, True
        batch.append(rec)
    return batch, False


def process_batch(stage: Stage, ctx: StageContext, batch: list[Faces]) -> list[Faces]:
    """One batch through ``stage``: frames looked up (an overwritten one dropped), processed, the results whose
    frame was overwritten meanwhile dropped, busy time and latency counted per record."""
    frames: list[Any] = []
    kept = batch
    if stage.reads_frames:
        kept = []
        for rec in batch:
            view = ctx.view(rec.frame)
            if view is None:
                ctx.drop()
                continue
            frames.append(view)
            kept.append(rec)
    else:
        frames = [None] * len(batch)
    t0, paused = time.perf_counter(), stage.paused_s()
    out = stage.process_batch(frames, kept) if kept else []
    busy = (time.perf_counter() - t0 - (stage.paused_s() - paused)) / len(batch)
    for rec in batch:
        ctx.metrics.tick(busy=busy, ts=rec.frame.ts)
    return checked(stage, ctx, out)


def checked(stage: Stage, ctx: StageContext, out: list[Faces | None]) -> list[Faces]:
    """The records whose pixels were still intact when the stage was done with them (a stage that reads frames)."""
    done = []
    for rec in out:
        if rec is None:
            continue
        if stage.reads_frames and not ctx.frame_valid(rec.frame):
            ctx.drop()  # overwritten while the stage read it: never pass on what torn pixels gave
            continue
        done.append(rec)
    return done


def _stage_loop(stage: Stage, ctx: StageContext) -> None:
    size, wait = max(1, int(stage.batch_size)), float(stage.batch_wait)
    ended = False
    while not ended:
        batch, ended = next_batch(ctx, size, wait, stage.idle_after, stage.idle)
        if batch:
            ctx.emit(process_batch(stage, ctx, batch))
    ctx.emit(checked(stage, ctx, stage.finish()))  # what the stage held back (embed+track's overlapping batch)


def wait_for_others(ctx: StageContext) -> None:
    """Until the other stages finished their setup: frames read before would only queue up (files) or be
    dropped (live), and a replayed file would be half over before the first detection."""
    deadline = time.monotonic() + SETUP_WAIT
    while not ctx.stopping and not ctx.all_metrics.all_running(except_=ctx.name) and time.monotonic() < deadline:
        time.sleep(0.02)


def _source_loop(source: Source, ctx: StageContext) -> None:
    ring = ctx.rings[ring_name(source.stream)]
    while not ctx.stopping and not source.ended:
        source.pace()
        t0 = time.perf_counter()
        rec = source.produce(ring)
        if rec is None:
            continue
        busy = time.perf_counter() - t0  # decode, the status and the cut check: capture's cost per frame
        ctx.put(rec)
        ctx.metrics.tick(busy=busy, ts=rec.frame.ts)


def run_stage(stage: Stage | Source, ctx: StageContext) -> None:
    """Run one stage to completion inside ``ctx``: setup, its loop, end-of-stream downstream, teardown."""
    try:
        if isinstance(stage, Source):
            ctx.metrics.status(RUNNING)  # before the wait: several sources wait for every stage but themselves
            wait_for_others(ctx)
            stage.setup(ctx)
            _source_loop(stage, ctx)
        elif isinstance(stage, Stage):
            stage.setup(ctx)
            ctx.metrics.status(RUNNING)
            _stage_loop(stage, ctx)
        else:
            raise TypeError(f"{stage!r} is neither a Stage nor a Source (app.protocol)")
        ctx.end()
    finally:
        stage.teardown()
