"""RetinaFace with a MobileNetV1-0.25 backbone as a PyTorch module, its weight loader and ONNX export.

Written from the RetinaFace paper and the MobileNet-0.25 configuration of the public release whose
weights we load (in_channel 32, out_channel 64, 2 anchors per location, LeakyReLU 0.1): backbone
stages at strides 8/16/32, a 3-level FPN with nearest upsampling, an SSH context module per level
and 1x1 class/box/landmark heads. Attribute names follow that release's state dict so its .pth
loads strictly.

Input: float32 NCHW, BGR minus (104, 117, 123), no scaling. Output: (loc (N, P, 4),
conf (N, P, 2) softmaxed, landms (N, P, 10)), P = sum over strides of ceil(H/s) * ceil(W/s) * 2.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.errors import ModelFileError

LEAKY = 0.1
NUM_ANCHORS = 2


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3, leaky: float | None = LEAKY, groups: int = 1):
    """conv (no bias) + BN (+ LeakyReLU unless ``leaky`` is None); indices 0/1(/2) as in the weights."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if leaky is not None:
        layers.append(nn.LeakyReLU(leaky, inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(cin: int, cout: int, stride: int):
    """Depthwise 3x3 + BN + act, pointwise 1x1 + BN + act (weights at indices 0, 1, 3, 4)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.LeakyReLU(LEAKY, inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(LEAKY, inplace=True),
    )


class MobileNetV1x025(nn.Module):
    """MobileNetV1 at width 0.25, cut into the three stages the FPN reads (strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 2), _conv_dw(8, 16, 1), _conv_dw(16, 32, 2),
            _conv_dw(32, 32, 1), _conv_dw(32, 64, 2), _conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return c3, c4, c5


class FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out: int) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out, k=1)
        self.output2 = _conv_bn(in_channels[1], out, k=1)
        self.output3 = _conv_bn(in_channels[2], out, k=1)
        self.merge1 = _conv_bn(out, out)
        self.merge2 = _conv_bn(out, out)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3, p4, p5 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        # upsample to the finer level's exact size (not x2) so odd feature sizes still line up
        p4 = self.merge2(p4 + F.interpolate(p5, size=(p4.shape[2], p4.shape[3]), mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=(p3.shape[2], p3.shape[3]), mode="nearest"))
        return p3, p4, p5


class SSH(nn.Module):
    """Single-stage context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches, concatenated."""

    def __init__(self, cin: int, out: int) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(cin, out // 2, leaky=None)
        self.conv5X5_1 = _conv_bn(cin, out // 4)
        self.conv5X5_2 = _conv_bn(out // 4, out // 4, leaky=None)
        self.conv7X7_2 = _conv_bn(out // 4, out // 4)
        self.conv7x7_3 = _conv_bn(out // 4, out // 4, leaky=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.conv5X5_1(x)
        b7 = self.conv7x7_3(self.conv7X7_2(b5))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(b5), b7], dim=1))


class _Head(nn.Module):
    """1x1 conv predicting ``k`` values per anchor, flattened to (N, H*W*anchors, k)."""

    def __init__(self, cin: int, k: int, anchors: int = NUM_ANCHORS) -> None:
        super().__init__()
        self.k = k
        self.conv1x1 = nn.Conv2d(cin, anchors * k, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.k)


class RetinaFaceMNet(nn.Module):
    def __init__(self, in_channel: int = 32, out_channel: int = 64) -> None:
        super().__init__()
        self.body = MobileNetV1x025()
        self.fpn = FPN((in_channel * 2, in_channel * 4, in_channel * 8), out_channel)
        self.ssh1 = SSH(out_channel, out_channel)
        self.ssh2 = SSH(out_channel, out_channel)
        self.ssh3 = SSH(out_channel, out_channel)
        self.ClassHead = nn.ModuleList(_Head(out_channel, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(out_channel, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(out_channel, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3, p4, p5 = self.fpn(self.body(x))
        feats = (self.ssh1(p3), self.ssh2(p4), self.ssh3(p5))
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landms = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, F.softmax(conf, dim=-1), landms


def load_retinaface(pth_path: str | Path) -> RetinaFaceMNet:
    """The network with the release weights loaded strictly, in eval mode on the CPU."""
    pth_path = Path(pth_path)
    try:
        # the release is a plain state dict of tensors: the safe unpickler reads it
        state = torch.load(pth_path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelFileError(f"model file {pth_path} is missing: run `facestream models fetch`") from exc
    except Exception as exc:
        raise ModelFileError(
            f"model file {pth_path} is not a RetinaFace state dict ({str(exc).splitlines()[0]}): "
            "delete it and run `facestream models fetch`"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = RetinaFaceMNet()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(
            f"model file {pth_path} does not match RetinaFace MobileNet-0.25 "
            f"({str(exc).splitlines()[0]}): use retinaface_mnet025.pth from `facestream models fetch`"
        ) from exc
    return net.eval()


def export_onnx(pth_path: str | Path, onnx_path: str | Path, opset: int = 17) -> Path:
    """Write the network as ONNX: input "input" (N, 3, H, W), outputs "loc", "conf", "landms",
    batch, height and width all dynamic.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no onnxscript and gives one
    plain graph whose dynamic H/W survives the FPN's size-matched upsampling. The file is written
    next to the target and renamed into place, so a crash never leaves a half-written model.
    """
    onnx_path = Path(onnx_path)
    net = load_retinaface(pth_path)
    dummy = torch.zeros(1, 3, 640, 640)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{onnx_path.name}.", suffix=".part", dir=onnx_path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is chosen on purpose (see above): silence its deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                net, (dummy,), tmp, dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["loc", "conf", "landms"],
                dynamic_axes={
                    "input": {0: "batch", 2: "height", 3: "width"},
                    "loc": {0: "batch", 1: "priors"},
                    "conf": {0: "batch", 1: "priors"},
                    "landms": {0: "batch", 1: "priors"},
                },
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is ordinary data
        os.replace(tmp, onnx_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return onnx_path
