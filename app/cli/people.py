"""`enrol` and `people`: put people in the gallery from photos; list, rename, remove, re-embed them; the spool.

Every line printed says what was done; nothing is printed as done that was not.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.cli.common import ImageUnreadable, image_files, load_settings, read_image
from app.errors import FacestreamError

NAME_FILE = "name.txt"  # in a person's enrolment folder: their display name (the folder's name is their id)


def add_parsers(sub) -> None:
    p = sub.add_parser("enrol", aliases=["enroll"], help="add a person (or a folder of people) to the gallery")
    p.add_argument("name", nargs="?", help="the person's display name")
    p.add_argument("photos", nargs="*", help="photos of that person, one face each")
    p.add_argument("--folder", help="a folder with one sub-folder of photos per person: the sub-folder's name is "
                   f"the person's id, an optional {NAME_FILE} in it their display name")
    p.add_argument("--largest", action="store_true", help="use the largest face of a photo with several")
    p.add_argument("--force", action="store_true",
                   help="enrol a photo even if its face already matches another person above MATCH_THRESHOLD")
    p.set_defaults(func=cmd_enrol)

    p = sub.add_parser("people", help="list, rename, merge, remove or re-embed enrolled people; the enrolment spool")
    p.set_defaults(func=cmd_list)
    acts = p.add_subparsers(dest="action", metavar="{list,rename,merge,remove,remove-photo,reembed,spool}",
                            help="what to do with the people (default: list)")
    a = acts.add_parser("list", help="everyone enrolled (the default)")
    a.add_argument("--photos", action="store_true", help="also each person's photos (id and name)")
    a.set_defaults(func=cmd_list)
    for name, what in (("rename", "give a person a new display name"),
                       ("remove", "erase a person: embeddings, photos, sightings, snapshots")):
        a = acts.add_parser(name, help=what)
        a.add_argument("who", help="the person's display name (any case), or their id with --id")
        if name == "rename":
            a.add_argument("new_name", help="the new display name")
        a.add_argument("--id", action="store_true", dest="by_id", help="WHO is a person id, not a display name")
        a.set_defaults(func=cmd_rename if name == "rename" else cmd_remove)
    a = acts.add_parser("merge", help="move every embedding and photo of one person to another (who keeps their name)")
    a.add_argument("who", help="the person merged away: display name (any case), or id with --id")
    a.add_argument("into", help="the person who stays: display name (any case), or id with --id")
    a.add_argument("--id", action="store_true", dest="by_id", help="WHO and INTO are person ids")
    a.set_defaults(func=cmd_merge)
    a = acts.add_parser("remove-photo", help="delete the embeddings made from one photo of a person")
    a.add_argument("who", help="the person's display name (any case), or their id with --id")
    a.add_argument("photo", help="the photo's id, or the name it was enrolled under (`people list --photos`)")
    a.add_argument("--id", action="store_true", dest="by_id", help="WHO is a person id, not a display name")
    a.set_defaults(func=cmd_remove_photo)
    a = acts.add_parser("reembed", help="rebuild every embedding from the kept photos with EMBEDDER_MODEL")
    a.add_argument("--drop-missing", action="store_true",
                   help="leave out embeddings that have no kept photo (else nothing is changed)")
    a.set_defaults(func=cmd_reembed)
    a = acts.add_parser("spool", help="enrolments waiting for an unreachable Qdrant server")
    a.add_argument("spool_action", nargs="?", default="list", choices=("list", "flush", "drop"),
                   help="list the waiting enrolments, flush them to the server, or drop them")
    a.add_argument("entries", nargs="*", help="drop: only these entries (ids from `people spool list`)")
    a.set_defaults(func=cmd_spool)


def _gallery(settings, check_embedder: bool = True, connect: bool = True):
    from app.stages.identify import gallery_from_settings

    return gallery_from_settings(settings, check_embedder=check_embedder, connect=connect)


@dataclass
class Enrolment:
    """One person to enrol: a display name, their photos, and (from a folder) their stable id."""

    name: str
    photos: list[Path]
    person_id: str | None = None
    named_by_file: bool = False


def collect_enrolment(name: str | None, photos: list[str], folder: str | None) -> list[Enrolment]:
    """Who to enrol with which photos, from either NAME PHOTO… or --folder DIR (one sub-folder per person)."""
    from app.gallery.records import slug

    if folder:
        root = Path(folder)
        if not root.is_dir():
            raise FacestreamError(f"enrolment folder not found: {folder}")
        out = []
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            files = image_files(d)
            if not files:
                continue
            named = d / NAME_FILE
            display = named.read_text(encoding="utf-8").strip().splitlines()[0].strip() if named.is_file() else ""
            out.append(Enrolment(display or d.name, files, slug(d.name), bool(display)))
        if not out:
            raise FacestreamError(f"{folder} has no sub-folders with photos: use one sub-folder per person")
        return out
    if not name or not photos:
        raise FacestreamError("say who and with which photos: facestream enrol NAME PHOTO… or --folder DIR")
    return [Enrolment(name, [Path(p) for p in photos])]


@dataclass
class Outcome:
    """What enrolling one person did."""

    name: str
    person_id: str | None = None
    written: int = 0
    already: int = 0
    spooled: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.written + self.already + self.spooled > 0

    def lines(self) -> list[str]:
        if self.error:
            head = f"{self.name}: not enrolled: {self.error}"
        elif self.spooled:
            head = f"{self.name}: {self.spooled} photo(s) kept in the local spool until the Qdrant server answers"
        elif self.written:
            head = f"enrolled {self.name}: {self.written} photo(s)"
            head += f", {self.already} already enrolled" if self.already else ""
        elif self.already:
            head = f"{self.name}: already enrolled ({self.already} photo(s))"
        else:
            head = f"{self.name}: nothing enrolled"
        return [head, *(f"  {n}" for n in self.notes), *(f"  skipped {p}: {why}" for p, why in self.skipped)]


def enrol(analyzer, gallery, people: list[Enrolment], threshold: float, largest: bool = False, force: bool = False,
          progress: bool = True) -> list[Outcome]:
    """Embed each new photo's one face and add it to its person; one Outcome per person.

    A photo already enrolled (by its bytes) is not embedded again; one already enrolled as someone else, or whose
    face matches another person at ``threshold`` or more (unless ``force``), is skipped with the reason.
    Embeddings kept in the spool (server unreachable) are written when it answers again, never lost."""
    from tqdm import tqdm

    from app.gallery import GalleryError, GalleryUnavailable
    from app.library.errors import LibraryError

    outcomes = []
    total = sum(len(e.photos) for e in people)
    with tqdm(total=total, unit="photo", desc="enrol", disable=not progress, file=sys.stderr) as bar:
        for who in people:
            out = Outcome(who.name)
            outcomes.append(out)
            try:
                _enrol_one(analyzer, gallery, who, out, bar, threshold, largest, force)
            except GalleryUnavailable:
                raise
            except (GalleryError, LibraryError) as exc:
                out.error = str(exc)
    return outcomes


def _enrol_one(analyzer, gallery, who: Enrolment, out: Outcome, bar, threshold: float, largest: bool,
               force: bool) -> None:
    from app.gallery import GalleryUnavailable

    name, pid = who.name, who.person_id
    reachable = True
    try:
        if pid is not None:
            existing = gallery.person(pid)
            if existing is not None and existing.name != who.name:
                name = existing.name  # a renamed person keeps their name; the folder keeps feeding them
                if who.named_by_file:
                    out.notes.append(f"kept the name {existing.name!r} ({NAME_FILE} says {who.name!r}: "
                                     f"facestream people rename to change it)")
        else:
            found = gallery.find(name)
            if len(found) == 1:  # the same name in any case: that person, under the spelling stored
                pid, name = found[0].person_id, found[0].name
    except GalleryUnavailable:
        reachable = False
    out.name, out.person_id = name, pid
    embeddings, sources = [], []
    for photo in who.photos:
        bar.update(1)
        if reachable:
            try:
                owner = gallery.photo_owner(photo, pid)
            except GalleryUnavailable:
                reachable, owner = False, None
            if owner is not None and pid is not None and owner.person_id == pid:
                out.already += 1
                continue
            if owner is not None:
                out.skipped.append((str(photo), f"already enrolled as {owner.name}"))
                continue
        try:
            image = read_image(photo)
        except ImageUnreadable as exc:
            out.skipped.append((str(photo), exc.reason))
            continue
        faces = analyzer.analyze(image)
        n = len(faces.detections)
        if n == 0:
            out.skipped.append((str(photo), "no face found"))
            continue
        if n > 1 and not largest:
            out.skipped.append((str(photo), f"{n} faces (use --largest to take the largest)"))
            continue
        embeddings.append(faces.embeddings[int(np.argmax(faces.detections.areas))])
        sources.append(str(photo))
    if embeddings and reachable and not force:
        try:
            embeddings, sources = _drop_lookalikes(gallery, embeddings, sources, pid, threshold, out)
        except GalleryUnavailable:
            reachable = False
    if not reachable:
        out.notes.append("the Qdrant server is unreachable: photos were not checked against the people enrolled")
    if not embeddings:
        return
    result = gallery.add(name, np.stack(embeddings), person_id=pid, source=sources)
    out.person_id = result.person_id or pid
    out.written += result.written
    out.already += result.already
    out.spooled += result.spooled
    out.skipped += [(src, f"already enrolled as {owner}") for src, owner in result.taken]


def _drop_lookalikes(gallery, embeddings: list, sources: list[str], pid: str | None, threshold: float,
                     out: Outcome) -> tuple[list, list[str]]:
    """Photos whose face matches another person at ``threshold`` or more are skipped, naming that person."""
    kept_e, kept_s = [], []
    for emb, src, top in zip(embeddings, sources, gallery.search_top(np.stack(embeddings), threshold, k=2)):
        other = next((m for m in top if m.person_id != pid), None)
        if other is None:
            kept_e.append(emb)
            kept_s.append(src)
        else:
            out.skipped.append((src, f"matches {other.name} ({other.score:.2f}) — use --force to enrol it anyway"))
    return kept_e, kept_s


def cmd_enrol(args) -> int:
    from app.cli.tools import _analyzer

    people = collect_enrolment(args.name, args.photos, args.folder)
    settings = load_settings(args)
    gallery = _enrol_gallery(settings)
    try:
        analyzer = _analyzer(settings)
        outcomes = enrol(analyzer, gallery, people, settings.match_threshold, largest=args.largest,
                         force=args.force)
    finally:
        gallery.close()
    for out in outcomes:
        print("\n".join(out.lines()))
    return 0 if any(o.ok for o in outcomes) else 1


def _enrol_gallery(settings):
    """The running pipeline's gallery through its control socket (a GalleryProxy), else the gallery opened
    here; a pipeline that holds the gallery but is not serving yet (starting) is waited for a while."""
    from app.control.client import ControlClient
    from app.library import owner_or_local, socket_path
    from app.library.proxy import GalleryProxy

    client = ControlClient(socket_path(settings))
    return owner_or_local(client, lambda: GalleryProxy(client.call, client.call("ping").get("gallery", "")),
                          lambda: _gallery(settings))


def _library(args):
    """The face library: the running pipeline's, or the gallery opened here when none runs."""
    from app.library import open_library

    return open_library(load_settings(args))


def cmd_list(args) -> int:
    with _library(args) as library:
        people = library.people()
    if not people:
        print("no one enrolled yet: facestream enrol NAME PHOTO…")
    for p in people:
        print(f"{p.name:30s} {p.embeddings:3d} embedding(s)  id {p.id}")
        if getattr(args, "photos", False):
            for photo in p.photos:
                print(f"    photo {photo.id}  {photo.filename}")
    return 0


def cmd_rename(args) -> int:
    with _library(args) as library:
        before = library.lookup(args.who, args.by_id)
        after = library.rename(before.id, args.new_name)
    print(f"renamed {before.name} to {after.name} (id {after.id}, {after.embeddings} embedding(s))")
    return 0


def cmd_remove(args) -> int:
    """The person, their photos, sightings and snapshots, and unknown sightings of their face (an erase)."""
    from app.gallery.sightings_erase import erased_line
    from app.library.views import PersonView

    with _library(args) as library:
        # the owner's reply: the person's view and what the erase took with them (``Library.remove`` keeps the view)
        reply = library.call("remove", person_id=library.lookup(args.who, args.by_id).id)
    gone = PersonView.from_dict(reply)
    print(f"removed {gone.name} (id {gone.id}, {gone.embeddings} embedding(s))")
    print(erased_line(reply.get("erased", {})))
    return 0


def cmd_merge(args) -> int:
    with _library(args) as library:
        gone = library.lookup(args.who, args.by_id)
        into = library.lookup(args.into, args.by_id)
        after = library.merge(gone.id, into.id)
    print(f"merged {gone.name} (id {gone.id}, {gone.embeddings} embedding(s)) into {after.name} "
          f"(id {after.id}, now {after.embeddings} embedding(s))")
    return 0


def cmd_remove_photo(args) -> int:
    from app.library.errors import UnknownPhoto

    with _library(args) as library:
        person = library.lookup(args.who, args.by_id)
        photo = next((p for p in person.photos if args.photo in (p.id, p.filename)), None)
        if photo is None:
            kept = ", ".join(f"{p.filename} ({p.id})" for p in person.photos) or "none"
            raise UnknownPhoto(f"{person.name} (id {person.id}) has no photo {args.photo!r}; their photos: {kept}")
        after = library.remove_photo(person.id, photo.id)
    print(f"removed photo {photo.filename} from {after.name} (id {after.id}, {after.embeddings} embedding(s) left)")
    return 0


def cmd_reembed(args) -> int:
    from app.cli.tools import _analyzer
    from app.gallery.reembed import reembed
    from app.stages.identify import embedder_of

    settings = load_settings(args)
    target = embedder_of(settings)
    with _gallery(settings, check_embedder=False) as gallery:
        print(reembed(_analyzer(settings), gallery, target, drop_missing=args.drop_missing))
    return 0


def cmd_spool(args) -> int:
    from app.gallery import spool_dir
    from app.gallery.spool import Spool

    settings = load_settings(args)
    spool = Spool(spool_dir(settings.qdrant_path, settings.qdrant_collection))
    entries = spool.entries()
    if args.spool_action == "list":
        if not entries:
            print(f"the spool is empty ({spool.folder})")
        for e in entries:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.path.stat().st_mtime))
            print(f"{e.path.stem}  {e.name}: {len(e.prepared.keys)} embedding(s), kept {when}")
        return 0
    if args.spool_action == "drop":
        chosen = [e for e in entries if not args.entries or e.path.stem in args.entries]
        unknown = set(args.entries) - {e.path.stem for e in entries}
        if unknown:
            raise FacestreamError(f"no spool entry {', '.join(sorted(unknown))}: see `facestream people spool list`")
        for e in chosen:
            e.path.unlink(missing_ok=True)
        print(f"dropped {len(chosen)} spooled enrolment(s) "
              f"({sum(len(e.prepared.keys) for e in chosen)} embedding(s)) from {spool.folder}")
        return 0
    if not settings.qdrant_url:
        raise FacestreamError("people spool flush needs the Qdrant server: set QDRANT_URL")
    if not entries:
        print(f"the spool is empty ({spool.folder})")
        return 0
    from app.gallery import GalleryUnavailable

    with _gallery(settings, connect=False) as gallery:
        try:
            gallery.connect()  # writes what waits in the spool
        except GalleryUnavailable as exc:
            raise GalleryUnavailable(f"{exc}; the {len(entries)} spooled enrolment(s) stay in {spool.folder}: flush "
                                     "again when the server answers") from None
        where = gallery.where
    print(f"wrote {len(entries) - len(spool.entries())} spooled enrolment(s) to {where}")
    return 0
