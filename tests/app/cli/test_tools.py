"""`embed` and `compare` on the real photos, through the CLI."""

import numpy as np
import pytest

from app.cli import main


@pytest.fixture
def env(tmp_path, checkpoint_dir):
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\n")
    return str(env)


def test_embed_prints_faces_and_writes_one_row_per_face(env, media_dir, tmp_path, capsys):
    out = tmp_path / "faces.npy"
    images = [str(media_dir / "scenes/two_people.jpg"), str(media_dir / "people/obama/obama.jpg")]
    assert main(["--env", env, "embed", *images, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "two_people.jpg: 2 face(s)" in text and "obama.jpg: 1 face(s)" in text
    emb = np.load(out)
    assert emb.shape == (3, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # faces print left to right: in two_people.jpg Obama stands on the left, Biden on the right
    assert emb[0] @ emb[2] > 0.4 and emb[1] @ emb[2] < 0.2


def test_compare_onnxruntime_vs_pytorch_is_within_the_drift_bound(env, media_dir, capsys):
    pytest.importorskip("torch")
    photos = sorted(str(p) for p in (media_dir / "people").glob("*/*"))
    assert main(["--env", env, "compare", "--a", "onnxruntime", "--b", "pytorch:cpu", *photos]) == 0
    line = capsys.readouterr().out.strip()
    cos_min = float(line.split(" min ")[1].split()[0])
    assert "on 11 face(s)" in line and cos_min >= 0.999


def test_compare_fails_above_the_drift_bound(env, media_dir, capsys):
    photo = str(media_dir / "people/biden/biden.jpg")
    # a negative bound cannot be met even by a backend against itself: the exit code says drift
    code = main(["--env", env, "compare", "--a", "onnxruntime", "--b", "onnxruntime", "--max-drift", "-1", photo])
    assert code == 1 and "exceeds --max-drift" in capsys.readouterr().err


def test_unknown_backend_is_one_clear_line(env, media_dir, capsys):
    photo = str(media_dir / "people/biden/biden.jpg")
    code = main(["--env", env, "compare", "--a", "onnxruntime", "--b", "tflite", photo])
    assert code == 2
    assert "unknown backend 'tflite': choose one of onnxruntime, pytorch, tensorrt" in capsys.readouterr().err


def test_models_list_shows_each_models_licence(env, capsys):
    from engines.fetch import DERIVED, manifest
    from engines.model_zoo import MODELS

    assert main(["--env", env, "models", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    # every file a model of the zoo reads is listed, shipped or not
    assert {m.onnx for m in MODELS.values()} | set(manifest()) <= rows.keys()
    for name, entry in manifest().items():
        assert f"licence: {entry['license']}" in rows[name] and " present " in rows[name]
    for name, source in DERIVED.items():
        assert f"licence: {manifest()[source]['license']}" in rows[name]
    for model in ("w600k_mbf", "scrfd_500m", "w600k_r50", "glintr100"):
        assert "non-commercial research only" in rows[MODELS[model].onnx]
    assert "MIT" in rows["retinaface_mnet025.pth"]
