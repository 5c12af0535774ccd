"""The stage protocol: what every stage of the pipeline list implements, and what it sees of its process.

Neither the runtime nor a stage imports the other: both import this module. A stage is a picklable object
built in the parent from a small config; ``setup`` runs in its own process (models and CUDA exist only
there). The runtime does the rest once for every stage: the ring lookup of each record's frame, the
torn-frame check, drops, batching, end-of-stream and the byte form of the record.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Protocol

import numpy as np

from app.types import Faces, FrameRef


class Health(IntEnum):
    """What a stage says about the outside thing it depends on (a live source, the gallery server): a typed
    column of its metrics row, read by the display while no record flows and by the end-of-run summary."""

    OK = 0  # nothing to say (never went down)
    DOWN = 1  # unreachable now: the display shows ``note`` as a red line
    RECOVERED = 2  # was down, answers again (``note`` says for how long it was not)


class Context(Protocol):
    """What a stage sees of its process (the runtime's ``StageContext`` implements it)."""

    name: str

    @property
    def stopping(self) -> bool: ...

    def request_stop(self) -> None: ...

    def drop(self, n: int = 1) -> None:
        """Count records this stage threw away itself."""

    def health(self, state: Health, note: str = "", down_s: float = 0.0) -> None:
        """Report the state of what the stage depends on (``down_s``: seconds it has been down in all)."""

    def pending(self) -> int:
        """Records waiting at this stage's inputs now."""

    def frame_valid(self, frame: FrameRef) -> bool:
        """False once the ring slot of ``frame`` has been (or is being) rewritten: drop what was read from it."""

    def frame_memory(self) -> list[np.ndarray]:
        """The bytes of every frame ring this stage reads (e.g. to page-lock them for direct GPU uploads)."""

    @property
    def table(self) -> Any:
        """The pipeline's metrics (every stage's row, read-only here): ``snapshot()``, ``health(stage)``…"""


class Stage:
    """A stage that takes records: one at a time (``process``) or ``batch_size`` at once (``process_batch``,
    as many as arrive within ``batch_wait`` seconds of the first). Returning None drops the record (counted by
    the runtime only where the stage says so with ``ctx.drop``: a display consumes records).

    ``reads_frames``: the runtime looks up each record's frame in its ring and passes a zero-copy view (None
    for stages that do not read pixels); a frame already overwritten is dropped before the stage sees it, and
    a record whose frame was overwritten while the stage read it is dropped after. ``idle_after``: seconds
    without a record after which ``idle()`` is called (None: never).
    """

    batch_size: int = 1
    batch_wait: float = 0.0
    reads_frames: bool = False
    idle_after: float | None = None

    def setup(self, ctx: Context) -> None:
        """Build the compute objects, in the stage's own process."""

    def process(self, frame: np.ndarray | None, rec: Faces) -> Faces | None:
        raise NotImplementedError(f"{type(self).__name__} defines neither process nor process_batch")

    def process_batch(self, frames: list[np.ndarray | None], recs: list[Faces]) -> list[Faces | None]:
        """Records in, records out (one per record, or fewer for a stage that holds some back for ``finish``)."""
        return [self.process(f, r) for f, r in zip(frames, recs)]

    def paused_s(self) -> float:
        """Seconds spent so far waiting rather than working inside ``process`` (a display paced to a file's frame
        rate, a paused window): the runtime leaves them out of the stage's busy time."""
        return 0.0

    def idle(self) -> None:
        """No record arrived for ``idle_after`` seconds: work that does not wait for frames."""

    def finish(self) -> list[Faces]:
        """End of stream: the records still held back."""
        return []

    def teardown(self) -> None:
        """Release what ``setup`` made (also after a failure: check what exists)."""


class Source:
    """A stage that produces records (capture): ``produce`` writes the next frame into ``ring`` and returns its
    record, or None while there is none (a live source reconnecting); ``ended`` once the stream is over.
    ``pace()`` is called before each ``produce`` and is not counted as work (a file replayed in real time)."""

    stream: int = 0  # the stream whose ring it writes
    ended: bool = False

    def setup(self, ctx: Context) -> None:
        """Open the source, in the stage's own process, once the other stages finished their setup."""

    def pace(self) -> None:
        """Wait until the next frame is due (not work)."""

    def produce(self, ring: Any) -> Faces | None:
        raise NotImplementedError

    def teardown(self) -> None:
        """Close the source."""
