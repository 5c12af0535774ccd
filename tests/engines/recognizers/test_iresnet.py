"""iresnet: shapes and sizes with random weights, and weight loading by round trip (export → load → same output).

The released w600k_r50 / glintr100 files are not available here, so nothing claims parity with them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engines.errors import ModelFileError  # noqa: E402
from engines.recognizers.iresnet import (  # noqa: E402
    IResNet,
    iresnet,
    iresnet50,
    iresnet100,
    iresnet_from_onnx,
    load_weights,
)


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and PReLU slopes, so folding or skipping any of them changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return model.eval()


def _forward(model, x):
    with torch.inference_mode():
        return model(x).numpy()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("make, params_m", [(iresnet50, 43.59), (iresnet100, 65.16)])
def test_shapes_and_size(make, params_m):
    model = make()
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - params_m) < 0.05  # arcface_torch's r50 ≈ 43.6M, r100 ≈ 65.2M parameters
    out = _forward(model, torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512) and np.isfinite(out).all()


def _export(model: torch.nn.Module, path) -> None:
    """What arcface_torch's torch2onnx does: the TorchScript exporter, eval mode, BN folded into convs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False, input_names=["data"],
                              opset_version=11, dynamic_axes={"data": {0: "n"}})
        except Exception as exc:  # the legacy exporter may be gone in a later torch
            pytest.skip(f"TorchScript ONNX export unavailable ({exc})")


@pytest.mark.timeout(180)
def test_onnx_round_trip(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    original = _randomise(iresnet(18))
    path = tmp_path / "r18.onnx"
    _export(original, path)
    loaded = iresnet_from_onnx(path, depth=18)
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    want = _forward(original, x)
    got = _forward(loaded, x)
    ort_out = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"data": x.numpy()})
    scale = np.abs(want).max()
    assert np.abs(got - want).max() < 1e-4 * scale
    assert np.abs(got - ort_out[0]).max() < 1e-4 * scale
    with pytest.raises(ModelFileError, match="does not match"):
        iresnet_from_onnx(path, depth=34)


def test_state_dict_with_module_prefix_loads(tmp_path):
    original = _randomise(IResNet((1, 1, 1, 1)), seed=2)
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, path)
    loaded = IResNet((1, 1, 1, 1))
    load_weights(loaded, path)
    x = torch.randn(1, 3, 112, 112)
    np.testing.assert_allclose(_forward(loaded, x), _forward(original, x), atol=1e-6)
    with pytest.raises(ModelFileError, match="does not fit"):
        iresnet(18, weights=path)
