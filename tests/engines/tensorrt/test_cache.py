"""The engine cache: names, reuse, and every reason an engine must be rebuilt or refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.errors import EngineError
from engines.tensorrt.builder import profile_for
from engines.tensorrt.cache import engine_name, ensure_engine, load_engine_bytes, meta_path, normalise_sm
from tests import needs


def tiny_model(path: Path, seed: int = 0, channels: int = 4) -> Path:
    """A real, small ONNX model (Conv + Relu, dynamic batch) that TensorRT builds in well under a second."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((channels, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 16, 16])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "tiny.onnx")


def test_engine_name_and_sm_spelling():
    assert engine_name("w600k_mbf", "fp16", "86", "trtrtx", "1.7.1.116") == "w600k_mbf-fp16-sm86-trtrtx1.7.1.116.engine"
    assert meta_path(Path("a/m-fp16-smANY-trt10.1.engine")) == Path("a/m-fp16-smANY-trt10.1.json")
    assert [normalise_sm(s) for s in ("8.6", "sm86", 86, (12, 0), "any", "SM_89", None)] == [
        "86", "86", "86", "120", "ANY", "89", None]
    with pytest.raises(EngineError, match="compute capability"):
        normalise_sm("ampere")


@needs.tensorrt
def test_builds_once_then_reuses(tiny: Path, tmp_path: Path):
    profile = profile_for(tiny, "embedder", max_batch=8)
    events = []
    first = ensure_engine(tiny, "tiny", "fp32", None, profile, tmp_path / "engines", progress=events.append)
    assert first.source == "built" and first.reason == "missing"
    assert first.sm == "ANY" if first.flavour == "trtrtx" else first.sm.isdigit()
    assert first.path.name == engine_name("tiny", "fp32", first.sm, first.flavour, first.version)
    meta = json.loads(first.meta_path.read_text())
    assert meta["profile"] == {"x": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [8, 3, 16, 16]}}
    assert meta["builder_version"] == first.version and meta["build_seconds"] > 0 and meta["outputs"] == ["y"]
    assert {e.stage for e in events} >= {"parse", "build", "write", "done"}
    mtime = first.path.stat().st_mtime_ns

    again = ensure_engine(tiny, "tiny", "fp32", None, profile, tmp_path / "engines")
    assert again.source == "cache" and again.path == first.path
    assert first.path.stat().st_mtime_ns == mtime
    data, loaded_meta = load_engine_bytes(first.path, {"onnx_sha256": first.onnx_sha256, "sm": first.sm})
    assert len(data) == meta["engine_bytes"] and loaded_meta["engine_sha256"] == meta["engine_sha256"]
    leftovers = [p.name for p in (tmp_path / "engines").iterdir() if p.suffix not in (".engine", ".json", ".lock")]
    assert leftovers == []


@needs.tensorrt
def test_rebuilds_when_onnx_bytes_change(tiny: Path, tmp_path: Path):
    profile = profile_for(tiny, "embedder", max_batch=4)
    first = ensure_engine(tiny, "tiny", "fp32", None, profile, tmp_path)
    tiny_model(tiny, seed=1)  # same shapes, other weights
    second = ensure_engine(tiny, "tiny", "fp32", None, profile, tmp_path)
    assert second.source == "built" and "ONNX changed" in second.reason
    assert second.path == first.path and second.onnx_sha256 != first.onnx_sha256
    with pytest.raises(EngineError, match="ONNX changed"):
        load_engine_bytes(second.path, {"onnx_sha256": first.onnx_sha256})


@needs.tensorrt
def test_version_and_sm_are_part_of_the_name_and_checked(tiny: Path, tmp_path: Path):
    profile = profile_for(tiny, "embedder", max_batch=4)
    a = ensure_engine(tiny, "tiny", "fp32", "86", profile, tmp_path, version="1.0.0")
    b = ensure_engine(tiny, "tiny", "fp32", "86", profile, tmp_path, version="2.0.0")
    c = ensure_engine(tiny, "tiny", "fp32", "89", profile, tmp_path, version="2.0.0")
    assert [r.source for r in (a, b, c)] == ["built", "built", "built"]
    assert len({a.path, b.path, c.path}) == 3
    assert "-sm86-" in a.path.name and a.path.name.endswith("1.0.0.engine") and "-sm89-" in c.path.name
    assert json.loads(c.meta_path.read_text())["sm"] == "89"

    # A JSON that disagrees with its own file name (copied by hand, say) is not trusted.
    meta = json.loads(b.meta_path.read_text())
    b.meta_path.write_text(json.dumps({**meta, "builder_version": "1.0.0", "sm": "89"}))
    with pytest.raises(EngineError) as refused:
        load_engine_bytes(b.path, {"builder_version": "2.0.0", "sm": "86"})
    assert "TensorRT version changed" in str(refused.value) and "GPU architecture changed" in str(refused.value)
    rebuilt = ensure_engine(tiny, "tiny", "fp32", "86", profile, tmp_path, version="2.0.0")
    assert rebuilt.source == "built" and "TensorRT version changed" in rebuilt.reason
    assert "GPU architecture changed" in rebuilt.reason


@needs.tensorrt
def test_profile_change_rebuilds_in_place(tiny: Path, tmp_path: Path):
    small = profile_for(tiny, "embedder", max_batch=4)
    large = profile_for(tiny, "embedder", max_batch=16)
    first = ensure_engine(tiny, "tiny", "fp32", None, small, tmp_path)
    second = ensure_engine(tiny, "tiny", "fp32", None, large, tmp_path)
    assert second.path == first.path and second.source == "built" and "shape profile changed" in second.reason
    assert second.profile.max_batch == 16


@needs.tensorrt
def test_engine_without_or_with_wrong_json_is_never_loaded(tiny: Path, tmp_path: Path):
    profile = profile_for(tiny, "embedder", max_batch=4)
    record = ensure_engine(tiny, "tiny", "fp32", None, profile, tmp_path)

    record.meta_path.unlink()
    with pytest.raises(EngineError, match="JSON is missing"):
        load_engine_bytes(record.path)
    rebuilt = ensure_engine(tiny, "tiny", "fp32", None, profile, tmp_path)
    assert rebuilt.source == "built" and "JSON is missing" in rebuilt.reason

    with open(rebuilt.path, "ab") as f:  # an engine changed after its JSON was written
        f.write(b"\0")
    with pytest.raises(EngineError, match="size differs"):
        load_engine_bytes(rebuilt.path)
    data = bytearray(rebuilt.path.read_bytes()[:-1])
    data[100] ^= 0xFF  # same size, other bytes
    rebuilt.path.write_bytes(bytes(data))
    with pytest.raises(EngineError, match="sha256 differs"):
        load_engine_bytes(rebuilt.path)
    assert ensure_engine(tiny, "tiny", "fp32", None, profile, tmp_path).source == "built"

    record.meta_path.write_text("{not json")
    with pytest.raises(EngineError, match="unreadable"):
        load_engine_bytes(record.path)


def test_missing_onnx_and_bad_precision_are_clear(tmp_path: Path):
    from engines.errors import ModelFileError

    profile = None
    with pytest.raises(EngineError, match="precision 'int8'"):
        ensure_engine(tmp_path / "x.onnx", "x", "int8", None, profile, tmp_path)
    with pytest.raises(ModelFileError, match="missing"):
        ensure_engine(tmp_path / "x.onnx", "x", "fp16", None, profile, tmp_path)
