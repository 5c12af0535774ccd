import shutil

import pytest

from engines.errors import ModelFileError
from engines.fetch import ensure_models, fetch, manifest, require, sha256_file


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
