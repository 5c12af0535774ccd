"""ArcFace on the GPU: aligned uint8 crops in, L2-normalised embeddings out.

Batches are padded up to a fixed bucket (``DEFAULT_BUCKETS``) so a handful of CUDA graphs cover
every batch size: padding a batch of 5 to 8 costs less than launching an un-graphed forward pass.
Each graph holds the whole step: BGR→RGB, (x − 127.5) / 127.5, the FP16 channels_last network and
the L2 normalisation; only the (N, 512) float32 result is copied back. The crops can come from the
GPU warp (``engines.gpu.align``, the detector's ``detect_align_batch``) or from ``engines.align`` on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.backends.base import Backend
from engines.capabilities import Capabilities
from engines.gpu.optimize import GraphedCallable, prepare_module
from engines.recognizers.arcface import INPUT_MEAN, INPUT_STD

#: a batch pads up to the next of these: finer steps at the sizes that frames of many faces bring (a batch of
#: 8 frames of ~10 faces is 80: padded to 96 rather than 128)
DEFAULT_BUCKETS = (1, 8, 16, 32, 64, 96, 128)


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``n`` (callers split batches larger than the largest bucket)."""
    for b in buckets:
        if n <= b:
            return b
    return buckets[-1]


class GpuArcFace:
    """ArcFace embeddings computed on one CUDA device (CPU works too, without graphs: for tests).

    ``module`` is an ArcFace recogniser (MobileFaceNet, iresnet): RGB, (x − 127.5)/127.5, N×3×112×112 → N×512.
    Defaults are the fastest measured on an H100 (docs/benchmarks_gpu.md): FP16, channels_last, and
    MobileFaceNet's 2-channel-group conv made dense (``densify_groups=4``; cuDNN has no fast kernel for it).
    """

    embedding_size = 512
    #: per instance: the buckets are a constructor argument
    capabilities = Capabilities(embeds_async=True, batch_buckets=DEFAULT_BUCKETS)

    def __init__(
        self,
        module: nn.Module,
        device: str = "cuda",
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        precision: str = "fp16",
        compile_mode: str | None = None,
        cuda_graphs: bool = True,
        channels_last: bool | None = None,
        densify_groups: int = 4,
        backend: Backend | None = None,
    ) -> None:
        """``backend``: the plain PyTorch backend this adapter replaced, kept to describe what runs."""
        if precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be fp16 or fp32, got {precision!r}")
        if not buckets or any(b < 1 for b in buckets):
            raise ValueError(f"buckets must be positive batch sizes, got {buckets}")
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.buckets = tuple(sorted(set(int(b) for b in buckets)))
        self.capabilities = Capabilities(embeds_async=True, batch_buckets=self.buckets)
        self.backend = backend
        on_cuda = self.device.type == "cuda"
        self.channels_last = on_cuda if channels_last is None else channels_last
        self.net = prepare_module(module, self.device, self.dtype, channels_last=self.channels_last,
                                  compile_mode=compile_mode, densify_groups=densify_groups)
        enabled = cuda_graphs and on_cuda
        self._from_uint8 = GraphedCallable(self._forward_uint8, enabled=enabled)
        self._static: dict[tuple, torch.Tensor] = {}
        self._pinned: list[tuple[torch.Tensor, torch.Tensor] | None] = [None, None]  # two staging pairs
        self._done: list[torch.cuda.Event | None] = [None, None]  # when each pair's last call finished
        self._slot = 1
        self._uses = [0, 0]  # calls per staging pair: a result fetched too late is an error, not wrong numbers

    # -- captured steps ---------------------------------------------------------------------------
    def _forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 112, 112) float BGR pixel values (0..255) → (B, 512) float32 unit vectors."""
        x = ((x.flip(1) - INPUT_MEAN) / INPUT_STD).to(self.dtype)
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return F.normalize(self.net(x).float(), dim=1)

    def _forward_uint8(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 112, 112, 3) uint8 BGR → embeddings. NHWC permuted to NCHW is already channels_last."""
        return self._forward_float(crops.permute(0, 3, 1, 2).float())

    def _run(self, graphs: GraphedCallable, x: torch.Tensor) -> torch.Tensor:
        """Embeddings for the first len(x) rows, padded to a bucket (static input filled in place).
        ``x`` may be on the device or in pinned host memory (then the copy into the graph is the upload)."""
        n = len(x)
        b = bucket_for(n, self.buckets)
        if not graphs.enabled:
            with torch.inference_mode():
                return graphs.fn(x.to(self.device))
        key = (id(graphs), b, *x.shape[1:], x.dtype)
        static = self._static.get(key)
        if static is None:
            example = torch.zeros((b, *x.shape[1:]), dtype=x.dtype, device=self.device)
            (static,) = graphs.static_inputs(example)
            self._static[key] = static
        static[:n].copy_(x, non_blocking=True)  # rows past n hold stale crops: rows are independent
        return graphs.replay(static)[:n]

    # -- public API --------------------------------------------------------------------------------
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """L2-normalised (N, 512) float32 embeddings of aligned uint8 BGR crops (N, 112, 112, 3)."""
        return self.embed_async(crops)()

    def embed_async(self, crops: np.ndarray) -> Callable[[], np.ndarray]:
        """Start embedding ``crops`` (as ``embed``) and return at once a function that waits for the result.

        The caller does its CPU work while the GPU runs (the embed+track stage tracks the next batch). Two
        calls may be in flight: each uses one of two pinned staging pairs (crops in, embeddings out); a third
        call first waits for the oldest to finish, so a result must be fetched before the call after next.
        """
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 (N, H, W, 3) BGR, got {crops.dtype} {crops.shape}")
        n = len(crops)
        if self.device.type != "cuda":  # CPU (tests): nothing to overlap
            out = self._embed_now(crops)
            return lambda: out
        slot = self._slot = 1 - self._slot
        done = self._done[slot]
        if done is not None:
            done.synchronize()  # the staging pair of the call before last is free again
        host_in, host_out = self._staging(slot, n, crops.shape[1:])
        np.copyto(host_in[:n].numpy(), crops)
        step = self.buckets[-1]
        for i in range(0, n, step):
            emb = self._run(self._from_uint8, host_in[i:i + step][: n - i])  # pinned host → graph input
            host_out[i:i + len(emb)].copy_(emb, non_blocking=True)  # queued before the next replay reuses it
        event = self._done[slot] = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))  # this device's stream, whichever device is current
        self._uses[slot] += 1
        use = self._uses[slot]

        def result() -> np.ndarray:
            if self._uses[slot] != use:
                raise RuntimeError("embed_async: result fetched after its staging buffers were reused")
            event.synchronize()
            return host_out[:n].numpy().copy()

        return result

    def _embed_now(self, crops: np.ndarray) -> np.ndarray:
        step = self.buckets[-1]
        parts = [self._run(self._from_uint8, torch.from_numpy(np.ascontiguousarray(crops[i:i + step]))).numpy()
                 for i in range(0, len(crops), step)]
        return np.concatenate(parts) if parts else np.zeros((0, self.embedding_size), np.float32)

    def _staging(self, slot: int, n: int, crop_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pinned buffers of pair ``slot`` holding at least ``n`` crops / embeddings (grown by doubling)."""
        have = self._pinned[slot]
        if have is None or len(have[0]) < n or tuple(have[0].shape[1:]) != tuple(crop_shape):
            size = max(self.buckets[-1], 1 << (max(n, 1) - 1).bit_length())
            have = self._pinned[slot] = (
                torch.empty((size, *crop_shape), dtype=torch.uint8, pin_memory=True),
                torch.empty((size, self.embedding_size), dtype=torch.float32, pin_memory=True),
            )
        return have

    def close(self) -> None:
        self._from_uint8.reset()
        self._static.clear()
        self._pinned = [None, None]
        self._done = [None, None]
