"""FP16 ONNX conversion: float32 at the boundary, float16 weights, and FP32-equivalent results."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from engines.errors import EngineError
from engines.tensorrt.fp16 import convert_fp16, is_fp16_model

pytest.importorskip("onnxconverter_common")


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _io_types(path: Path) -> tuple[list[str], list[str]]:
    s = _session(path)
    return [i.type for i in s.get_inputs()], [o.type for o in s.get_outputs()]


@pytest.fixture(scope="module")
def aligned_faces(checkpoint_dir: Path, media_dir: Path) -> np.ndarray:
    """Real faces from ../shared/media/people, found and aligned by the repo's own RetinaFace (FP32 ONNX)."""
    import cv2

    from engines.align import norm_crop
    from engines.model_zoo import load_detector

    detector = load_detector("retinaface_mnet025", backend="onnxruntime", checkpoint_dir=checkpoint_dir)
    crops = []
    for photo in sorted((media_dir / "people").glob("*/*")):
        image = cv2.imread(str(photo))
        if image is None:
            continue
        faces = detector.detect(image).largest()
        if len(faces):
            crops.append(norm_crop(image, faces.landmarks[0]))
    assert len(crops) >= 8
    rgb = np.stack(crops)[..., ::-1].astype(np.float32)
    return ((rgb - 127.5) / 127.5).transpose(0, 3, 1, 2).copy()  # ArcFace input: RGB, (x - 127.5) / 127.5


def test_embedder_fp16_matches_fp32_on_real_faces(checkpoint_dir: Path, tmp_path: Path, aligned_faces):
    import onnx

    src = checkpoint_dir / "w600k_mbf.onnx"
    dst = tmp_path / "w600k_mbf.fp16.onnx"
    model = convert_fp16(src, dst)
    assert is_fp16_model(model) and not is_fp16_model(onnx.load(str(src)))
    assert _io_types(dst) == (["tensor(float)"], ["tensor(float)"])  # float32 at the boundary
    assert dst.stat().st_size < 0.6 * src.stat().st_size

    e32 = _session(src).run(None, {"input.1": aligned_faces})[0]
    e16 = _session(dst).run(None, {"input.1": aligned_faces})[0]
    assert e16.dtype == np.float32 and e16.shape == e32.shape == (len(aligned_faces), 512)
    e32 /= np.linalg.norm(e32, axis=1, keepdims=True)
    e16 /= np.linalg.norm(e16, axis=1, keepdims=True)
    cosine = np.sum(e32 * e16, axis=1)
    print(f"FP16 vs FP32 cosine over {len(cosine)} faces: min {cosine.min():.7f}, mean {cosine.mean():.7f}")
    assert cosine.min() >= 0.999
    # and the FP16 model still tells people apart: its similarity matrix follows FP32's
    assert np.abs(e16 @ e16.T - e32 @ e32.T).max() < 0.01


def test_detector_fp16_keeps_the_faces(checkpoint_dir: Path, media_dir: Path, tmp_path: Path):
    import cv2

    src = checkpoint_dir / "retinaface_mnet025.onnx"
    dst = tmp_path / "retinaface.fp16.onnx"
    convert_fp16(src, dst)
    assert _io_types(dst) == (["tensor(float)"], ["tensor(float)"] * 3)
    image = cv2.resize(cv2.imread(str(media_dir / "scenes" / "six_people.jpg")), (640, 640)).astype(np.float32)
    batch = (image - np.array([104.0, 117.0, 123.0], np.float32)).transpose(2, 0, 1)[None].copy()
    loc32, conf32, landms32 = _session(src).run(None, {"input": batch})
    loc16, conf16, landms16 = _session(dst).run(None, {"input": batch})
    faces32 = set(np.flatnonzero(conf32[0, :, 1] > 0.5))
    faces16 = set(np.flatnonzero(conf16[0, :, 1] > 0.5))
    assert len(faces32) >= 6
    assert len(faces32 ^ faces16) <= max(1, len(faces32) // 10)  # the same anchors fire
    assert np.abs(conf32 - conf16).max() < 0.02
    keep = sorted(faces32 & faces16)
    assert np.abs(loc32[0, keep] - loc16[0, keep]).max() < 0.05
    assert np.abs(landms32[0, keep] - landms16[0, keep]).max() < 0.1


def test_converting_twice_is_a_copy_and_writes_atomically(checkpoint_dir: Path, tmp_path: Path):
    once = tmp_path / "once.onnx"
    convert_fp16(checkpoint_dir / "retinaface_mnet025.onnx", once)
    twice = tmp_path / "twice.onnx"
    convert_fp16(once, twice)
    assert twice.read_bytes() == once.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["once.onnx", "twice.onnx"]  # no temp files left


def test_missing_converter_says_what_to_do(checkpoint_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    with pytest.raises(EngineError, match="pip install onnxconverter-common"):
        convert_fp16(checkpoint_dir / "retinaface_mnet025.onnx", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
