"""The supervisor: stages in spawned processes finish, fail, die or get signalled — and no segment is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.protocol import Source, Stage
from app.runtime import Pipeline, ring_name
from app.types import Faces
from tests.app.runtime.helpers import rec

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.slow]


def leftovers(pid: int | None = None) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"fs_{pid or os.getpid()}_*"))


# -- stages used by the tests (module level: they are pickled into spawned children) -------------------------

@dataclass
class CountSource(Source):
    """Writes frames filled with seq % 251 and announces each; n=0: forever (a live source)."""

    n: int = 0
    interval: float = 0.0
    ready_dir: str = ""

    def setup(self, ctx) -> None:
        if self.ready_dir:
            Path(self.ready_dir, ctx.name).write_text(str(os.getpid()))
        self.i = 0

    def pace(self) -> None:
        if self.interval and self.i:
            time.sleep(self.interval)

    def produce(self, ring) -> Faces | None:
        if self.n and self.i >= self.n:
            self.ended = True
            return None
        i, ts = self.i, time.time()
        ring.write(np.full((ring.spec.height, ring.spec.width, 3), i % 251, np.uint8), i, ts)
        self.i += 1
        return rec(seq=i, ts=ts, track_ids=np.array([i]))


@dataclass
class MeanStage(Stage):
    """Reads each frame from the ring; optionally fails on one record, or only on its first life."""

    fail_at: int = -1
    fail_once_marker: str = ""
    reads_frames = True

    def setup(self, ctx) -> None:
        self.first_life = bool(self.fail_once_marker) and not Path(self.fail_once_marker).exists()
        if self.first_life:
            Path(self.fail_once_marker).write_text("died once")

    def process(self, frame, r: Faces) -> Faces:
        if r.frame.seq == self.fail_at or self.first_life:
            raise ValueError(f"boom at frame {r.frame.seq}\nsecond line")
        return Faces(track_ids=np.array([int(frame.mean())]), frame=r.frame)


@dataclass
class Collect(Stage):
    """Sink: keeps (seq, value) and writes them as JSON at teardown."""

    path: str
    delay: float = 0.0
    stop_after: int = 0
    ready_dir: str = ""

    def setup(self, ctx) -> None:
        self.ctx = ctx
        self.rows: list[list[int]] = []
        if self.ready_dir:
            Path(self.ready_dir, f"{ctx.name}.tmp").write_text(str(os.getpid()))

    def process(self, frame, r: Faces) -> None:
        self.rows.append([r.frame.seq, int(r.track_ids[0])])
        if self.ready_dir and len(self.rows) == 1:
            os.replace(Path(self.ready_dir, f"{self.ctx.name}.tmp"), Path(self.ready_dir, self.ctx.name))
        if self.delay:
            time.sleep(self.delay)
        if self.stop_after and len(self.rows) >= self.stop_after:
            self.ctx.request_stop()

    def teardown(self) -> None:
        Path(self.path).write_text(json.dumps(self.rows))


def three_stage(tmp: Path, n: int = 0, interval: float = 0.0, fail_at: int = -1, marker: str = "",
                restarts: int = 0, stop_after: int = 0, ready_dir: str = "") -> Pipeline:
    p = Pipeline(grace=3.0)
    p.ring(ring_name(0), slots=8, height=48, width=64)
    p.queue("announced", capacity=2, slot_bytes=4096)
    p.queue("means", capacity=2, slot_bytes=4096)
    p.stage("source", CountSource(n, interval, ready_dir), outputs=["announced"], rings=[ring_name(0)])
    p.stage("mean", MeanStage(fail_at, marker), inputs=["announced"], outputs=["means"], rings=[ring_name(0)],
            restarts=restarts)
    p.stage("sink", Collect(str(tmp / "rows.json"), stop_after=stop_after, ready_dir=ready_dir), inputs=["means"])
    return p


def serve_forever(ready_dir: str) -> None:
    """Entry point of the signal tests' subprocess: a live pipeline that runs until signalled."""
    result = three_stage(Path(ready_dir), interval=0.005, ready_dir=ready_dir).run()
    print(result.summary(), flush=True)
    sys.exit(result.exit_code)


# -- in-process supervisor ----------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_a_finite_run_processes_every_frame_and_cleans_up(tmp_path):
    p = three_stage(tmp_path, n=60)
    result = p.run(timeout=90)
    assert (result.reason, result.exit_code, result.failures) == ("finished", 0, [])
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows == [[i, i % 251] for i in range(60)]  # every frame, in order, pixels from the ring
    stats = {s.name: s for s in p.stage_stats()}
    assert stats["sink"].items == 60 and stats["mean"].items == 60 and stats["source"].items == 60
    assert all(s.status == "finished" for s in stats.values())
    assert stats["sink"].latency_p99 >= stats["sink"].latency_p50 > 0
    assert leftovers() == []


@pytest.mark.timeout(120)
def test_a_failing_stage_stops_the_pipeline_and_reports_its_error(tmp_path):
    result = three_stage(tmp_path, n=0, interval=0.002, fail_at=5).run(timeout=90)
    assert result.reason == "failed" and result.exit_code == 1
    [failure] = result.failures
    assert failure.stage == "mean" and failure.exitcode == 1
    assert failure.error == "ValueError: boom at frame 5"
    assert str(failure) == "stage mean died (exit code 1): ValueError: boom at frame 5"
    rows = json.loads((tmp_path / "rows.json").read_text())  # the sink was stopped cleanly: teardown ran
    assert [r[0] for r in rows] == list(range(len(rows))) and len(rows) <= 5
    assert leftovers() == []


@pytest.mark.timeout(120)
def test_a_child_killed_with_sigkill_is_noticed_and_everything_is_unlinked(tmp_path):
    p = three_stage(tmp_path, n=0, interval=0.002)
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = {s.name: s for s in p.stage_stats()}
            if stats.get("sink") and stats["sink"].items > 10:
                killed.append(stats["mean"].pid)
                os.kill(stats["mean"].pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    result = p.run(timeout=90)
    t.join(5)
    assert killed, "the pipeline never got going"
    assert result.reason == "failed" and result.exit_code != 0
    assert [(f.stage, f.exitcode) for f in result.failures] == [("mean", -signal.SIGKILL)]
    assert "killed by SIGKILL" in result.summary()
    assert leftovers() == []


@pytest.mark.timeout(120)
def test_a_stage_can_stop_a_live_pipeline(tmp_path):
    result = three_stage(tmp_path, n=0, stop_after=20).run(timeout=90)
    assert (result.reason, result.exit_code) == ("stopped", 0)
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) >= 20 and [r[0] for r in rows] == list(range(len(rows)))
    assert leftovers() == []


@pytest.mark.timeout(120)
def test_a_dead_stage_is_restarted_within_its_budget(tmp_path):
    marker = tmp_path / "died"
    p = three_stage(tmp_path, n=30, marker=str(marker), restarts=1)
    result = p.run(timeout=90)
    assert marker.exists()  # it did die once
    assert (result.reason, result.exit_code) == ("finished", 0)
    stats = {s.name: s for s in p.stage_stats()}
    assert stats["mean"].restarts == 1
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r[0] for r in rows] == list(range(1, 30))  # only the record in hand when it died is lost
    assert leftovers() == []


@pytest.mark.timeout(120)
def test_live_mode_drops_are_counted_exactly(tmp_path):
    p = Pipeline(grace=3.0)
    p.ring(ring_name(0), slots=4, height=8, width=8)
    p.queue("live", capacity=2, slot_bytes=1024, policy="drop_oldest")
    p.stage("source", CountSource(n=400), outputs=["live"], rings=[ring_name(0)])
    p.stage("sink", Collect(str(tmp_path / "rows.json"), delay=0.002), inputs=["live"])
    result = p.run(timeout=90)
    assert result.reason == "finished"
    seqs = [r[0] for r in json.loads((tmp_path / "rows.json").read_text())]
    stats = {s.name: s for s in p.stage_stats()}
    assert stats["source"].drops > 0
    assert len(seqs) + stats["source"].drops == 400
    assert seqs == sorted(set(seqs)) and seqs[-1] == 399  # newest kept, order preserved


# -- the supervisor as its own process, signalled from outside ------------------------------------------------

def _start_served(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tests.app.runtime.test_process import "
                             "serve_forever; serve_forever(sys.argv[1])", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "sink").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the served pipeline never got going"
        time.sleep(0.05)
    pids = [int((tmp_path / n).read_text()) for n in ("source", "sink")]
    assert leftovers(proc.pid), "segments should exist while it runs"
    return proc, pids


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie waiting for an absent reaper has exited


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("sig", "code", "reason"), [(signal.SIGINT, 130, "interrupted"),
                                                     (signal.SIGTERM, 143, "terminated")])
def test_signalled_supervisor_stops_its_stages_and_unlinks(tmp_path, sig, code, reason):
    proc, pids = _start_served(tmp_path)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert reason in out
    assert all(_gone(pid) for pid in pids)
    assert leftovers(proc.pid) == []
    assert "Traceback" not in err


@pytest.mark.timeout(120)
def test_sigkilled_supervisor_leaves_nothing_behind(tmp_path):
    proc, pids = _start_served(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while (leftovers(proc.pid) or not all(_gone(pid) for pid in pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in pids), "orphaned stages did not notice their supervisor died"
    assert leftovers(proc.pid) == []  # unlinked by the resource tracker once the last stage exited
