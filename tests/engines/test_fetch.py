import shutil

import pytest

from engines.errors import ModelFileError
from engines.fetch import ensure_models, fetch, fetch_file, manifest, require, sha256_file


def test_manifest_names_url_size_sha(models_mirror):
    for name, entry in manifest().items():
        assert entry["url"].startswith("https://")
        assert len(entry["sha256"]) == 64
        # the shared mirror holds the same bytes the manifest promises
        assert sha256_file(models_mirror / name) == entry["sha256"]


def test_fetch_from_mirror_verifies_and_is_idempotent(tmp_path, models_mirror):
    path = fetch("w600k_mbf.onnx", tmp_path, mirror=models_mirror, quiet=True)
    assert path.stat().st_size == manifest()["w600k_mbf.onnx"]["size"]
    mtime = path.stat().st_mtime_ns
    fetch("w600k_mbf.onnx", tmp_path, mirror=models_mirror, quiet=True)
    assert path.stat().st_mtime_ns == mtime  # a good copy is kept, not copied again
    assert not list(tmp_path.glob("*.part"))


def test_corrupt_mirror_file_is_rejected_and_leaves_nothing(tmp_path, models_mirror):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = (models_mirror / "scrfd_500m_bnkps.onnx").read_bytes()
    (mirror / "scrfd_500m_bnkps.onnx").write_bytes(data[:-10] + b"0123456789")
    out = tmp_path / "ckpt"
    with pytest.raises(ModelFileError, match="scrfd_500m_bnkps.onnx .* fails its sha256 check"):
        fetch("scrfd_500m_bnkps.onnx", out, mirror=mirror, quiet=True)
    assert list(out.iterdir()) == []  # no half-written or wrong file left behind


def test_missing_and_corrupt_checkpoints_name_the_file_and_the_fix(tmp_path, models_mirror):
    with pytest.raises(ModelFileError, match="w600k_mbf.onnx is missing .*facestream models fetch"):
        require(tmp_path, "w600k_mbf.onnx")
    shutil.copyfile(models_mirror / "w600k_mbf.onnx", tmp_path / "w600k_mbf.onnx")
    with open(tmp_path / "w600k_mbf.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 16)
    with pytest.raises(ModelFileError, match="is corrupt .*delete it"):
        require(tmp_path, "w600k_mbf.onnx")
    with pytest.raises(ModelFileError, match="facestream models export"):
        require(tmp_path, "retinaface_mnet025.onnx")


def test_corrupt_local_copy_is_replaced_from_mirror(tmp_path, models_mirror):
    (tmp_path / "retinaface_mnet025.pth").write_bytes(b"not a model")
    ensure_models(tmp_path, mirror=models_mirror, export=False, quiet=True, names=["retinaface_mnet025.pth"])
    assert sha256_file(tmp_path / "retinaface_mnet025.pth") == manifest()["retinaface_mnet025.pth"]["sha256"]


def test_every_model_names_its_licence():
    for name, entry in manifest().items():
        assert entry["license"].strip(), f"{name} has no licence"
        if "insightface" in entry["what"]:
            assert "non-commercial" in entry["license"]


@pytest.fixture
def http_dir(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (a download without the internet)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _entry(data: bytes, url: str) -> dict:
    import hashlib

    return {"url": url, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.timeout(30)
def test_fetch_file_downloads_over_http_with_a_progress_bar(http_dir, tmp_path, capsys):
    root, base = http_dir
    data = bytes(range(256)) * 1000
    (root / "clip.mp4").write_bytes(data)
    dest = tmp_path / "out" / "video" / "clip.mp4"
    assert fetch_file(dest, _entry(data, f"{base}/clip.mp4"), label="video/clip.mp4", quiet=False) is True
    assert dest.read_bytes() == data
    assert "clip.mp4" in capsys.readouterr().err  # tqdm's bar names the file
    # a good copy is kept: no second download
    assert fetch_file(dest, _entry(data, f"{base}/gone.mp4"), label="video/clip.mp4", quiet=True) is False


@pytest.mark.timeout(30)
def test_cut_download_is_refused_and_leaves_nothing(http_dir, tmp_path):
    root, base = http_dir
    data = b"x" * 50_000
    (root / "photo.jpg").write_bytes(data[:30_000])  # the server hands out a cut file
    out = tmp_path / "out"
    with pytest.raises(ModelFileError, match=r"sample file people/a/photo.jpg from http://.* fails its sha256 check"):
        fetch_file(out / "people/a/photo.jpg", _entry(data, f"{base}/photo.jpg"), label="people/a/photo.jpg",
                   kind="sample file", quiet=True)
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_unreachable_url_is_one_line_naming_the_mirror_setting(tmp_path):
    missing = (tmp_path / "nowhere.bin").as_uri()
    with pytest.raises(ModelFileError, match="could not fetch model file x.bin .*set FACESTREAM_MODEL_MIRROR") as exc:
        fetch_file(tmp_path / "ckpt" / "x.bin", _entry(b"abc", missing), label="x.bin", quiet=True)
    assert "\n" not in str(exc.value)
    assert list((tmp_path / "ckpt").iterdir()) == []
