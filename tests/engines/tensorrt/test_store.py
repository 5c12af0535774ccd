"""The S3/MinIO engine store against moto's S3 server on 127.0.0.1: one machine builds, the next downloads."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engines.errors import EngineError
from engines.tensorrt.builder import profile_for
from engines.tensorrt.cache import ensure_engine, meta_path
from engines.tensorrt.store import EngineStore
from tests import needs
from tests.engines.tensorrt.test_cache import tiny_model

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def store(s3_endpoint: str, monkeypatch, request) -> EngineStore:
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    bucket = f"engines-{request.node.name.replace('_', '-')[:40].lower()}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    monkeypatch.setenv("ENGINE_STORE", f"s3://{bucket}/facestream/v1")
    monkeypatch.setenv("ENGINE_STORE_ENDPOINT", s3_endpoint)
    made = EngineStore.from_env()
    assert made is not None and made.bucket == bucket and made.prefix == "facestream/v1"
    return made


def test_store_address_and_env(monkeypatch):
    monkeypatch.delenv("ENGINE_STORE", raising=False)
    assert EngineStore.from_env() is None
    assert EngineStore.from_env({"ENGINE_STORE": "s3://b"}).key("x.engine") == "x.engine"
    for bad in ("http://bucket/x", "s3://", "bucket/prefix"):
        with pytest.raises(EngineError, match="s3://bucket/prefix"):
            EngineStore(bad)


@pytest.mark.timeout(120)
def test_fetch_of_an_unknown_engine_is_false_and_leaves_nothing(store: EngineStore, tmp_path: Path):
    assert store.fetch("nobody-fp16-smANY-trtrtx1.engine", tmp_path) is False
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(EngineError, match="no JSON beside it"):
        (tmp_path / "lonely.engine").write_bytes(b"x")
        store.put(tmp_path / "lonely.engine")


@needs.tensorrt
@pytest.mark.timeout(120)
def test_second_machine_downloads_instead_of_building(store: EngineStore, tmp_path: Path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    profile = profile_for(onnx_path, "embedder", max_batch=4)
    events = []
    first = ensure_engine(onnx_path, "tiny", "fp32", None, profile, tmp_path / "machine1", store=store,
                          progress=events.append)
    assert first.source == "built"
    assert store.names() == [first.path.name]
    assert any(e.stage == "store" and "uploaded" in e.message for e in events)

    second = ensure_engine(onnx_path, "tiny", "fp32", None, profile, tmp_path / "machine2", store=store)
    assert second.source == "store" and second.path.parent == tmp_path / "machine2"
    assert second.path.read_bytes() == first.path.read_bytes()
    assert meta_path(second.path).read_text() == first.meta_path.read_text()
    # and once there, it is simply the cache
    assert ensure_engine(onnx_path, "tiny", "fp32", None, profile, tmp_path / "machine2", store=store).source == "cache"


@needs.tensorrt
@pytest.mark.timeout(120)
def test_a_stored_engine_that_disagrees_is_not_used(store: EngineStore, tmp_path: Path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    profile = profile_for(onnx_path, "embedder", max_batch=4)
    first = ensure_engine(onnx_path, "tiny", "fp32", None, profile, tmp_path / "machine1", store=store)
    # someone overwrote the engine object in the bucket (not its JSON)
    store.client.put_object(Bucket=store.bucket, Key=store.key(first.path.name), Body=b"not an engine")

    events = []
    second = ensure_engine(onnx_path, "tiny", "fp32", None, profile, tmp_path / "machine2", store=store,
                           progress=events.append)
    assert second.source == "built"
    assert any(e.stage == "store" and "not used" in e.message for e in events)
    assert second.path.read_bytes() != b"not an engine"

    # a model whose ONNX changed does not take the stored engine of the old one
    tiny_model(onnx_path, seed=3)
    third = ensure_engine(onnx_path, "tiny", "fp32", None, profile, tmp_path / "machine3", store=store)
    assert third.source == "built" and third.onnx_sha256 != first.onnx_sha256
