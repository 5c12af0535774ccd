"""MobileFaceNet in PyTorch against the w600k_mbf ONNX graph it was built from, and the strict weight loader."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from engines.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from engines.errors import ModelFileError  # noqa: E402
from engines.recognizers.arcface import ArcFace  # noqa: E402
from engines.recognizers.mobilefacenet import MobileFaceNet, load_onnx_weights, mobilefacenet_from_onnx  # noqa: E402
from tests.engines.recognizers import aligned_people  # noqa: E402


@pytest.fixture(scope="module")
def mbf_path(checkpoint_dir):
    return checkpoint_dir / "w600k_mbf.onnx"


@pytest.fixture(scope="module")
def model(mbf_path):
    return mobilefacenet_from_onnx(mbf_path)


def test_every_weight_of_the_graph_is_used(model, mbf_path):
    """Strict load: the module's parameters and buffers add up to exactly the graph's float initialisers."""
    graph = onnx.load(str(mbf_path)).graph
    in_graph = sum(int(np.prod(t.dims)) for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    in_module = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    assert in_module == in_graph


@pytest.mark.timeout(120)
def test_matches_onnxruntime_on_real_faces(model, mbf_path, media_dir, checkpoint_dir):
    crops = aligned_people(media_dir, checkpoint_dir)
    assert len(crops) >= 12
    batch = ArcFace.preprocess(crops)
    ours = _run(model, batch)
    ref = OnnxRuntimeBackend(mbf_path).run(batch)[0]
    assert ours.shape == ref.shape == (len(crops), 512)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999
    assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()


def _run(model, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()


def test_output_is_not_normalised_and_batch_independent(model):
    """Same contract as the ONNX graph: raw features, each row depending only on its own input."""
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 112, 112)).astype(np.float32)
    together = _run(model, x)
    alone = _run(model, x[1:2])
    np.testing.assert_allclose(together[1:2], alone, atol=1e-4)
    assert not np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-3)


def test_wrong_architecture_is_refused(mbf_path):
    with pytest.raises(ModelFileError, match="does not match"):
        load_onnx_weights(MobileFaceNet(blocks=(4, 6, 3)), mbf_path)


def test_unused_initialiser_is_refused(mbf_path, tmp_path):
    """A graph carrying a weight the module has no place for (here an input Sub, as in mxnet exports) fails."""
    proto = onnx.load(str(mbf_path))
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.full((1,), 127.5, np.float32), "mean"))
    path = tmp_path / "extra.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelFileError, match="not used"):
        mobilefacenet_from_onnx(path)


def test_missing_file_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="missing"):
        mobilefacenet_from_onnx(tmp_path / "nope.onnx")
