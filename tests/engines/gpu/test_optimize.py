"""BatchNorm folding, module preparation, graph capture and MAC counting (engines/gpu/optimize.py).

Folding is checked on CPU with the real RetinaFace and MobileFaceNet weights; graph and FP16 checks
need CUDA and skip cleanly without it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from engines.gpu.optimize import FastModule, GraphedCallable, count_macs, fold_batchnorm  # noqa: E402
from tests import needs  # noqa: E402

cuda = needs.cuda


def _outputs(module, x):
    with torch.inference_mode():
        out = module(x)
    return out if isinstance(out, tuple) else (out,)


def _randomise_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, so folding has something to get wrong."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return module.eval()


@pytest.fixture(scope="module")
def retinaface(models_mirror):
    from engines.detectors.retinaface_net import load_retinaface

    return load_retinaface(models_mirror / "retinaface_mnet025.pth")


@pytest.fixture(scope="module")
def mobilefacenet(models_mirror):
    from engines.recognizers.mobilefacenet import mobilefacenet_from_onnx

    return mobilefacenet_from_onnx(models_mirror / "w600k_mbf.onnx")


@pytest.mark.timeout(120)
def test_folding_retinaface_real_weights_is_exact(retinaface):
    folded, n = fold_batchnorm(retinaface)
    assert n == sum(isinstance(m, nn.BatchNorm2d) for m in retinaface.modules())  # every BN follows a conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in retinaface.modules()), "the original must be left alone"
    x = torch.rand(2, 3, 320, 256) * 255 - 117  # BGR minus mean, an odd-sized frame
    for a, b in zip(_outputs(retinaface, x), _outputs(folded, x)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.timeout(120)
def test_folding_mobilefacenet_real_weights_is_exact(mobilefacenet):
    folded, n = fold_batchnorm(mobilefacenet)
    assert n == 1  # its convs come pre-folded from ONNX; the Linear → BatchNorm1d head is what is left
    assert isinstance(folded.features, nn.Identity)
    x = torch.rand(4, 3, 112, 112) * 2 - 1
    (a,), (b,) = _outputs(mobilefacenet, x), _outputs(folded, x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.timeout(120)
def test_norm_before_a_conv_is_not_folded():
    """iresnet blocks run BN → conv (with zero padding): that BN cannot go into the conv exactly and must stay."""
    from engines.recognizers.iresnet import iresnet

    model = _randomise_norms(iresnet(18))
    folded, n = fold_batchnorm(model)
    blocks = [m for m in model.modules() if type(m).__name__ == "IBasicBlock"]
    downsamples = sum(b.downsample is not None for b in blocks)
    # stem conv→bn1, two conv→bn per block, each downsample conv→bn, fc→features; block.bn1 and the final bn2 stay
    assert n == 1 + 2 * len(blocks) + downsamples + 1
    assert all(isinstance(b.bn1, nn.BatchNorm2d) for b in folded.modules() if type(b).__name__ == "IBasicBlock")
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    (a,), (b,) = _outputs(model, x), _outputs(folded, x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


class _Untraceable(nn.Module):
    """Data-dependent control flow defeats torch.fx; a shared conv must never be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.shared = nn.Conv2d(8, 8, 1)
        self.norm = nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.seq(x)
        if y.mean() > -1e9:  # always true, but fx cannot know
            y = self.norm(self.shared(y)) + self.shared(y)
        return y


def test_untraceable_module_falls_back_to_sequential_pairs():
    model = _randomise_norms(_Untraceable())
    folded, n = fold_batchnorm(model)
    assert n == 1
    assert isinstance(folded.seq[1], nn.Identity) and isinstance(folded.norm, nn.BatchNorm2d)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(_outputs(folded, x)[0], _outputs(model, x)[0], rtol=1e-5, atol=1e-5)


class _SharedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv(x * 2)


def test_traced_shared_conv_is_not_folded():
    model = _randomise_norms(_SharedConv())
    folded, n = fold_batchnorm(model)
    assert n == 0
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(_outputs(folded, x)[0], _outputs(model, x)[0])


def test_count_macs_by_hand():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
        nn.Flatten(), nn.Linear(8 * 5 * 5, 10),
    )
    x = torch.zeros(2, 3, 10, 10)
    expected = 2 * (8 * 10 * 10 * 3 * 9 + 8 * 5 * 5 * 1 * 9 + 10 * 200)
    assert count_macs(model, x) == expected
    assert not model[0]._forward_hooks  # hooks are removed afterwards


def test_graphed_callable_disabled_is_plain_call():
    g = GraphedCallable(lambda a, b: a * 2 + b, enabled=False)
    out = g(torch.ones(3), torch.arange(3.0))
    assert out.tolist() == [2.0, 3.0, 4.0]
    assert len(g) == 0


def test_fast_module_on_cpu_runs_without_graphs(mobilefacenet):
    fast = FastModule(mobilefacenet, device="cpu", dtype=torch.float32, channels_last=False)
    x = torch.rand(3, 3, 112, 112) * 2 - 1
    torch.testing.assert_close(fast(x), _outputs(mobilefacenet, x)[0], rtol=1e-4, atol=1e-4)


@cuda
@pytest.mark.timeout(300)
def test_fp16_graph_matches_fp32_cpu(mobilefacenet):
    fast = FastModule(mobilefacenet, device="cuda")
    for n in (1, 8, 8, 3):  # a repeated size replays the same graph; every size gets its own
        x = torch.rand(n, 3, 112, 112) * 2 - 1
        ref = _outputs(mobilefacenet, x)[0]
        got = fast(x.cuda()).float().cpu()
        cos = nn.functional.cosine_similarity(got, ref, dim=1)
        assert cos.min() > 0.999, cos
    assert len(fast.graphs) == 3


@cuda
@pytest.mark.timeout(300)
def test_graphs_of_different_shapes_replay_independently():
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)).eval().cuda()
    g = GraphedCallable(lambda x: conv(x) * 1.0)
    a, b = torch.randn(2, 3, 8, 8, device="cuda"), torch.randn(5, 3, 8, 8, device="cuda")
    out_a = g(a).clone()
    out_b = g(b).clone()
    with torch.inference_mode():
        torch.testing.assert_close(out_a, conv(a))
        torch.testing.assert_close(out_b, conv(b))
        fresh = torch.randn(2, 3, 8, 8, device="cuda")
        torch.testing.assert_close(g(fresh), conv(fresh))
    assert len(g) == 2


def test_densified_grouped_conv_is_exact(mobilefacenet):
    import copy

    from engines.gpu.optimize import densify_grouped_convs

    dense = copy.deepcopy(mobilefacenet)
    grouped = [m for m in dense.modules() if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels]
    depthwise = sum(isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1 for m in dense.modules())
    assert densify_grouped_convs(dense, 4) == len(grouped) >= 1  # the 128-channel, 64-group conv
    assert all(m.groups == 1 or m.groups == m.in_channels for m in dense.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1 for m in dense.modules()) == depthwise
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    torch.testing.assert_close(_outputs(dense, x)[0], _outputs(mobilefacenet, x)[0], rtol=1e-4, atol=1e-4)


def test_float32_island_keeps_a_layer_in_float32():
    from engines.gpu.optimize import prepare_module

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    prepared = prepare_module(model, device="cpu", dtype=torch.bfloat16, channels_last=False, fp32_modules=["2"])
    out = prepared(torch.rand(1, 3, 4, 4, dtype=torch.bfloat16))
    assert out.dtype == torch.float32 and prepared[0].weight.dtype == torch.bfloat16
