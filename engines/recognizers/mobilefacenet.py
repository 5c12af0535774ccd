"""ArcFace MobileFaceNet (insightface ``w600k_mbf``) as a PyTorch module, with weights read from its ONNX file.

The architecture is the one in the ONNX graph, not a paper's: the released graph has its BatchNorms
folded into the convolutions (so every conv here has a bias and no BN follows it), and its head is a
1×1 conv to 64 channels, a flatten and a fully connected layer plus BatchNorm1d — not the GDC head of
the paper. Input N×3×112×112 float, (x−127.5)/127.5, RGB; output N×512, not normalised.

``load_onnx_weights`` is shared with ``iresnet``: it walks the ONNX graph and the module's layers
in the same order and copies each tensor, checking kind, shape and hyper-parameters as it goes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.errors import ModelFileError


class ConvAct(nn.Sequential):
    """Conv (BN folded into its bias) followed by PReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups), nn.PReLU(cout))


class InvertedBlock(nn.Module):
    """Expand 1×1 → depthwise 3×3 → linear 1×1 projection, with a residual when shapes allow."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.expand = ConvAct(cin, mid)
        self.depthwise = ConvAct(mid, mid, 3, stride, groups=mid)
        self.project = nn.Conv2d(mid, cout, 1)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _stage(cin: int, cout: int, down_mid: int, mid: int, blocks: int) -> list[nn.Module]:
    return [InvertedBlock(cin, cout, down_mid, stride=2)] + [
        InvertedBlock(cout, cout, mid, residual=True) for _ in range(blocks)
    ]


class MobileFaceNet(nn.Module):
    """w600k_mbf: width 64·scale, stages of (4, 6, 2) residual blocks, 512-d embedding."""

    def __init__(self, scale: int = 2, blocks: tuple[int, int, int] = (4, 6, 2), embedding_size: int = 512,
                 input_size: int = 112) -> None:
        super().__init__()
        w = 64 * scale
        self.body = nn.Sequential(
            ConvAct(3, w, 3, 2),
            ConvAct(w, w, 3, 1, groups=64),
            *_stage(w, w, 128, 128, blocks[0]),
            *_stage(w, 2 * w, 256, 256, blocks[1]),
            *_stage(2 * w, 2 * w, 512, 256, blocks[2]),
            ConvAct(2 * w, 512),
            ConvAct(512, 64),
        )
        side = input_size // 16
        self.fc = nn.Linear(64 * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(torch.flatten(self.body(x), 1)))


# ---------------------------------------------------------------------------------------------------
# ONNX weights → module

_WEIGHT_OPS = {"Conv", "BatchNormalization", "PRelu", "Gemm", "MatMul"}


def _layers(module: nn.Module) -> list[nn.Module]:
    """The weight-carrying leaf layers, in registration order (the modules here register in forward order)."""
    kinds = (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.PReLU, nn.Linear)
    return [m for m in module.modules() if isinstance(m, kinds)]


def _set(param: torch.Tensor, value: np.ndarray, what: str) -> None:
    value = np.asarray(value, dtype=np.float32)
    if value.size != param.numel():
        raise ModelFileError(f"{what}: ONNX tensor has shape {value.shape}, module expects {tuple(param.shape)}")
    if value.ndim == param.dim() and tuple(value.shape) != tuple(param.shape):
        raise ModelFileError(f"{what}: ONNX tensor has shape {value.shape}, module expects {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.tensor(value.reshape(tuple(param.shape))))


def _identity_bn(bn: nn.Module, bias: np.ndarray, what: str) -> None:
    """Make a BatchNorm compute ``x + bias`` exactly: what a conv with the BN folded into it computes."""
    _set(bn.weight, np.ones(bn.num_features), what)
    _set(bn.bias, bias, what)
    _set(bn.running_mean, np.zeros(bn.num_features), what)
    # running_var + eps = 1: the divisor sqrt(var + eps) is 1 to float precision
    _set(bn.running_var, np.full(bn.num_features, 1.0 - bn.eps), what)


def load_onnx_weights(module: nn.Module, onnx_path: str | Path) -> nn.Module:
    """Copy every weight of an ONNX graph into ``module`` (strict) and return it in eval mode.

    The graph's weight-carrying nodes (Conv, BatchNormalization, PRelu, Gemm/MatMul+Add) are matched in
    order with the module's layers. A Conv with a bias where the module has a bias-free conv followed by
    a BatchNorm is an export with the BN folded in: the conv takes the folded weight and the BN becomes
    an exact ``+ bias``. Raises ModelFileError if any float initialiser is left unused, any layer left
    unfilled, or any kind, shape, stride, padding or group count differs.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(onnx_path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing: run `facestream models fetch`")
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:
        raise ModelFileError(f"model file {path} is not readable ONNX ({exc}): delete it and fetch again") from exc
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias: dict[str, str] = {}  # exporters route shared or duplicated weights through Identity nodes
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and alias.get(node.input[0], node.input[0]) in tensors:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
    used: set[str] = set()
    layers = _layers(module)
    pos = 0
    where = f"{path.name} does not match {type(module).__name__}"

    def take(kind, node) -> nn.Module:
        nonlocal pos
        if pos >= len(layers):
            raise ModelFileError(f"{where}: graph has more weight layers than the module ({node.name or node.op_type})")
        layer = layers[pos]
        if not isinstance(layer, kind):
            raise ModelFileError(f"{where}: graph node {node.name or node.op_type} ({node.op_type}) meets "
                                 f"layer #{pos} {type(layer).__name__}")
        pos += 1
        return layer

    def const(name: str) -> np.ndarray:
        name = alias.get(name, name)
        if name not in tensors:
            raise ModelFileError(f"{where}: weight {name!r} is computed in the graph, not stored")
        used.add(name)
        return tensors[name]

    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    for node in graph.node:
        if node.op_type not in _WEIGHT_OPS:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        label = f"{where} at {node.name or node.op_type}"
        if node.op_type == "Conv":
            conv = take(nn.Conv2d, node)
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            got = (tuple(attrs.get("strides", [1, 1])), pads[:2], pads[:2] == pads[2:],
                   attrs.get("group", 1), tuple(attrs.get("dilations", [1, 1])))
            want = (conv.stride, list(conv.padding), True, conv.groups, conv.dilation)
            if got != want:
                raise ModelFileError(f"{label}: stride/pads/symmetric/groups/dilation {got} != {want}")
            _set(conv.weight, const(node.input[1]), label)
            bias = const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if conv.bias is not None:
                _set(conv.bias, bias if bias is not None else np.zeros(conv.out_channels), label)
            elif bias is not None:
                _identity_bn(take(nn.BatchNorm2d, node), bias, label)
        elif node.op_type == "BatchNormalization":
            bn = take((nn.BatchNorm1d, nn.BatchNorm2d), node)
            if abs(attrs.get("epsilon", 1e-5) - bn.eps) > 1e-9:
                raise ModelFileError(f"{label}: epsilon {attrs.get('epsilon')} != {bn.eps}")
            for param, name in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), node.input[1:5]):
                _set(param, const(name), label)
        elif node.op_type == "PRelu":
            _set(take(nn.PReLU, node).weight, const(node.input[1]), label)
        elif node.op_type == "Gemm":
            fc = take(nn.Linear, node)
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
                raise ModelFileError(f"{label}: Gemm with alpha/beta/transA is not a plain linear layer")
            weight = const(node.input[1])
            _set(fc.weight, weight if attrs.get("transB", 0) else weight.T, label)
            bias = const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(fc.out_features)
            if fc.bias is not None:
                _set(fc.bias, bias, label)
            elif np.any(bias):
                raise ModelFileError(f"{label}: the graph has a bias where the module has none")
        else:  # MatMul, optionally followed by Add of a bias: a linear layer exported without Gemm
            if alias.get(node.input[1], node.input[1]) not in tensors:
                continue  # activation × activation: not a weight layer
            fc = take(nn.Linear, node)
            _set(fc.weight, const(node.input[1]).T, label)
            adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
            bias_name = next((i for n in adds for i in n.input if alias.get(i, i) in tensors), None)
            if fc.bias is not None:
                _set(fc.bias, const(bias_name) if bias_name else np.zeros(fc.out_features), label)

    if pos != len(layers):
        raise ModelFileError(f"{where}: layer #{pos} {type(layers[pos]).__name__} got no weights from the graph")
    unused = [n for n, t in tensors.items() if n not in used and np.issubdtype(t.dtype, np.floating)]
    if unused:
        raise ModelFileError(f"{where}: {len(unused)} weight tensors of the graph are not used (e.g. {unused[0]!r})")
    return module.eval()


def mobilefacenet_from_onnx(onnx_path: str | Path) -> MobileFaceNet:
    """The w600k_mbf network with the weights of ``onnx_path``, in eval mode (FP32, CPU)."""
    return load_onnx_weights(MobileFaceNet(), onnx_path)
