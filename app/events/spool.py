"""How the identify stage hands events to the publisher process, and how both hand time-to-name marks to the
parent: files, not a ``multiprocessing`` queue.

A stage can be killed at any moment (and restarted): a killed writer of a ``multiprocessing`` queue can die
holding its lock (every later writer hangs) or half-way through a message (the reader gets garbage). A spool
file is written under a temporary name and renamed into place, so a reader sees whole events or none, and
nothing is shared that a dead process could hold. Writing never waits on the reader; no fsync (the publisher
makes each event durable in the outbox as soon as it reads it).

Names sort in the order they were written (nanosecond clock, then pid and a counter), which is the order the
publisher accepts them in. Events left by a run that crashed are read by the next run's publisher.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import time
from pathlib import Path

EVENT, END = ".json", ".end"


class SpoolWriter:
    """One per writing process (made lazily after a spawn: it holds the pid)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def put(self, item: dict | None, run: str = "") -> None:
        """An event's dict, or None: the end of ``run``'s events."""
        self.n += 1
        stem = f"{time.time_ns():020d}-{os.getpid()}-{self.n:08d}"
        data = json.dumps(item, separators=(",", ":")).encode() if item is not None else run.encode()
        tmp = self.folder / f".{stem}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.folder / (stem + (EVENT if item is not None else END)))


class SpoolReader:
    """``get(timeout)`` like a queue's: the next event's dict, None at the end of ``run``, ``queue.Empty`` after
    ``timeout``. A file is deleted at the next ``get`` (or ``close``): by then the caller has stored it."""

    def __init__(self, folder: str | Path, run: str, poll: float = 0.02) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run, self.poll = run, poll
        self._taken: Path | None = None

    def get(self, timeout: float | None = None):
        self._forget()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for name in sorted(n for n in os.listdir(self.folder) if not n.startswith(".")):
                path = self.folder / name
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # another run's publisher took it
                    continue
                if name.endswith(END):
                    if data.decode(errors="replace") != self.run:
                        continue  # another run's end (two runs sharing EVENTS_DIR): not ours to take
                    self._taken = path
                    return None
                if name.endswith(EVENT):
                    self._taken = path
                    try:
                        return json.loads(data)
                    except json.JSONDecodeError:
                        return {"bad": name}  # the publisher logs it as a bad event and goes on
            if deadline is not None and time.monotonic() >= deadline:
                raise queue.Empty
            time.sleep(self.poll)

    def close(self) -> None:
        self._forget()

    def _forget(self) -> None:
        if self._taken is not None:
            with contextlib.suppress(FileNotFoundError):
                self._taken.unlink()
            self._taken = None


class MarkLog:
    """Time-to-name marks appended as JSON lines to ``<folder>/marks-<pid>.jsonl`` (one write per line, so a
    killed process leaves at most one partial line, which the reader skips)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None

    def put(self, mark: tuple) -> None:
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.folder / f"marks-{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                               0o600)
        os.write(self._fd, (json.dumps(list(mark)) + "\n").encode())


def read_marks(folder: str | Path) -> list[tuple]:
    """Every mark written in ``folder`` (partial lines skipped)."""
    marks = []
    for path in sorted(Path(folder).glob("marks-*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError, TypeError):
                marks.append(tuple(json.loads(line)))
    return marks
