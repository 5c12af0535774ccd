"""Per-stage counters in one small shared-memory block, readable from any process (the display's overlay).

Each stage writes only its own row (single writer, no lock); readers take snapshots and turn counter
differences into rates. A torn read can at worst mix two consecutive values of a counter, which is harmless
for an overlay. The row also carries the stage's status and last error line, which is how a child tells the
supervisor why it failed, and the health of what the stage depends on (a live source, the gallery server): a
typed column the display reads while no record flows.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import time
from dataclasses import dataclass

import numpy as np

from app.protocol import Health
from app.runtime.segments import attach_segment, create_segment, release_segment, segment_name

LATENCIES = 256  # recent capture→stage latencies kept per row, for p50/p99
#: upper bounds (s) of the capture→stage latency histogram each row keeps (cumulative counts for Prometheus)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: free-form counters per row (what a stage counts beyond items and drops: faces, events; app/observe names them)
COUNTERS = 12

IDLE, RUNNING, FINISHED, STOPPED, FAILED, STARTING = range(6)
STATUS_NAMES = ("idle", "running", "finished", "stopped", "failed", "starting")  # starting: in setup()

ROW = np.dtype([
    ("items", "<i8"), ("busy", "<f8"), ("drops", "<i8"), ("depth", "<i8"),
    ("last_latency", "<f8"), ("lat_count", "<i8"), ("pid", "<i8"), ("status", "<i8"), ("restarts", "<i8"),
    ("started", "<f8"), ("updated", "<f8"), ("first", "<f8"), ("get_s", "<f8"), ("put_s", "<f8"),
    ("health", "<i8"), ("down_s", "<f8"), ("name", "S32"), ("error", "S256"), ("note", "S128"),
    ("latencies", "<f4", (LATENCIES,)),
    ("lat_hist", "<i8", (len(LATENCY_BUCKETS) + 1,)), ("lat_sum", "<f8"), ("counters", "<i8", (COUNTERS,)),
], align=True)


@dataclass(frozen=True)
class MetricsSpec:
    name: str
    stages: tuple[str, ...]


@dataclass
class StageStats:
    """One stage as seen by a reader. ``fps``/``busy`` are over the interval since the reader's previous snapshot
    (or since the stage started, on the first one); latencies are seconds since capture."""

    name: str
    status: str
    pid: int
    items: int
    fps: float
    busy: float  # fraction of wall time spent working, 0..1
    drops: int
    depth: int
    latency: float
    latency_p50: float
    latency_p99: float
    restarts: int
    error: str
    busy_s: float = 0.0  # seconds spent working since the stage started (not the setup): per-item cost = busy_s / items
    get_s: float = 0.0  # seconds spent waiting for (and taking) input records since the first one came: high when
    #                     starved by the stage before
    put_s: float = 0.0  # seconds spent handing records on: high when the stage after cannot keep up
    run_s: float = 0.0  # seconds from the first item done to the last (set-up and the wait for the others excluded)
    health: Health = Health.OK  # of what the stage depends on (a live source, the gallery server)
    note: str = ""  # what the stage says about it (the display's red line while DOWN)
    down_s: float = 0.0  # seconds it has been down in all

    @property
    def waiting(self) -> float:
        """Share of its running time the stage spent in its queues rather than working: the stage that waits
        least is the pipeline's bottleneck. Counted from its first item, so that stages whose set-up ended
        early (waiting for the slowest to load its models) are not taken for starved ones."""
        return min(1.0, (self.get_s + self.put_s) / self.run_s) if self.run_s > 0 else 0.0


class StageMetrics:
    """The writer's handle on one row; cheap enough to call per item."""

    def __init__(self, rows: np.ndarray, index: int) -> None:
        self._row = rows[index : index + 1]  # 1-element structured view: field writes go straight to shm
        self._lat = self._row["latencies"][0]
        self._hist = self._row["lat_hist"][0]
        self._counters = self._row["counters"][0]
        self._own_drops = 0

    def tick(self, n: int = 1, busy: float = 0.0, ts: float | None = None) -> None:
        """Count ``n`` items done in ``busy`` seconds; ``ts`` (capture time.time()) records a latency."""
        row = self._row
        row["items"] += n
        row["busy"] += busy
        now = time.time()
        row["updated"] = now
        if not row["first"][0]:
            row["first"] = now - busy  # the queue clocks' start: when the first item's work began
        if ts is not None and ts > 0:
            lat = now - ts
            k = int(row["lat_count"][0])
            self._lat[k % LATENCIES] = lat
            row["last_latency"] = lat
            row["lat_count"] = k + 1
            self._hist[bisect.bisect_left(LATENCY_BUCKETS, lat)] += 1
            row["lat_sum"] += lat

    def count(self, counter: int, n: int = 1) -> None:
        """Add ``n`` to free-form counter ``counter`` (0..COUNTERS-1) of this row."""
        self._counters[counter] += n

    def set_counter(self, counter: int, value: int) -> None:
        """Set a gauge-like counter (e.g. the gallery's size)."""
        self._counters[counter] = value

    def waited(self, get: float = 0.0, put: float = 0.0) -> None:
        """Add time spent in the input (``get``) or output (``put``) queues."""
        if get:
            self._row["get_s"] += get
        if put:
            self._row["put_s"] += put

    def drop(self, n: int = 1) -> None:
        """Count records this stage threw away itself (e.g. a frame overwritten while it was read)."""
        self._own_drops += n
        self._row["drops"] += n

    def set_drops(self, n: int) -> None:
        """Report ``n`` records dropped by this stage's live output queues, plus its own."""
        self._row["drops"] = n + self._own_drops

    def depth(self, n: int) -> None:
        self._row["depth"] = n

    def status(self, status: int, error: str = "") -> None:
        row = self._row
        if status in (STARTING, RUNNING):
            row["pid"] = os.getpid()
            if status == RUNNING and int(row["status"][0]) != RUNNING:
                row["started"] = time.time()  # rates count from the end of setup, not from the spawn
        if error:
            row["error"] = error.replace("\n", " ").encode("utf-8", "replace")[:255]
        row["status"] = status

    def health(self, state: Health, note: str = "", down_s: float = 0.0) -> None:
        """The state of what this stage depends on, with a line about it and the seconds it has been down."""
        row = self._row
        row["note"] = note.replace("\n", " ").encode("utf-8", "replace")[:127]
        row["down_s"] = down_s
        row["health"] = int(state)

    @property
    def items(self) -> int:
        return int(self._row["items"][0])


class Metrics:
    """The shared block: one row per stage name."""

    def __init__(self, spec: MetricsSpec, shm, owner: bool) -> None:
        self.spec = spec
        self._shm = shm
        self._owner = owner
        self._rows = np.ndarray((len(spec.stages),), ROW, buffer=shm.buf)
        self._prev: dict[int, tuple[float, int, float]] = {}

    @classmethod
    def create(cls, stages: list[str] | tuple[str, ...], name: str | None = None) -> Metrics:
        spec = MetricsSpec(name or segment_name("metrics"), tuple(stages))
        m = cls(spec, create_segment(spec.name, ROW.itemsize * max(len(stages), 1)), owner=True)
        m._rows[:] = np.zeros(len(stages), ROW)
        for i, s in enumerate(stages):
            m._rows["name"][i] = s.encode()[:32]
        return m

    @classmethod
    def attach(cls, spec: MetricsSpec) -> Metrics:
        return cls(spec, attach_segment(spec.name), owner=False)

    def __del__(self) -> None:  # release our view before SharedMemory's own __del__ tries to unmap
        if getattr(self, "_shm", None) is not None:
            with contextlib.suppress(Exception):
                self.close()

    def close(self) -> None:
        self._rows = None  # type: ignore[assignment]
        release_segment(self._shm, unlink=self._owner)
        self._shm = None

    def index(self, stage: str) -> int:
        return self.spec.stages.index(stage)

    def writer(self, stage: str) -> StageMetrics:
        return StageMetrics(self._rows, self.index(stage))

    def reset_row(self, stage: str, keep_restarts: bool = True) -> None:
        """Before a restart: keep counters, clear status/error, count the restart."""
        i = self.index(stage)
        self._rows["restarts"][i] += 1 if keep_restarts else 0
        self._rows["status"][i] = IDLE
        self._rows["error"][i] = b""

    def row(self, stage: str) -> np.void:
        """A copy of one stage's raw row (histogram and counters included), for exporters."""
        return self._rows[self.index(stage)].copy()

    def status(self, stage: str) -> tuple[int, str]:
        i = self.index(stage)
        return int(self._rows["status"][i]), self._rows["error"][i].decode("utf-8", "replace")

    def health(self, stage: str) -> tuple[Health, str, float]:
        """(state, note, seconds down) of what ``stage`` depends on."""
        r = self._rows[self.index(stage)]
        return Health(int(r["health"])), r["note"].decode("utf-8", "replace"), float(r["down_s"])

    def snapshot(self) -> list[StageStats]:
        out = []
        now = time.time()
        rows = self._rows.copy()
        for i, r in enumerate(rows):
            items, busy = int(r["items"]), float(r["busy"])
            t0, items0, busy0 = self._prev.get(i, (float(r["started"]) or now, 0, 0.0))
            dt = now - t0
            fps = (items - items0) / dt if dt > 0 else 0.0
            frac = min(max((busy - busy0) / dt, 0.0), 1.0) if dt > 0 else 0.0
            self._prev[i] = (now, items, busy)
            k = min(int(r["lat_count"]), LATENCIES)
            lat = r["latencies"][:k]
            p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if k else (0.0, 0.0)
            out.append(StageStats(
                name=r["name"].decode(), status=STATUS_NAMES[int(r["status"])], pid=int(r["pid"]), items=items,
                fps=fps, busy=frac, drops=int(r["drops"]), depth=int(r["depth"]), latency=float(r["last_latency"]),
                latency_p50=p50, latency_p99=p99, restarts=int(r["restarts"]),
                error=r["error"].decode("utf-8", "replace"), busy_s=busy, get_s=float(r["get_s"]),
                put_s=float(r["put_s"]), run_s=max(0.0, float(r["updated"]) - float(r["first"])) if r["first"] else 0.0,
                health=Health(int(r["health"])), note=r["note"].decode("utf-8", "replace"), down_s=float(r["down_s"]),
            ))
        return out

    def all_running(self, except_: str = "") -> bool:
        """Every stage (but ``except_``) has finished its setup: models loaded, CUDA graphs captured."""
        names = self._rows["name"]
        return all(int(st) == RUNNING for st, n in zip(self._rows["status"], names) if n.decode() != except_)

    def overlay_lines(self, stats: list[StageStats] | None = None) -> list[str]:
        """One line per stage for the display's overlay (of ``stats``, one snapshot shared with other uses)."""
        return [f"{s.name}: {s.fps:5.1f} fps  busy {s.busy * 100:3.0f}%  q {s.depth}  drops {s.drops}  "
                f"lat p50 {s.latency_p50 * 1000:.0f} p99 {s.latency_p99 * 1000:.0f} ms"
                for s in (self.snapshot() if stats is None else stats)]
