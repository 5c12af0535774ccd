"""PyTorch backend: the repo's own modules on CPU or CUDA.

On CUDA it is the measurable GPU fast path: FP16 weights, channels_last memory layout, and one
CUDA graph per input shape so a call is a single graph replay instead of hundreds of launches.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from engines.backends.base import Backend
from engines.device import parse_device
from engines.errors import BackendUnavailable


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"PyTorch is not installed ({exc}): pip install 'facestream[torch]'") from exc
    return torch


def resolve_device(device: str = "auto") -> str:
    """"cpu" or "cuda:N" for ``device`` as PyTorch sees this machine ("auto": its first GPU, else the CPU)."""
    torch = _torch()
    wanted = parse_device(device)
    if wanted.kind == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if wanted.wants_cuda and not torch.cuda.is_available():
        raise BackendUnavailable("PyTorch sees no CUDA device")
    return str(wanted)


class PyTorchBackend(Backend):
    name = "pytorch"

    def __init__(self, module, device: str = "auto", precision: str = "fp32",
                 channels_last: bool | None = None, cuda_graphs: bool | None = None) -> None:
        torch = _torch()
        self.torch = torch
        self.device = resolve_device(device)
        on_cuda = self.device.startswith("cuda")
        if precision not in ("fp32", "fp16"):
            raise BackendUnavailable(f"precision {precision!r} is not supported by pytorch: use fp32 or fp16")
        if precision == "fp16" and not on_cuda:
            precision = "fp32"  # CPU half-precision convolutions are slow and inexact: keep FP32 there
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.channels_last = on_cuda if channels_last is None else channels_last
        self.cuda_graphs = on_cuda if cuda_graphs is None else (cuda_graphs and on_cuda)
        module = module.eval().to(self.device, dtype=self.dtype)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self._graphs: dict[tuple[int, ...], tuple] = {}

    def _prepare(self, x):
        x = x.to(self.device, dtype=self.dtype, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=self.torch.channels_last)
        return x

    def _graph_for(self, shape: tuple[int, ...]):
        torch = self.torch
        entry = self._graphs.get(shape)
        if entry is None:
            static_in = self._prepare(torch.zeros(shape, device=self.device))
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(3):
                    self.module(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self.module(static_in)
            entry = (graph, static_in, static_out)
            self._graphs[shape] = entry
        return entry

    @staticmethod
    def bucket(n: int) -> int:
        """Batch sizes are padded to the next power of two, so a few CUDA graphs serve every batch."""
        return 1 << max(0, (n - 1).bit_length())

    def forward_tensor(self, x):
        """Run on a torch tensor already on the device (the GPU path keeps data there); returns tensors."""
        with self.torch.inference_mode():
            if self.cuda_graphs:
                n = x.shape[0]
                shape = (self.bucket(n), *x.shape[1:])
                graph, static_in, static_out = self._graph_for(shape)
                static_in[:n].copy_(x)
                graph.replay()
                out = static_out
                outs = out if isinstance(out, (tuple, list)) else (out,)
                return tuple(o[:n] for o in outs)
            out = self.module(self._prepare(x))
        return out if isinstance(out, (tuple, list)) else (out,)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        x = self.torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        outs = self.forward_tensor(x.to(self.device, non_blocking=True))
        return [o.float().cpu().numpy() for o in outs]

    def close(self) -> None:
        self._graphs.clear()


def load_module(info, checkpoint_dir: Path):
    """Build the repo's PyTorch module for ``info`` from its checkpoint file."""
    from engines.fetch import require

    if not info.torch_loader:
        raise BackendUnavailable(f"{info.name} has no PyTorch implementation in this repo")
    _torch()
    module_name, func = info.torch_loader.split(":")
    loader = getattr(importlib.import_module(module_name), func)
    return loader(require(checkpoint_dir, info.torch_source), **dict(info.torch_loader_kwargs))


def create(info, checkpoint_dir: Path, device: str = "auto", precision: str = "fp32", **opts) -> Backend:
    if opts.get("threads") and not resolve_device(device).startswith("cuda"):
        _torch().set_num_threads(int(opts["threads"]))
    return PyTorchBackend(load_module(info, checkpoint_dir), device=device, precision=precision,
                          cuda_graphs=opts.get("cuda_graphs"))
