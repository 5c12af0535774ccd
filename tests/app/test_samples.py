"""The sample people and clip: fetched from a mirror or their URLs into a samples folder, sha256-checked."""

from __future__ import annotations

import re
import shutil

import pytest

from app import samples
from app.cli import main
from engines.fetch import sha256_file


@pytest.fixture(autouse=True)
def no_mirror_env(monkeypatch):
    monkeypatch.delenv(samples.MIRROR_ENV, raising=False)


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_manifest_covers_the_quickstart_people_and_clip(media_dir):
    entries = samples.manifest()
    people = {str(p.relative_to(media_dir)) for p in (media_dir / samples.PEOPLE).rglob("*") if p.is_file()}
    assert people <= entries.keys() and samples.CLIP in entries
    for rel, entry in entries.items():
        # pinned to one upstream commit, so the bytes behind the URL cannot change under the sha256
        assert re.match(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/", entry["url"])
        assert entry["license"].strip()
        assert sha256_file(media_dir / rel) == entry["sha256"]  # the workspace's copy is the manifest's bytes


def test_fetch_from_mirror_writes_every_file_checked_and_keeps_good_copies(tmp_path, media_dir, capsys):
    dest = tmp_path / "samples"
    samples.ensure_samples(dest, mirror=media_dir)
    assert _files(dest) == sorted(samples.manifest())
    for rel, entry in samples.manifest().items():
        assert sha256_file(dest / rel) == entry["sha256"]
    assert f"{len(samples.manifest())} copied from" in capsys.readouterr().err
    before = {rel: (dest / rel).stat().st_mtime_ns for rel in samples.manifest()}
    samples.ensure_samples(dest, mirror=media_dir)
    assert {rel: (dest / rel).stat().st_mtime_ns for rel in samples.manifest()} == before
    assert "(0 copied from" in capsys.readouterr().err


def test_corrupt_mirror_file_is_refused_in_one_line_and_leaves_no_partial_file(tmp_path, media_dir):
    mirror = tmp_path / "mirror"
    shutil.copytree(media_dir, mirror)
    clip = mirror / samples.CLIP
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    clip.write_bytes(bytes(data))
    dest = tmp_path / "samples"
    with pytest.raises(samples.SampleFileError) as exc:
        samples.ensure_samples(dest, mirror=mirror, quiet=True)
    message = str(exc.value)
    assert "\n" not in message and f"sample file {samples.CLIP} from {clip} fails its sha256 check" in message
    assert not (dest / samples.CLIP).exists()
    assert not [p for p in dest.rglob("*") if p.name.endswith(".part")]


def test_download_from_the_urls_when_no_mirror(tmp_path, media_dir, monkeypatch):
    # the official URLs, simulated by file:// URLs of the same bytes (no internet in tests)
    local = {rel: {**e, "url": (media_dir / rel).as_uri()} for rel, e in samples.manifest().items()}
    monkeypatch.setattr(samples, "manifest", lambda: local)
    dest = tmp_path / "samples"
    samples.ensure_samples(dest, quiet=True)
    assert all(sha256_file(dest / rel) == e["sha256"] for rel, e in local.items())


def test_mirror_setting_is_used_and_a_wrong_one_named(tmp_path, media_dir, monkeypatch):
    monkeypatch.setenv(samples.MIRROR_ENV, str(media_dir))
    samples.ensure_samples(tmp_path / "a", quiet=True)
    assert _files(tmp_path / "a") == sorted(samples.manifest())
    monkeypatch.setenv(samples.MIRROR_ENV, str(tmp_path / "no-such-folder"))
    with pytest.raises(samples.SampleFileError, match=f"not a folder: fix {samples.MIRROR_ENV}"):
        samples.ensure_samples(tmp_path / "b", quiet=True)
    assert not (tmp_path / "b").exists()


def test_cli_fetch_then_list(tmp_path, media_dir, capsys):
    dest = tmp_path / "samples"
    assert main(["samples", "list", "--dest", str(dest)]) == 0
    assert capsys.readouterr().out.count(" missing ") == len(samples.manifest())
    assert main(["samples", "fetch", "--dest", str(dest), "--mirror", str(media_dir)]) == 0
    err = capsys.readouterr().err
    assert f"enrol --folder {dest / 'people'}" in err
    (dest / "people/obama/obama.jpg").write_bytes(b"not a photo")
    assert main(["samples", "list", "--dest", str(dest)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if " corrupt " in line] == ["people/obama/obama.jpg"]
    assert sum(" present " in line for line in lines) == len(samples.manifest()) - 1


def test_a_corrupt_local_copy_is_fetched_again(tmp_path, media_dir):
    dest = samples.ensure_samples(tmp_path / "samples", mirror=media_dir, quiet=True)
    photo = dest / "people/obama/obama.jpg"
    photo.write_bytes(b"not a photo")
    samples.ensure_samples(dest, mirror=media_dir, quiet=True)
    assert sha256_file(photo) == samples.manifest()["people/obama/obama.jpg"]["sha256"]
