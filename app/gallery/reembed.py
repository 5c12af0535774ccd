"""Rebuild a gallery for another embedding model from the enrolment photos kept beside it.

All new embeddings are computed before anything is written, and the embedder record is written last:
a run stopped half-way leaves a gallery that still names the old model (so it is refused at start, not
searched with mixed vectors) and can simply be run again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.gallery.base import Gallery
from app.gallery.records import Embedder, GalleryError, file_digest


def photo_of(gallery: Gallery, payload: dict) -> Path | None:
    """The photo a point was embedded from: the kept copy, else its original file if still there (galleries
    from before photos were kept)."""
    kept = gallery.photos.path(payload.get("photo")) if gallery.photos is not None else None
    if kept is not None:
        return kept
    source = Path(str(payload.get("source") or ""))
    return source if str(source) and source.is_file() else None


def reembed(analyzer, gallery: Gallery, target: Embedder, drop_missing: bool = False) -> str:
    """Re-embed every point with ``analyzer`` (largest face of its photo); returns the line saying what was done.

    A point without a photo (or whose photo shows no face) cannot be rebuilt: then nothing changes unless
    ``drop_missing``, which deletes those points."""
    import cv2

    ids, vectors, payloads, missing = [], [], [], []
    for pid, payload in gallery.points():
        photo = photo_of(gallery, payload)
        face = None
        if photo is not None:
            image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            faces = analyzer.analyze(image) if image is not None else None
            if faces is not None and len(faces.detections):
                face = faces.embeddings[int(np.argmax(faces.detections.areas))]
        if face is None:
            missing.append((pid, payload))
            continue
        if gallery.photos is not None and not payload.get("photo"):
            payload = {**payload, "photo": gallery.photos.put(photo, file_digest(photo))}
        ids.append(pid)
        vectors.append(face)
        payloads.append(payload)
    if missing and not drop_missing:
        who: dict[str, int] = {}
        for _, p in missing:
            who[str(p.get("name", ""))] = who.get(str(p.get("name", "")), 0) + 1
        listed = ", ".join(f"{n} ({c})" for n, c in sorted(who.items())[:8]) + (", …" if len(who) > 8 else "")
        raise GalleryError(f"{len(missing)} embedding(s) have no photo to rebuild them from: {listed}; nothing "
                           "was changed: enrol their photos again, or run `facestream people reembed "
                           "--drop-missing` to leave them out")
    if ids:
        gallery.replace_vectors(ids, np.stack(vectors), payloads)
    gallery.delete_points([pid for pid, _ in missing])
    before = gallery.stored_embedder()
    gallery.set_embedder(target)
    people = len({p.get("person_id") for p in payloads})
    line = f"re-embedded {len(ids)} photo(s) of {people} people with {target.model}"
    line += f" (was {before.model})" if before is not None and before.model != target.model else ""
    return line + (f"; left out {len(missing)} embedding(s) with no photo" if missing else "")
