"""`enrol` and `people`: put people in the gallery from photos; list, rename, remove them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from app.cli.common import ImageUnreadable, image_files, load_settings, read_image
from app.errors import FacestreamError


def add_parsers(sub) -> None:
    p = sub.add_parser("enrol", aliases=["enroll"], help="add a person (or a folder of people) to the gallery")
    p.add_argument("name", nargs="?", help="the person's name")
    p.add_argument("photos", nargs="*", help="photos of that person, one face each")
    p.add_argument("--folder", help="a folder with one sub-folder of photos per person (its name)")
    p.add_argument("--largest", action="store_true", help="use the largest face of a photo with several")
    p.set_defaults(func=cmd_enrol)

    p = sub.add_parser("people", help="list, rename or remove enrolled people")
    p.add_argument("action", nargs="?", default="list", choices=("list", "rename", "remove"),
                   help="list everyone, rename WHO NEW_NAME, or remove WHO (default list)")
    p.add_argument("who", nargs="?", help="name or person id (rename, remove)")
    p.add_argument("new_name", nargs="?", help="new name (rename)")
    p.set_defaults(func=cmd_people)


def _gallery(settings):
    from app.stages.identify import gallery_from_settings

    return gallery_from_settings(settings)


def collect_enrolment(name: str | None, photos: list[str], folder: str | None) -> dict[str, list[Path]]:
    """{name: [photo paths]} from either NAME PHOTO… or --folder DIR (one sub-folder per person)."""
    if folder:
        root = Path(folder)
        if not root.is_dir():
            raise FacestreamError(f"enrolment folder not found: {folder}")
        people = {d.name: image_files(d) for d in sorted(root.iterdir()) if d.is_dir()}
        people = {k: v for k, v in people.items() if v}
        if not people:
            raise FacestreamError(f"{folder} has no sub-folders with photos: use one sub-folder per person")
        return people
    if not name or not photos:
        raise FacestreamError("say who and with which photos: facestream enrol NAME PHOTO… or --folder DIR")
    return {name: [Path(p) for p in photos]}


def enrol(analyzer, gallery, people: dict[str, list[Path]], largest: bool = False, progress: bool = True) -> dict:
    """Embed each photo's one face and add it; {name: (written, spooled, [(photo, reason skipped)])}.

    ``spooled`` counts embeddings kept in the local spool because the Qdrant server was unreachable:
    they are written when it answers again, never lost."""
    from tqdm import tqdm

    report: dict[str, tuple[int, int, list[tuple[str, str]]]] = {}
    total = sum(len(v) for v in people.values())
    with tqdm(total=total, unit="photo", desc="enrol", disable=not progress, file=sys.stderr) as bar:
        for name, photos in people.items():
            embeddings, sources, skipped = [], [], []
            for photo in photos:
                bar.update(1)
                try:
                    image = read_image(photo)
                except ImageUnreadable as exc:
                    skipped.append((str(photo), exc.reason))
                    continue
                faces = analyzer.analyze(image)
                n = len(faces.detections)
                if n == 0:
                    skipped.append((str(photo), "no face found"))
                    continue
                if n > 1 and not largest:
                    skipped.append((str(photo), f"{n} faces (use --largest to take the largest)"))
                    continue
                i = int(np.argmax(faces.detections.areas))
                embeddings.append(faces.embeddings[i])
                sources.append(str(photo))
            written = spooled = 0
            if embeddings:
                result = gallery.add(name, np.stack(embeddings), source=sources)
                written, spooled = result.written, result.spooled
            report[name] = (written, spooled, skipped)
    return report


def cmd_enrol(args) -> int:
    from app.cli.tools import _analyzer

    people = collect_enrolment(args.name, args.photos, args.folder)
    settings = load_settings(args)
    analyzer = _analyzer(settings)
    gallery = _gallery(settings)
    try:
        report = enrol(analyzer, gallery, people, largest=args.largest)
    finally:
        gallery.close()
    failed = 0
    for name, (written, spooled, skipped) in report.items():
        line = f"{name}: {written} embedding(s) written"
        if spooled:
            line += f", {spooled} kept in the local spool until the Qdrant server answers"
        print(line)
        for photo, why in skipped:
            print(f"  skipped {photo}: {why}")
        failed += len(skipped) > 0 and written + spooled == 0
    return 1 if failed == len(report) else 0


def cmd_people(args) -> int:
    settings = load_settings(args)
    gallery = _gallery(settings)
    try:
        if args.action == "list":
            people = gallery.people()
            if not people:
                print("no one enrolled yet: facestream enrol NAME PHOTO…")
            for p in people:
                print(f"{p.name:30s} {p.embeddings:3d} embedding(s)  id {p.person_id}")
            return 0
        if not args.who:
            raise FacestreamError(f"people {args.action} needs a name or person id")
        if args.action == "rename":
            if not args.new_name:
                raise FacestreamError("people rename needs the new name: facestream people rename OLD NEW")
            n = gallery.rename(args.who, args.new_name)
            print(f"renamed {args.who} to {args.new_name} ({n} embedding(s))")
        else:
            n = gallery.remove(args.who)
            print(f"removed {args.who} ({n} embedding(s))")
        if n == 0:
            raise FacestreamError(f"no one called {args.who} in the gallery: see `facestream people`")
        return 0
    finally:
        gallery.close()
