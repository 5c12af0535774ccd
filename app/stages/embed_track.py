"""Embed + track: ByteTrack on the boxes, ArcFace on the tracked faces, a running embedding per track.

Tracking first means only faces that belong to a track are embedded; the identity bookkeeping
then says which tracks need a gallery query on this frame (new, drifted, or due a slow refresh).

Boxes alone cannot see a scene cut: a new person's face in the same place continues the old track. A name
may be shown only for a face whose own embedding, taken since the last cut or jump, confirmed its track
(between embeddings a track keeps its name; across a cut or a jump it does not). So:

- a scene cut (capture's scene counter, carried in the record's frame header, changed since this stream's last frame)
  ends every track: the stream's tracker starts again, every face gets a new id and is embedded at once,
  and the old ids are reported removed (their votes are forgotten);
- a box that does not continue its track (IoU with the predicted box below JUMP_IOU, or a track re-found
  after being lost) is embedded at once, out of EMBED_INTERVAL's turn;
- the track ids shown are aliases of ByteTrack's: when an embedded face stops resembling its track's
  running embedding (IDENTITY_BREAK), it gets a new id and the old identity is forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.protocol import Context, Stage
from app.settings import Settings
from app.stages.models import ModelLoad
from app.tracking.bytetrack import ByteTracker, TrackResult
from app.tracking.identity import QuerySchedule
from app.types import Faces
from engines.model_zoo import load_embedder

log = logging.getLogger("facestream.stage")

# A matched box whose IoU with its track's predicted box is below this is embedded at once. Measured on the
# shared clip: the boxes that carried a track across its cuts scored 0.39 and 0.49; faces moving within a
# scene scored 0.93 at the median and below 0.6 on 7 of 750 matches (an out-of-turn embedding each).
JUMP_IOU = 0.6


@dataclass
class Plan:
    """One frame's tracking: ``rows`` (detections tracked) and ``tids`` (their ByteTrack ids) in result order,
    ``due`` the rows to embed now, ``ended`` ByteTrack ids a scene cut ended before this frame was tracked."""

    result: TrackResult
    rows: np.ndarray
    tids: np.ndarray
    due: np.ndarray
    ended: list[int] = field(default_factory=list)


@dataclass
class Pending:
    """A submitted batch: its frames, their tracking, faces embedded per frame, and the wait for the vectors."""

    items: list
    plans: list
    counts: list[int]
    embeddings: Callable[[], np.ndarray]


@dataclass(frozen=True)
class EmbedConfig:
    """What embedding and tracking take from the settings (EMBEDDER_MODEL, EMBEDDING_BACKEND, EMBED_*, the
    tracker's and the identities' thresholds)."""

    model: str
    backend: str
    load: ModelLoad
    batch: int
    interval: int  # 0: auto (every frame on a GPU, every third on a CPU)
    track_thresh: float
    match_thresh: float
    track_buffer: int
    drift_threshold: float
    refresh_frames: int
    identity_break: float

    @classmethod
    def of(cls, settings: Settings, threads: int | None = None) -> EmbedConfig:
        s = settings
        return cls(s.embedder_model, s.embedding_backend, ModelLoad.of(s, threads), s.embed_batch, s.embed_interval,
                   s.track_thresh, s.match_thresh, s.track_buffer, s.drift_threshold, s.refresh_frames,
                   s.identity_break)


class EmbedTrack:
    def __init__(self, config: EmbedConfig, fps: float | dict[int, float] = 30.0,
                 warn: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.fps = fps
        self.embedder = load_embedder(config.model, config.backend, **config.load.kwargs(warn),
                                      batch_size=config.batch)
        self.trackers: dict[int, ByteTracker] = {}
        self.identities: dict[int, QuerySchedule] = {}
        self.aliases: dict[int, dict[int, int]] = {}
        self.last_embedded: dict[int, dict[int, int]] = {}  # stream → ByteTrack id → frame last embedded
        self.scenes: dict[int, int] = {}  # stream → scene number of its last frame
        self._next_id = 1
        # auto: a GPU embeds every face of every frame with time to spare; two CPU cores cannot (720p: 22 fps
        # embedding every frame, 35 fps every third), and a face's name changes far slower than that
        self.interval = config.interval or (1 if self.backend.on_gpu else 3)

    @property
    def backend(self):
        return self.embedder.backend

    def warmup(self) -> None:
        """Before the first frame: on a GPU, capture the CUDA graphs of the batch sizes faces will come in; on a
        CPU, run the largest batch once, so the runtime's memory arena reaches its size now and not halfway
        through a run (measured: +58 MB of RSS in the 20 s after warm-up without it)."""
        if self.backend.on_gpu:
            sizes = self.embedder.capabilities.batch_buckets  # the GPU adapter's padded sizes: one graph each
            if not sizes:
                sizes = [1 << k for k in range(self.config.batch.bit_length())]
            for b in sizes:
                self.embedder.embed(np.zeros((b, 112, 112, 3), np.uint8))
        else:
            self.embedder.embed(np.zeros((self.config.batch, 112, 112, 3), np.uint8))

    def _for_stream(self, stream: int) -> tuple[ByteTracker, QuerySchedule]:
        if stream not in self.trackers:
            s = self.config
            fps = self.fps.get(stream, 30.0) if isinstance(self.fps, dict) else self.fps
            self.trackers[stream] = ByteTracker(fps=fps, track_thresh=s.track_thresh, match_thresh=s.match_thresh,
                                                track_buffer=s.track_buffer)
            self.identities[stream] = QuerySchedule(drift_threshold=s.drift_threshold,
                                                      refresh_frames=s.refresh_frames)
            self.aliases[stream] = {}
        return self.trackers[stream], self.identities[stream]

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _shown_ids(self, stream: int, tracker_ids: np.ndarray, embeddings: np.ndarray,
                   identities: QuerySchedule) -> tuple[np.ndarray, list[int]]:
        """Map ByteTrack ids to the ids shown, splitting tracks whose face changed identity."""
        alias = self.aliases[stream]
        shown, broken = np.empty(len(tracker_ids), np.int64), []
        for k, tid in enumerate(tracker_ids.tolist()):
            sid = alias.get(tid)
            if sid is None:
                sid = alias[tid] = self._new_id()
            else:
                sim = identities.similarity(sid, embeddings[k])
                if sim is not None and sim < self.config.identity_break:
                    broken.append(sid)
                    identities.forget([sid])
                    sid = alias[tid] = self._new_id()
            shown[k] = sid
        return shown, broken

    @property
    def overlaps(self) -> bool:
        """``submit`` returns while the embedding still runs (the GPU adapter): worth holding a batch back."""
        return self.backend.on_gpu and self.embedder.capabilities.embeds_async

    def submit(self, items: list[tuple[Faces, np.ndarray, int, int | None]]) -> Pending:
        """Track each frame and start embedding the faces due; ``collect`` finishes. Between the two the caller
        may take and track the next batch while the GPU embeds this one. Batches are collected in the order
        they were submitted, at most two outstanding."""
        plans = [self._track(faces, stream, index) for faces, _, stream, index in items]
        picked = [crops[plan.rows[plan.due]] for (_, crops, _, _), plan in zip(items, plans)]
        counts = [len(p) for p in picked]
        if not sum(counts):
            return Pending(items, plans, counts, lambda: np.zeros((0, 512), np.float32))
        crops = np.concatenate(picked)
        if self.embedder.capabilities.embeds_async:
            return Pending(items, plans, counts, self.embedder.embed_async(crops))
        embeddings = self.embedder.embed(crops)
        return Pending(items, plans, counts, lambda: embeddings)

    def collect(self, pending: Pending) -> list[Faces]:
        embeddings = pending.embeddings()
        out, at = [], 0
        for (faces, _, stream, index), plan, n in zip(pending.items, pending.plans, pending.counts):
            out.append(self._finish(faces, stream, index, plan, embeddings[at:at + n]))
            at += n
        return out

    def _cut(self, stream: int, scene: int, tracker: ByteTracker) -> list[int]:
        """On a scene cut, restart the stream's tracker; returns the ByteTrack ids that ended. The aliases and
        identities of those ids are dropped in ``_finish``, in frame order (a batch tracked before this one
        may not be finished yet)."""
        if scene < 0:  # no scene signal (a caller without capture's counter): boxes and embeddings only
            return []
        previous, self.scenes[stream] = self.scenes.get(stream), scene
        if previous is None or previous == scene:
            return []
        ended = tracker.ids.tolist()
        tracker.reset()  # ids keep counting up: every face from here on is a new track, embedded at once
        last = self.last_embedded.get(stream, {})
        for t in ended:
            last.pop(int(t), None)
        return ended

    def _track(self, faces: Faces, stream: int, frame_index: int | None) -> Plan:
        """ByteTrack this frame (after a scene cut, with a fresh tracker). ``due``: all tracked rows, or with
        EMBED_INTERVAL > 1 new tracks, boxes that jumped, and tracks not embedded for that many frames."""
        tracker, _ = self._for_stream(stream)
        ended = self._cut(stream, faces.scene, tracker)
        result = tracker.update(faces.boxes, faces.scores, frame_index=frame_index)
        rows = np.asarray(result.det_index, np.int64)
        tids = np.asarray(result.track_ids, np.int64)
        k = self.interval
        if k <= 1:
            return Plan(result, rows, tids, np.ones(len(rows), bool), ended)
        last = self.last_embedded.setdefault(stream, {})
        clock = frame_index if frame_index is not None else tracker.frame
        due = np.array([clock - last.get(int(t), -(10**9)) >= k for t in tids.tolist()], bool)
        due |= np.asarray(result.continuity) < JUMP_IOU
        for t in tids[due].tolist():
            last[int(t)] = clock
        return Plan(result, rows, tids, due, ended)

    def _finish(self, faces: Faces, stream: int, frame_index: int | None, plan: Plan,
                embeddings: np.ndarray) -> Faces:
        result, rows, tids, embedded = plan.result, plan.rows, plan.tids, plan.due
        _, identities = self._for_stream(stream)
        alias = self.aliases[stream]
        shown_emb, removed = self._shown_ids(stream, tids[embedded], embeddings, identities)
        shown = np.array([alias[int(t)] for t in tids.tolist()], np.int64)  # not embedded: keep their id
        shown[embedded] = shown_emb
        track_ids = np.full(len(faces), -1, np.int64)
        track_ids[rows] = shown
        due = set(identities.update(shown_emb, embeddings))
        last = self.last_embedded.get(stream, {})
        for tid in [*plan.ended, *result.removed_ids]:
            sid = alias.pop(int(tid), None)
            last.pop(int(tid), None)
            if sid is not None:
                removed.append(sid)
        if removed:
            identities.forget(removed)
        query = np.array([r for r, t in zip(rows[embedded], shown_emb) if int(t) in due], np.int64)
        query_emb = (np.stack([identities.embedding(int(track_ids[r])) for r in query]).astype(np.float32)
                     if len(query) else np.zeros((0, 512), np.float32))
        return Faces(faces.boxes, faces.scores, faces.landmarks, track_ids=track_ids, embeddings=query_emb,
                     query=query, removed=removed, frame=faces.frame)


class EmbedTrackStage(Stage):
    """Tracks and embeds batches of frames' faces (any streams). On a GPU it overlaps a batch's embedding with
    taking the next: it hands on the batch before, and holds none back when nothing else is queued (live: no
    frame waits for one that may not come) or the embedder cannot run in the background (CPU)."""

    def __init__(self, config: EmbedConfig, fps: dict[int, float], batch_size: int = 1,
                 batch_wait: float = 0.0) -> None:
        self.config = config
        self.fps = fps
        self.batch_size = batch_size  # frames per batch; their faces go in EMBED_BATCH chunks
        self.batch_wait = batch_wait
        self.held: tuple | None = None  # (records, pending embedding) of the batch handed on after the next

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.embed = EmbedTrack(self.config, self.fps)
        self.embed.warmup()
        every = "frame" if self.embed.interval == 1 else f"{self.embed.interval} frames"
        log.info("embedder: %s %s; each track embedded every %s", self.config.model,
                 self.embed.backend.describe(), every)

    def process_batch(self, frames: list, recs: list[Faces]) -> list[Faces | None]:
        pending = self.embed.submit([(r, r.crops, r.frame.stream, r.frame.index) for r in recs])
        out = self.finish()
        if self.embed.overlaps and self.ctx.pending():  # overlap the GPU with the next batch
            self.held = (recs, pending)
        else:
            out += self.embed.collect(pending)
        return out

    def finish(self) -> list[Faces]:
        """The batch held back, finished (also at the end of the stream)."""
        held, self.held = self.held, None
        return self.embed.collect(held[1]) if held else []
