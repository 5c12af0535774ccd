"""Enrolment and people management through the real CLI, the real models and the embedded Qdrant engine."""

import shutil

import numpy as np
import pytest

from app.cli import main


@pytest.fixture
def env(tmp_path, checkpoint_dir):
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\n")
    return str(env)


def run(env, *args):
    return main(["--env", env, *args])


def test_enrol_folder_list_rename_remove(env, media_dir, capsys):
    assert run(env, "enrol", "--folder", str(media_dir / "people")) == 0
    out = capsys.readouterr().out
    assert "obama: 2 embedding(s) written" in out and "lin_manuel_miranda: 1 embedding(s) written" in out
    assert run(env, "people") == 0
    listing = capsys.readouterr().out
    people = [line.split()[0] for line in listing.splitlines()]
    assert sorted(people) == sorted(p.name for p in (media_dir / "people").iterdir())

    # enrolling the same photos again adds nothing; a new photo adds one embedding
    assert run(env, "enrol", "obama", str(media_dir / "people/obama/obama.jpg")) == 0
    assert "obama: 0 embedding(s) written" in capsys.readouterr().out

    assert run(env, "people", "rename", "obama", "Barack Obama") == 0
    assert "renamed obama to Barack Obama (2 embedding(s))" in capsys.readouterr().out
    assert run(env, "people", "remove", "Barack Obama") == 0
    capsys.readouterr()
    assert run(env, "people") == 0
    assert "Barack Obama" not in capsys.readouterr().out


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
    assert f"skipped {blank}: no face found" in out
    assert f"skipped {broken}: " in out and "cannot be read" in out
    assert f"skipped {group}: 2 faces (use --largest" in out
    assert run(env, "enrol", "someone", str(group), "--largest") == 0
    assert "someone: 1 embedding(s) written" in capsys.readouterr().out


def test_unknown_person_is_a_clear_error(env, capsys):
    assert run(env, "people", "remove", "nobody") == 2
    assert "no one called nobody" in capsys.readouterr().err
