"""ArcFace iresnet (insightface arcface_torch style) for users who bring ``w600k_r50`` / ``glintr100`` weights.

The layer names follow arcface_torch, so its ``backbone.pth`` state dicts load as they are; ONNX files
(``w600k_r50.onnx`` from buffalo_l, ``glintr100.onnx`` from antelopev2) load through the same strict
graph walk as MobileFaceNet. Those files are not available here: only shapes and an export→import
round trip are checked, not parity with the released weights.

Input N×3×112×112 float, (x−127.5)/127.5, RGB; output N×512, not normalised. The forward pass is
dtype-agnostic (runs under ``.half()`` or autocast) — the GPU path runs it in FP16.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engines.errors import ModelFileError
from engines.recognizers.mobilefacenet import load_onnx_weights

#: depth -> residual blocks per stage (arcface_torch's r18 … r200)
LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    """BN → conv3×3 → BN → PReLU → conv3×3 (stride) → BN, plus the (projected) input."""

    def __init__(self, cin: int, cout: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...], embedding_size: int = 512, input_size: int = 112) -> None:
        super().__init__()
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            downsample = nn.Sequential(nn.Conv2d(cin, width, 1, 2, bias=False), nn.BatchNorm2d(width, eps=1e-5))
            stage = [IBasicBlock(cin, width, 2, downsample)] + [IBasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            cin = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        side = input_size // 16
        self.fc = nn.Linear(512 * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # fixed in arcface_torch's training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x))
        return self.features(self.fc(torch.flatten(x, 1)))


def load_weights(model: IResNet, weights: str | Path | None) -> IResNet:
    """Fill ``model`` from an ``.onnx`` graph or an arcface_torch ``.pth`` state dict (strict); eval mode."""
    if weights is None:
        return model.eval()
    path = Path(weights)
    if path.suffix == ".onnx":
        return load_onnx_weights(model, path)
    if not path.is_file():
        raise ModelFileError(f"weights file {path} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"weights file {path} cannot be read by torch.load ({exc})") from exc
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"weights file {path} does not fit {type(model).__name__}: "
                             f"{str(exc).splitlines()[0]}") from exc
    return model.eval()


def iresnet(depth: int, weights: str | Path | None = None) -> IResNet:
    """An iresnet of ``depth`` (18/34/50/100/200), random or loaded from a ``.pth`` state dict or ``.onnx``."""
    if depth not in LAYERS:
        raise ValueError(f"iresnet depth must be one of {sorted(LAYERS)}, got {depth}")
    return load_weights(IResNet(LAYERS[depth]), weights)


def iresnet50(weights: str | Path | None = None) -> IResNet:
    return iresnet(50, weights)


def iresnet100(weights: str | Path | None = None) -> IResNet:
    return iresnet(100, weights)


def iresnet_from_onnx(onnx_path: str | Path, depth: int = 50) -> IResNet:
    """iresnet ``depth`` with the weights of an arcface_torch ONNX export (e.g. w600k_r50.onnx, glintr100.onnx)."""
    if depth not in LAYERS:
        raise ValueError(f"iresnet depth must be one of {sorted(LAYERS)}, got {depth}")
    return load_onnx_weights(IResNet(LAYERS[depth]), onnx_path)
