"""Identify: ask the gallery about the tracks that are due, keep a vote per track, name every face.

Only tracks embed+track sent are asked about, and a track's votes end with it (embed+track ends tracks at a
scene cut and when a face stops resembling its track), so a name is only ever shown on the face it was
confirmed for. The query asks for the best match at any similarity: below MATCH_THRESHOLD it is an unknown
answer that still says how near the nearest person came (logged for tuning the threshold).

Strangers are no longer enrolled under generated names (the retired STORE_UNKNOWN): with SIGHTINGS=all their
tracks are kept as searchable sightings instead (app/gallery/sightings.py)."""

from __future__ import annotations

import logging
import time

import numpy as np

from app.gallery import Embedder, GalleryUnavailable, open_gallery
from app.gallery.outage import status_text
from app.protocol import Context, Health, Stage
from app.settings import Settings
from app.tracking.identity import TrackIdentities
from app.types import UNKNOWN, Faces

log = logging.getLogger("facestream.identify")


def gallery_from_settings(settings: Settings, check_embedder: bool = True, connect: bool = True):
    """The configured gallery; with ``check_embedder``, tied to EMBEDDER_MODEL (a gallery filled by another model
    is refused, EmbedderMismatch). Managing names (people list/rename/remove) needs no model and skips that.
    ``connect=False``: a server is not asked until ``connect()`` (see ``open_gallery``)."""
    return open_gallery(url=settings.qdrant_url or None, path=settings.qdrant_path,
                        collection=settings.qdrant_collection, api_key=settings.qdrant_api_key or None,
                        prefer_grpc=settings.qdrant_grpc,
                        embedder=embedder_of(settings) if check_embedder else None, connect=connect)


def embedder_of(settings: Settings) -> Embedder:
    """EMBEDDER_MODEL and the sha256 of its file: the manifest's for a model we ship (its file is verified against
    it at start-up), else the file's own."""
    from engines.fetch import manifest, require, sha256_file
    from engines.model_zoo import get_info

    onnx = get_info(settings.embedder_model, "embedder").onnx
    entry = manifest().get(onnx)
    digest = entry["sha256"] if entry else sha256_file(require(settings.checkpoint_dir, onnx))
    return Embedder(settings.embedder_model, digest)


class Identify:
    def __init__(self, settings: Settings, gallery=None) -> None:
        self.settings = settings
        self.gallery = gallery if gallery is not None else gallery_from_settings(settings)
        self.votes: dict[int, TrackIdentities] = {}
        self.queries = 0
        self.retry_at = 0.0

    def __call__(self, faces: Faces, stream: int = 0, removed: list[int] | None = None) -> Faces:
        votes = self.votes.setdefault(stream, TrackIdentities(drift_threshold=self.settings.drift_threshold,
                                                              refresh_frames=self.settings.refresh_frames))
        if faces.query is not None and len(faces.query) and time.monotonic() >= self.retry_at:
            try:
                matches = self.gallery.search(faces.embeddings, threshold=-1.0)  # nearest, even if unknown
            except GalleryUnavailable as exc:  # keep showing the last votes; ask again in a while
                log.warning("%s; names are kept from earlier results, retrying in 5 s", exc)
                self.retry_at = time.monotonic() + 5.0
                matches = []
            self.queries += len(matches)
            threshold = self.settings.match_threshold
            for row, match in zip(faces.query, matches):
                tid = int(faces.track_ids[row])
                if match is None or match.score < threshold:
                    votes.record(tid, None, match and match.name, match.score if match else 0.0)
                else:
                    votes.record(tid, match.person_id, match.name, match.score)
        if removed:
            votes.forget(removed)
        names, pids, nearest, sims = [], [], [], np.zeros(len(faces), np.float32)
        for i in range(len(faces)):
            tid = int(faces.track_ids[i]) if faces.track_ids is not None else -1
            label = votes.label(tid) if tid >= 0 else None
            if label is None:
                names.append(UNKNOWN)
                pids.append("")
                nearest.append("")
                continue
            names.append(UNKNOWN if label.name is None else label.name)
            pids.append(label.person_id or "")
            nearest.append(label.nearest or "")
            sims[i] = label.score
        faces.names, faces.person_ids, faces.nearest, faces.similarities = names, pids, nearest, sims
        return faces

    def close(self) -> None:
        self.gallery.close()


class IdentifyStage(Stage):
    """Owns the gallery (the embedded Qdrant folder can be open in one process only)."""

    def __init__(self, settings: Settings, link=None) -> None:
        self.settings = settings
        self.link = link  # app.events.tap.EventsLink: run id, events spool, time-to-name marks
        # snapshots for the events and the sightings
        self.reads_frames = (link is not None and link.events is not None) or settings.sightings != "off"
        self.identify: Identify | None = None
        self._shown = ""

    def setup(self, ctx: Context) -> None:
        from app.events.tap import EventsLink, EventTap

        self.ctx = ctx
        self.identify = Identify(self.settings)
        self.tap = EventTap(self.settings, self.link or EventsLink(run="-"), getattr(ctx, "metrics", None),
                            people=lambda: len(self.identify.gallery.people()))
        from app.gallery.sightings_feed import SightingRecorder

        self.sightings = SightingRecorder(self.settings, self.tap.link.run, self.settings.sources)

    def process(self, frame: np.ndarray | None, rec: Faces) -> Faces:
        faces = self.identify(rec, stream=rec.frame.stream, removed=rec.removed)
        from app.display.blur import hidden_copy

        wanted = self.tap.wants_frame or self.sightings.wants_image(rec.frame.stream, faces)
        # snapshots (events, sightings) are cut from a copy that hides what PRIVACY_BLUR hides on screen
        image = hidden_copy(frame, faces, self.settings.privacy_blur, self.ctx.frame_valid) if wanted else None
        self.tap.labelled(faces, image, self.ctx.frame_valid)  # events, face counts, time-to-name marks
        self.sightings.labelled(faces, image)
        # the display needs no embeddings: after a scene cut every face is queried at once, and 64 faces' worth
        # (128 KB) would not fit the queue's slot (sized for names and boxes)
        faces.embeddings = faces.query = None
        self.report_gallery()
        return faces

    def report_gallery(self) -> None:
        """A gallery server's outage in the health column (the display's red line, the summary's blind time)."""
        outage = self.identify.gallery.outage  # None for the embedded engine: only a server can be unreachable
        text = status_text(outage)
        if text != self._shown:
            state = Health.OK if not text else Health.DOWN if outage.unreachable else Health.RECOVERED
            self.ctx.health(state, text, outage.blind_s() if outage else 0.0)
            self._shown = text

    def finish(self) -> list[Faces]:
        """The end of the stream: tracks still open get their ``person.left``."""
        self.tap.finish()
        self.sightings.finish()
        return []

    def teardown(self) -> None:
        if getattr(self, "sightings", None) is not None:
            self.sightings.close()
        if self.identify is not None:
            self.identify.close()
