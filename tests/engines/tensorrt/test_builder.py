"""Real TensorRT(-RTX) builds of the shipped models, profiles, targets, and atomic engine writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engines.errors import EngineError, ModelFileError
from engines.fetch import sha256_file
from engines.tensorrt.api import load_trt
from engines.tensorrt.builder import BuildEvent, build_engine, profile_for, untie_dynamic_dims
from engines.tensorrt.cache import build_engines
from tests import needs
from tests.engines.tensorrt.test_cache import tiny_model


class Cancelled(Exception):
    pass


@needs.tensorrt
@pytest.mark.timeout(300)
def test_builds_shipped_detector_and_embedder_fp32_and_fp16(checkpoint_dir: Path, tmp_path: Path):
    events: list[BuildEvent] = []
    models = [("retinaface_mnet025", checkpoint_dir / "retinaface_mnet025.onnx", "detector"),
              ("w600k_mbf", checkpoint_dir / "w600k_mbf.onnx", "embedder")]
    started = time.perf_counter()
    records = build_engines(models, tmp_path / "engines", precisions=("fp32", "fp16"), max_batch=32, opt_batch=8,
                            det_size=(640, 640), workspace_mb=512, progress=events.append, store=False)
    total = time.perf_counter() - started
    api = load_trt()
    assert [(r.model, r.precision) for r in records] == [
        ("retinaface_mnet025", "fp32"), ("retinaface_mnet025", "fp16"), ("w600k_mbf", "fp32"), ("w600k_mbf", "fp16")]
    for r in records:
        meta = json.loads(r.meta_path.read_text())
        assert r.source == "built" and r.path.is_file()
        assert r.path.name == f"{r.model}-{r.precision}-sm{r.sm}-{api.flavour}{api.version}.engine"
        assert meta["engine_sha256"] == sha256_file(r.path) and meta["engine_bytes"] == r.path.stat().st_size
        assert meta["onnx_sha256"] == sha256_file(dict((m[0], m[1]) for m in models)[r.model])
        print(f"{r.path.name}: {meta['build_seconds']:.2f} s, {r.size_bytes / 1e6:.1f} MB")
    det32, det16, emb32, emb16 = records
    assert det32.profile.to_json() == {"input": {"min": [1, 3, 640, 640], "opt": [1, 3, 640, 640],
                                                 "max": [4, 3, 640, 640]}}
    assert emb32.profile.to_json() == {"input.1": {"min": [1, 3, 112, 112], "opt": [8, 3, 112, 112],
                                                   "max": [32, 3, 112, 112]}}
    assert json.loads(det16.meta_path.read_text())["outputs"] == ["loc", "conf", "landms"]
    # FP16 weights make a smaller engine: the conversion really reached the builder.
    assert det16.size_bytes < 0.85 * det32.size_bytes and emb16.size_bytes < 0.85 * emb32.size_bytes
    # Progress: every engine reports parse → build → write → done, with fractions inside [0, 1].
    for r in records:
        stages = [e.stage for e in events if e.model == r.model]
        assert stages.index("parse") < stages.index("build") < stages.index("write") < stages.index("done")
    assert all(0.0 <= e.fraction <= 1.0 for e in events if e.fraction is not None)
    print(f"4 engines in {total:.1f} s")
    assert total < 240  # bounded for CI (about 4 s on 2 cores when measured)


@needs.tensorrt
def test_detector_profile_follows_det_size(checkpoint_dir: Path):
    profile = profile_for(checkpoint_dir / "retinaface_mnet025.onnx", "detector", max_batch=2, det_size=(640, 480))
    assert profile.shapes == (("input", (1, 3, 480, 640), (1, 3, 480, 640), (2, 3, 480, 640)),)
    emb = profile_for(checkpoint_dir / "w600k_mbf.onnx", "embedder", max_batch=16, opt_batch=64)
    assert emb.shapes == (("input.1", (1, 3, 112, 112), (16, 3, 112, 112), (16, 3, 112, 112)),)  # opt clamped
    with pytest.raises(EngineError, match="dynamic axis 2"):
        profile_for(checkpoint_dir / "retinaface_mnet025.onnx", "embedder", max_batch=2)
    with pytest.raises(EngineError, match="1 <= min"):
        profile_for(checkpoint_dir / "w600k_mbf.onnx", "embedder", max_batch=0)


@needs.tensorrt
@pytest.mark.timeout(120)
def test_scrfd_with_one_name_for_every_dynamic_axis_builds(checkpoint_dir: Path, tmp_path: Path):
    import onnx

    src = checkpoint_dir / "scrfd_500m_bnkps.onnx"
    model = onnx.load(str(src), load_external_data=False)
    assert untie_dynamic_dims(model)  # SCRFD names batch, H and W all "?"
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert len({d for d in dims if d}) == 3
    assert not untie_dynamic_dims(onnx.load(str(checkpoint_dir / "retinaface_mnet025.onnx")))
    profile = profile_for(src, "detector", max_batch=2)
    result = build_engine(src, tmp_path / "scrfd.engine", profile, workspace_mb=256)
    assert result.size_bytes == (tmp_path / "scrfd.engine").stat().st_size > 100_000
    assert len(result.outputs) == 9


@needs.tensorrt
def test_build_for_one_target_and_refuse_an_unknown_one(tmp_path: Path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    profile = profile_for(onnx_path, "embedder", max_batch=2)
    api = load_trt()
    if not api.is_rtx:
        pytest.skip("only TensorRT-RTX builds for a chosen compute capability")
    build_engine(onnx_path, tmp_path / "sm86.engine", profile, sm="86")
    assert (tmp_path / "sm86.engine").stat().st_size > 0
    with pytest.raises(EngineError, match="cannot build for sm90"):
        build_engine(onnx_path, tmp_path / "sm90.engine", profile, sm="90")
    assert not (tmp_path / "sm90.engine").exists()


@needs.tensorrt
def test_a_failed_or_cancelled_build_leaves_no_engine(tmp_path: Path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    profile = profile_for(onnx_path, "embedder", max_batch=4)
    target = tmp_path / "out" / "tiny.engine"
    target.parent.mkdir()
    target.write_bytes(b"previous engine")

    def cancel(event: BuildEvent) -> None:
        if event.stage == "build" and event.fraction is not None and event.fraction > 0:
            raise Cancelled("user pressed Ctrl-C")

    with pytest.raises(Cancelled):
        build_engine(onnx_path, target, profile, progress=cancel)
    assert target.read_bytes() == b"previous engine"
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny.engine"]

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not an onnx model")
    with pytest.raises((ModelFileError, EngineError)):
        build_engine(bad, tmp_path / "out" / "bad.engine", profile)
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny.engine"]

    wrong = profile_for(tiny_model(tmp_path / "other.onnx"), "embedder", max_batch=4)
    renamed = type(wrong)((("not_x",) + wrong.shapes[0][1:],))
    with pytest.raises(EngineError, match="profile names inputs"):
        build_engine(onnx_path, tmp_path / "out" / "x.engine", renamed)
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny.engine"]
