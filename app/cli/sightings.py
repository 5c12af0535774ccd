"""`facestream sightings`: when and where a face (a photo, or a person's name) was seen, best match first.

Works while a pipeline runs: the embedded sightings store takes turns on its folder (app/gallery/sightings_edge.py),
so this command waits at most one write's time for the pipeline's identify stage.
"""

from __future__ import annotations

import json
import time

import numpy as np

from app.cli.common import ImageUnreadable, load_settings, read_image
from app.errors import FacestreamError
from app.gallery.sightings import parse_since


def add_parsers(sub) -> None:
    p = sub.add_parser("sightings", help="when and where a face was seen (SIGHTINGS=known|all keeps them)")
    p.add_argument("--photo", help="a photo of the face to look for (one face, or --largest)")
    p.add_argument("--name", help="an enrolled person's display name (any case)")
    p.add_argument("--since", help="only sightings since: 30m, 2h, 7d, or a date/time (2026-12-04 or "
                   "2026-12-04T15:00)")
    p.add_argument("--stream", type=int, help="only this stream (0 is the first VIDEO_SOURCE)")
    p.add_argument("--limit", type=int, default=20, help="most sightings listed")
    p.add_argument("--threshold", type=float, help="least similarity to --photo (default MATCH_THRESHOLD)")
    p.add_argument("--largest", action="store_true", help="use the largest face of a photo with several")
    p.add_argument("--json", action="store_true", help="one JSON object per sighting instead of text")
    p.set_defaults(func=cmd_sightings)


def photo_embedding(settings, photo: str, largest: bool = False) -> np.ndarray:
    """The embedding of the one face in ``photo`` (the enrolment models, on the CPU)."""
    from app.cli.tools import _analyzer

    try:
        image = read_image(photo)
    except ImageUnreadable as exc:
        raise FacestreamError(f"--photo {photo}: {exc.reason}") from None
    faces = _analyzer(settings).analyze(image)
    n = len(faces.detections)
    if n == 0:
        raise FacestreamError(f"--photo {photo}: no face found — use a photo where the face is clearly visible")
    if n > 1 and not largest:
        raise FacestreamError(f"--photo {photo}: {n} faces — crop it to one, or add --largest")
    return np.asarray(faces.embeddings[int(np.argmax(faces.detections.areas))], np.float32)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def line(hit) -> str:
    s = hit.sighting
    who = s.name if s.person_id else ("unknown" + (f" (nearest {s.nearest} {s.similarity:.2f})" if s.nearest else ""))
    score = "" if hit.score is None else f"{hit.score:.2f}  "
    frames = f" frames {s.first_frame}-{s.last_frame}" if s.first_frame >= 0 else ""
    return (f"{score}{who}  stream {s.stream} track {s.track_id}{frames}  {_when(s.first_seen)} -> "
            f"{_when(s.last_seen)} ({s.last_seen - s.first_seen:.1f} s)  snapshot {s.snapshot or '-'}")


def record(hit) -> dict:
    out = {"id": hit.id, "score": hit.score, **hit.sighting.payload()}
    out.pop("name_key", None)
    return out


def cmd_sightings(args) -> int:
    from app.gallery.sightings import Where, sightings_from_settings

    settings = load_settings(args)
    if args.limit < 1:
        raise FacestreamError(f"--limit {args.limit}: give 1 or more")
    where = Where(name=args.name, stream=args.stream, since=parse_since(args.since))
    vector = photo_embedding(settings, args.photo, args.largest) if args.photo else None
    with sightings_from_settings(settings) as store:
        if vector is not None:
            threshold = settings.match_threshold if args.threshold is None else args.threshold
            hits = store.search(vector, where, args.limit, threshold)
        else:
            hits = store.list(where, args.limit)
    if args.json:
        for hit in hits:
            print(json.dumps(record(hit)))
        return 0
    if not hits:
        print(_nothing(settings, args))
    for hit in hits:
        print(line(hit))
    return 0


def _nothing(settings, args) -> str:
    if settings.sightings == "off":
        return "no sightings: SIGHTINGS=off keeps none (set SIGHTINGS=known or all)"
    what = "that face" if args.photo else (repr(args.name) if args.name else "anyone")
    hint = "" if settings.sightings == "all" else " (SIGHTINGS=known keeps enrolled people only; all keeps strangers)"
    return f"no sightings of {what} match{hint}"
