"""Enrolment and people management through the real CLI, the real models and the embedded Qdrant engine."""

import logging
import shutil

import numpy as np
import pytest

from app.cli import main


@pytest.fixture(autouse=True)
def _log_handlers_of_this_test():
    """main() points the log at this test's captured stderr: the next test must not write to that closed stream."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


@pytest.fixture
def env(tmp_path, checkpoint_dir):
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\n")
    return str(env)


@pytest.fixture
def people_dir(tmp_path, media_dir):
    """Three people's folders (five photos), as a user would lay them out; Obama's with a name.txt."""
    root = tmp_path / "people"
    for who in ("obama", "biden", "lin_manuel_miranda"):
        shutil.copytree(media_dir / "people" / who, root / who)
    (root / "obama" / "name.txt").write_text("Barack Obama\n")
    return root


def run(env, *args):
    return main(["--env", env, *args])


def listing(env, capsys) -> dict[str, tuple[str, int]]:
    """{person id: (display name, embeddings)} from `facestream people`."""
    assert run(env, "people") == 0
    out = {}
    for line in capsys.readouterr().out.splitlines():
        name, rest = line.split(" embedding(s)  id ")[0], line.split(" embedding(s)  id ")[1]
        name, count = name.rsplit(None, 1)
        out[rest.strip()] = (name.strip(), int(count))
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rename_then_enrol_again_makes_no_duplicate_and_the_folder_keeps_feeding_the_person(env, people_dir, media_dir,
                                                                                            capsys):
    assert run(env, "enrol", "--folder", str(people_dir)) == 0
    out = capsys.readouterr().out
    assert "enrolled Barack Obama: 2 photo(s)" in out and "enrolled lin_manuel_miranda: 1 photo(s)" in out
    assert listing(env, capsys) == {"obama": ("Barack Obama", 2), "biden": ("biden", 2),
                                    "lin_manuel_miranda": ("lin_manuel_miranda", 1)}

    assert run(env, "people", "rename", "lin_manuel_miranda", "Lin-Manuel Miranda") == 0
    assert capsys.readouterr().out.strip() == ("renamed lin_manuel_miranda to Lin-Manuel Miranda "
                                               "(id lin_manuel_miranda, 1 embedding(s))")
    assert run(env, "enrol", "--folder", str(people_dir)) == 0
    out = capsys.readouterr().out
    assert "Lin-Manuel Miranda: already enrolled (1 photo(s))" in out
    assert "Barack Obama: already enrolled (2 photo(s))" in out
    assert not [line for line in out.splitlines() if line.startswith("enrolled ")]  # nothing new was written
    people = listing(env, capsys)
    assert people["lin_manuel_miranda"] == ("Lin-Manuel Miranda", 1) and len(people) == 3

    # a new photo in the renamed person's folder lands on that person, under their new name
    shutil.copyfile(media_dir / "scenes/obama-480p.jpg", people_dir / "obama" / "obama-480p.jpg")
    (people_dir / "obama" / "name.txt").write_text("Obama\n")  # the folder now says another name: kept, and said
    assert run(env, "enrol", "--folder", str(people_dir)) == 0
    out = capsys.readouterr().out
    assert "enrolled Barack Obama: 1 photo(s), 2 already enrolled" in out
    assert "kept the name 'Barack Obama' (name.txt says 'Obama'" in out
    assert listing(env, capsys)["obama"] == ("Barack Obama", 3)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_remove_and_rename_never_act_on_another_person(env, people_dir, capsys):
    assert run(env, "enrol", "--folder", str(people_dir)) == 0
    assert run(env, "people", "rename", "lin_manuel_miranda", "Lin-Manuel Miranda") == 0
    capsys.readouterr()
    before = listing(env, capsys)

    # an id is not a display name: nothing is removed, the error names the person and the --id way
    assert run(env, "people", "remove", "lin_manuel_miranda") == 2
    out, err = capsys.readouterr()
    assert out == "" and "no one called 'lin_manuel_miranda'" in err
    assert "closest: Lin-Manuel Miranda (id lin_manuel_miranda)" in err and "--id" in err
    assert listing(env, capsys) == before

    assert run(env, "people", "remove", "lin_manuel_miranda", "--id") == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "removed Lin-Manuel Miranda (id lin_manuel_miranda, 1 embedding(s))"
    assert run(env, "people", "remove", "BIDEN") == 0  # a display name, any case
    assert capsys.readouterr().out.splitlines()[0] == "removed biden (id biden, 2 embedding(s))"
    assert listing(env, capsys) == {"obama": ("Barack Obama", 2)}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_photo_of_someone_enrolled_is_skipped_with_who_and_how_alike(env, people_dir, media_dir, capsys):
    assert run(env, "enrol", "--folder", str(people_dir)) == 0
    capsys.readouterr()
    same = people_dir / "obama" / "obama.jpg"
    other = media_dir / "scenes" / "obama-480p.jpg"
    assert run(env, "enrol", "Someone Else", str(same), str(other)) == 1
    out = capsys.readouterr().out
    assert out.startswith("Someone Else: nothing enrolled")
    assert f"skipped {same}: already enrolled as Barack Obama" in out
    line = next(x for x in out.splitlines() if x.startswith(f"  skipped {other}: matches Barack Obama ("))
    assert line.endswith(") — use --force to enrol it anyway")
    assert 0.35 <= float(line.split("(")[1].split(")")[0]) <= 1.0
    assert "Someone Else" not in {n for n, _ in listing(env, capsys).values()}

    # --force enrols the look-alike; the very same photo stays Obama's
    assert run(env, "enrol", "Someone Else", str(same), str(other), "--force") == 0
    out = capsys.readouterr().out
    assert "enrolled Someone Else: 1 photo(s)" in out and f"skipped {same}: already enrolled as Barack Obama" in out
    people = listing(env, capsys)
    assert people["obama"] == ("Barack Obama", 2) and people["someone-else"] == ("Someone Else", 1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_photos_with_no_face_several_faces_or_unreadable_are_reported_and_skipped(env, media_dir, tmp_path, capsys):
    blank = tmp_path / "blank.jpg"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8not really a jpeg")
    group = tmp_path / "group.jpg"
    shutil.copyfile(media_dir / "scenes/two_people.jpg", group)
    code = run(env, "enrol", "someone", str(blank), str(broken), str(group))
    out = capsys.readouterr().out
    assert code == 1  # nothing could be enrolled
    assert out.startswith("someone: nothing enrolled")
    assert f"skipped {blank}: no face found" in out
    assert f"skipped {broken}: " in out and "cannot be read" in out
    assert f"skipped {group}: 2 faces (use --largest" in out
    assert run(env, "enrol", "someone", str(group), "--largest") == 0
    assert "enrolled someone: 1 photo(s)" in capsys.readouterr().out
    assert run(env, "enrol", "SOMEONE", str(group), "--largest") == 0
    assert capsys.readouterr().out.strip() == "someone: already enrolled (1 photo(s))"


@pytest.mark.parametrize("args", [("rename", "nobody", "X"), ("remove", "nobody"), ("rename", "nobody", "X", "--id"),
                                  ("remove", "Ada", "--id")])
def test_unknown_names_fail_with_the_closest_and_print_no_success_line(env, tmp_path, capsys, args):
    from app.gallery import open_gallery
    from tests.app.gallery import unit

    with open_gallery(None, tmp_path / "gallery", "faces") as g:
        rng = np.random.default_rng(0)
        for name in ("Ada Lovelace", "Alan Turing", "Grace Hopper"):
            g.add(name, unit(rng, 1))
    capsys.readouterr()  # what setting up the gallery logged is not the command's output
    assert run(env, "people", *args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "closest: " in err
    assert ("with id" if "--id" in args else "called") in err
    with open_gallery(None, tmp_path / "gallery", "faces") as g:
        assert sorted(p.name for p in g.people()) == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]


def test_an_ambiguous_name_fails_listing_both_people(env, tmp_path, capsys):
    from app.gallery import open_gallery
    from app.gallery.base import name_key
    from app.gallery.records import point_id
    from tests.app.gallery import unit

    rng = np.random.default_rng(1)
    with open_gallery(None, tmp_path / "gallery", "faces") as g:
        g.add("Ada", unit(rng, 1), person_id="ada-1")
        damaged = {"person_id": "ada-2", "name": "ada", "name_key": name_key("ada")}  # as two racing writers leave it
        g._upsert([point_id("emb:x")], unit(rng, 1), [damaged])
    for args in (("remove", "Ada"), ("rename", "ADA", "Ada King")):
        assert run(env, "people", *args) == 2
        out, err = capsys.readouterr()
        assert out == "" and "2 people" in err and "ada-1" in err and "ada-2" in err and "--id" in err
    with open_gallery(None, tmp_path / "gallery", "faces") as g:
        assert g.count() == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_gallery_of_another_model_is_refused_until_reembedded(env, people_dir, tmp_path, media_dir, capsys):
    from app.gallery import Embedder, open_gallery
    from tests.app.gallery import unit

    assert run(env, "enrol", "--folder", str(people_dir)) == 0
    capsys.readouterr()
    gallery = tmp_path / "gallery"
    assert len(list((gallery / "photos").iterdir())) == 5  # every enrolment photo kept, by content
    other = Embedder("glintr100", "0" * 64)
    with open_gallery(None, gallery, "faces") as g:
        g.set_embedder(other)  # as if glintr100 had filled it
        g.add("stranger", unit(np.random.default_rng(2), 1))  # stored from a live face: no photo

    assert run(env, "enrol", "Biden", str(media_dir / "scenes/two_people.jpg"), "--largest") == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "filled by glintr100" in err and "EMBEDDER_MODEL is w600k_mbf" in err and "people reembed" in err
    clip = str(media_dir / "video/short_hamilton_clip.mp4")
    assert run(env, "run", "--source", clip, "--headless", "--out", str(tmp_path / "out.mp4")) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "filled by glintr100" in err and not (tmp_path / "out.mp4").exists()
    assert run(env, "people") == 0  # names can still be managed
    capsys.readouterr()

    assert run(env, "people", "reembed") == 2  # a point with no photo: refused, nothing changed
    err = capsys.readouterr().err
    assert "1 embedding(s) have no photo" in err and "stranger (1)" in err and "--drop-missing" in err
    with open_gallery(None, gallery, "faces") as g:
        assert g.stored_embedder() == other and g.count() == 6

    assert run(env, "people", "reembed", "--drop-missing") == 0
    assert capsys.readouterr().out.strip() == ("re-embedded 5 photo(s) of 3 people with w600k_mbf (was glintr100); "
                                               "left out 1 embedding(s) with no photo")
    assert run(env, "enrol", "--folder", str(people_dir)) == 0
    out = capsys.readouterr().out
    assert "Barack Obama: already enrolled (2 photo(s))" in out
    with open_gallery(None, gallery, "faces") as g:
        assert g.stored_embedder().model == "w600k_mbf" and g.count() == 5



@pytest.mark.slow
@pytest.mark.timeout(300)
def test_enrolments_kept_while_the_server_is_down_can_be_listed_and_dropped(env, closed_url, media_dir, capsys):
    with open(env, "a") as f:
        f.write(f"QDRANT_URL={closed_url}\n")
    obama = media_dir / "people" / "obama"
    assert run(env, "enrol", "Barack Obama", str(obama / "obama.jpg"), str(obama / "obama2.jpg")) == 0
    out = capsys.readouterr().out
    assert "Barack Obama: 2 photo(s) kept in the local spool until the Qdrant server answers" in out
    assert "photos were not checked" in out

    assert run(env, "people", "spool") == 0
    [entry] = capsys.readouterr().out.splitlines()
    entry_id = entry.split()[0]
    assert "Barack Obama: 2 embedding(s), kept " in entry

    assert run(env, "people", "spool", "flush") == 69  # still down: one line, the entry stays
    out, err = capsys.readouterr()
    assert out == "" and "cannot reach Qdrant" in err and len(err.strip().splitlines()) == 1
    assert run(env, "people", "spool", "drop", "nope") == 2
    assert "no spool entry nope" in capsys.readouterr().err
    assert run(env, "people", "spool", "drop", entry_id) == 0
    assert capsys.readouterr().out.startswith("dropped 1 spooled enrolment(s) (2 embedding(s))")
    assert run(env, "people", "spool", "list") == 0
    assert capsys.readouterr().out.startswith("the spool is empty")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_enrol_and_people_work_the_same_while_a_pipeline_owns_the_gallery(env, media_dir, capsys):
    """Another process holds the gallery (as the identify stage does): every command goes over its control
    socket, and the folder stays locked by that owner throughout."""
    from pathlib import Path

    from app.gallery import GalleryBusy, open_gallery
    from tests.app.library.conftest import start_owner, stop

    owner = start_owner(Path(env))
    try:
        obama, biden = media_dir / "people/obama", media_dir / "people/biden"
        assert run(env, "enrol", "Barack Obama", str(obama / "obama.jpg")) == 0
        assert run(env, "enrol", "Joe Biden", str(biden / "biden.jpg")) == 0
        out = capsys.readouterr().out
        assert "enrolled Barack Obama: 1 photo(s)" in out and "enrolled Joe Biden: 1 photo(s)" in out
        assert listing(env, capsys) == {"barack-obama": ("Barack Obama", 1), "joe-biden": ("Joe Biden", 1)}
        # the look-alike check and the already-enrolled check work through the owner too
        assert run(env, "enrol", "Someone", str(obama / "obama.jpg"), str(obama / "obama2.jpg")) == 1
        out = capsys.readouterr().out
        assert "already enrolled as Barack Obama" in out and "matches Barack Obama (" in out

        folder = Path(env).parent / "folder"
        shutil.copytree(media_dir / "people/rose_leslie", folder / "rose_leslie")
        (folder / "rose_leslie" / "name.txt").write_text("Rose Leslie\n")
        assert run(env, "enrol", "--folder", str(folder)) == 0  # a folder's person ids travel too
        assert "enrolled Rose Leslie: 2 photo(s)" in capsys.readouterr().out
        assert run(env, "people", "remove", "rose_leslie", "--id") == 0
        capsys.readouterr()

        assert run(env, "people", "merge", "Joe Biden", "barack obama") == 0
        assert capsys.readouterr().out.strip() == ("merged Joe Biden (id joe-biden, 1 embedding(s)) into "
                                                   "Barack Obama (id barack-obama, now 2 embedding(s))")
        assert run(env, "people", "list", "--photos") == 0
        out = capsys.readouterr().out
        assert "obama.jpg" in out and "biden.jpg" in out
        assert run(env, "people", "remove-photo", "Barack Obama", "nope.jpg") == 2
        assert "has no photo 'nope.jpg'; their photos: " in capsys.readouterr().err
        assert run(env, "people", "remove-photo", "Barack Obama", "biden.jpg") == 0
        assert capsys.readouterr().out.strip() == ("removed photo biden.jpg from Barack Obama (id barack-obama, "
                                                   "1 embedding(s) left)")
        assert run(env, "people", "rename", "Barack Obama", "Obama") == 0
        assert run(env, "people", "remove", "obama") == 0
        capsys.readouterr()
        assert run(env, "people") == 0
        assert capsys.readouterr().out.startswith("no one enrolled yet")
        with pytest.raises(GalleryBusy):
            open_gallery(None, Path(env).parent / "gallery", "faces")
    finally:
        stop(owner)
