"""The pipeline list on processes: one ``spawn``ed process per step, joined by frame rings and record queues.

A list starts with its sources (one per stream, all feeding the first queue) and goes on stage by stage, each
reading the queue of the step before and writing its own (named by ``Step.output``). The same list runs in
one process with ``app.runtime.inline``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.protocol import Source, Stage
from app.runtime.ring import ring_name
from app.runtime.supervisor import Pipeline


@dataclass
class Step:
    """One entry of the pipeline list: a stage, the queue it writes and how much one record there may take."""

    name: str
    stage: Stage | Source
    output: str = ""  # the queue after it ("" for the last step)
    out_bytes: int = 4096  # slot size of that queue: room for its largest record
    restarts: int = 0  # restarts allowed per minute after a crash (0: a crash stops the pipeline)


@dataclass
class Layout:
    """The shared memory the list runs over: a ring per stream (height, width) of ``slots`` frames, queues of
    ``capacity`` records; ``live``: the queue after the sources drops the oldest record instead of waiting."""

    frames: dict[int, tuple[int, int]]
    slots: int
    capacity: int
    live: bool


def sources_of(steps: list[Step]) -> tuple[list[Step], list[Step]]:
    """(the leading source steps, the stages after them)."""
    n = next((i for i, s in enumerate(steps) if not isinstance(s.stage, Source)), len(steps))
    if not n or any(isinstance(s.stage, Source) for s in steps[n:]):
        raise ValueError("a pipeline list is one or more sources, then stages")
    return steps[:n], steps[n:]


def build_pipeline(steps: list[Step], layout: Layout, log_level: str = "") -> Pipeline:
    """Declare the rings, queues and stages of ``steps`` (nothing is created until ``Pipeline.run``)."""
    sources, stages = sources_of(steps)
    pipe = Pipeline(log_level=log_level)
    rings = [ring_name(i) for i in layout.frames]
    for i, (h, w) in layout.frames.items():
        pipe.ring(ring_name(i), slots=layout.slots, height=h, width=w)
    first = sources[0].output
    pipe.queue(first, layout.capacity, slot_bytes=max(s.out_bytes for s in sources),
               policy="drop_oldest" if layout.live else "block")
    for step in stages[:-1]:
        pipe.queue(step.output, layout.capacity, slot_bytes=step.out_bytes)
    for step in sources:
        pipe.stage(step.name, step.stage, outputs=[first], rings=[ring_name(step.stage.stream)],
                   restarts=step.restarts)
    before = first
    for step in stages:
        outputs = [step.output] if step is not stages[-1] else []
        pipe.stage(step.name, step.stage, [before], outputs, rings, restarts=step.restarts)
        before = step.output
    return pipe
