"""RetinaFace MobileNet-0.25 with every step on the GPU: only the final faces come back to the host.

Per batch of same-sized frames: one upload of the uint8 frames (from a pinned host buffer,
asynchronous), then one CUDA graph that does letterbox resize (bilinear, as cv2.INTER_LINEAR),
BGR mean subtraction into a preallocated zero-padded FP16 channels_last input, the network (score,
box and landmark heads in FP32), the top-K candidates per frame, their prior-box decoding, the
threshold, greedy NMS in fixed shapes and the mapping back to original pixels; then one copy of
(B, K, 16) floats to the host. Frames the fixed shapes cannot settle exactly (more than K candidates,
or suppression chains longer than the graph's NMS steps) are redone eagerly with torchvision's NMS
(else a vectorised torch one) — same answer, slower. Results follow the numpy
adapter ``engines.detectors.retinaface.RetinaFace``: same letterbox, priors, thresholds and order.
The NMS variants live in ``engines.gpu.nms``, the pinned and registered host memory in
``engines.gpu.host_memory``; this module is the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.align import CROP_SIZE
from engines.backends.base import Backend
from engines.capabilities import Capabilities
from engines.detectors.base import PRE_NMS_TOPK, _parse_size, round_up
from engines.detectors.retinaface import MEAN_BGR, VARIANCES, prior_boxes
from engines.gpu.align import warp_faces
from engines.gpu.host_memory import HostMemory
from engines.gpu.nms import batched_nms_torch, graph_nms, torchvision_batched_nms
from engines.gpu.optimize import GraphedCallable, prepare_module
from engines.letterbox import LetterboxInfo, letterbox_info
from engines.types import Detections

#: candidates kept per frame inside the graph; a frame with more over the threshold is redone eagerly
GRAPH_TOPK = 1024
#: fixed-point steps of the in-graph NMS; a frame whose suppression chains are longer is redone eagerly
GRAPH_NMS_STEPS = 8


class GpuRetinaFace:
    """RetinaFace on one CUDA device. ``detect``/``detect_batch`` take uint8 BGR numpy frames,
    ``detect_tensor`` takes (B, H, W, 3) uint8 frames already on the device. Arguments mean what they
    mean in ``FaceDetectorAdapter`` (``input_size`` None: each frame at its own size rounded up to 32).
    """

    capabilities = Capabilities(aligns_on_device=True, registers_host_memory=True)

    def __init__(
        self,
        net: nn.Module,
        device: str = "cuda",
        input_size: int | tuple[int, int] | None = (640, 640),
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        max_faces: int | None = None,
        precision: str = "fp16",
        compile_mode: str | None = None,
        cuda_graphs: bool = True,
        channels_last: bool | None = None,
        backend: Backend | None = None,
    ) -> None:
        """``backend``: the plain PyTorch backend this adapter replaced, kept to describe what runs."""
        self.device = torch.device(device)
        self.backend = backend
        if precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be fp16 or fp32, got {precision!r}")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.input_size = _parse_size(input_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_faces = max_faces
        on_cuda = self.device.type == "cuda"
        self.channels_last = on_cuda if channels_last is None else channels_last
        heads = [f"{kind}.{i}" for kind in ("ClassHead", "BboxHead", "LandmarkHead") for i in range(3)]
        self.net = prepare_module(net, self.device, self.dtype, channels_last=self.channels_last,
                                  compile_mode=compile_mode, fp32_modules=heads if self.dtype != torch.float32 else ())
        self._mean = torch.tensor(MEAN_BGR, dtype=torch.float32, device=self.device).reshape(1, 3, 1, 1)
        self._graphs = GraphedCallable(self._forward, enabled=cuda_graphs and on_cuda)
        self._plans: dict[tuple[int, int, int], dict] = {}
        self.host_memory = HostMemory(self.device)
        self._batched_nms = torchvision_batched_nms()

    @classmethod
    def from_checkpoint(cls, pth_path: str | Path, **kwargs) -> GpuRetinaFace:
        from engines.detectors.retinaface_net import load_retinaface

        return cls(load_retinaface(pth_path), **kwargs)

    @property
    def nms_impl(self) -> str:
        return "torchvision" if self._batched_nms is not None else "torch"

    # -- per-size plan: letterbox, priors, padded input ------------------------------------------
    def _plan(self, batch: int, h: int, w: int) -> dict:
        key = (batch, h, w)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        if self.input_size is None:
            size = (round_up(h), round_up(w))
            info = letterbox_info((h, w), size, scale=1.0)
        else:
            size = self.input_size
            info = letterbox_info((h, w), size)
        centres, sizes = prior_boxes(*size)
        padded = torch.zeros((batch, 3, *size), dtype=self.dtype, device=self.device)
        if self.channels_last:
            padded = padded.contiguous(memory_format=torch.channels_last)
        plan = self._plans[key] = {
            "info": info,
            "padded": padded,  # written inside the graph; the padding stays 0 (= mean after subtraction)
            "centres": torch.from_numpy(centres).to(self.device),
            "sizes": torch.from_numpy(sizes).to(self.device),
            "k": min(GRAPH_TOPK, len(centres)),
            "offset": torch.tensor([info.pad_x, info.pad_y], dtype=torch.float32, device=self.device),
            "inv_scale": torch.tensor([1 / info.scale_x, 1 / info.scale_y], dtype=torch.float32, device=self.device),
            # made here, not in the graph: a host→device copy cannot be captured
            "clip": torch.tensor([info.orig_w, info.orig_h] * 2, dtype=torch.float32, device=self.device),
        }
        return plan

    def _forward(self, frames: torch.Tensor):
        """The captured part: (B, H0, W0, 3) uint8 → per-frame top-K candidates, decoded, thresholded,
        NMS'd and mapped to original pixels, packed (B, K, 16): box 4, score, landmarks 10, kept flag."""
        b, h, w, _ = frames.shape
        plan = self._plans[(b, h, w)]
        info: LetterboxInfo = plan["info"]
        nw, nh = info.resized_size
        x = frames.permute(0, 3, 1, 2).float()
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False).round_()
        x = x[:, :, : info.input_h, : info.input_w]  # a forced scale 1 never overflows; kept for safety
        plan["padded"][:, :, : x.shape[2], : x.shape[3]] = x - self._mean
        loc, conf, landms = self.net(plan["padded"])
        scores = conf[..., 1].float()
        top, idx = scores.topk(plan["k"], dim=1)
        boxes, points = self._decode(loc, landms, idx, plan)
        valid = top >= self.score_threshold
        keep, converged = graph_nms(boxes, valid, self.nms_threshold, GRAPH_NMS_STEPS)
        packed = torch.cat([self._to_original(boxes, points, plan), top[..., None], keep[..., None]], dim=-1)
        # fallback needed: NMS did not settle, or the K-th candidate still passes (more may lie beyond K)
        redo = ~converged | (valid[:, -1] & (plan["k"] < min(PRE_NMS_TOPK, scores.shape[1])))
        return packed, redo, scores, loc, landms

    @staticmethod
    def _to_original(boxes: torch.Tensor, points: torch.Tensor, plan: dict) -> torch.Tensor:
        """(…, 4) boxes (clipped) and (…, 5, 2) points from letterbox to original pixels → (…, 14)."""
        off, inv = plan["offset"], plan["inv_scale"]
        bx = ((boxes.unflatten(-1, (2, 2)) - off) * inv).flatten(-2)
        bx = torch.minimum(bx.clamp(min=0), plan["clip"])
        pts = ((points - off) * inv).flatten(-2)
        return torch.cat([bx, pts], dim=-1)

    @staticmethod
    def _decode(loc: torch.Tensor, landms: torch.Tensor, idx: torch.Tensor, plan: dict):
        """Boxes (B, K, 4) and landmarks (B, K, 5, 2) for prior indices ``idx`` (B, K)."""
        b, k = idx.shape
        flat = idx.reshape(-1)
        c = plan["centres"].index_select(0, flat).reshape(b, k, 2)
        s = plan["sizes"].index_select(0, flat).reshape(b, k, 2)
        vs = s * VARIANCES[0]
        lo = loc.gather(1, idx[..., None].expand(b, k, 4)).float()
        lm = landms.gather(1, idx[..., None].expand(b, k, 10)).float().reshape(b, k, 5, 2)
        xy = c + lo[..., :2] * vs
        half = s * torch.exp(lo[..., 2:] * VARIANCES[1]) * 0.5
        boxes = torch.cat([xy - half, xy + half], dim=-1)
        points = c[:, :, None, :] + lm * vs[:, :, None, :]
        return boxes, points

    # -- host side --------------------------------------------------------------------------------
    def host_buffer(self, batch: int, height: int, width: int) -> np.ndarray:
        """A pinned (page-locked) uint8 (batch, height, width, 3) array: decode frames straight into it
        and ``detect_batch`` uploads it without the extra host copy."""
        return self.host_memory.buffer((batch, height, width, 3)).numpy()

    def register_host_memory(self, memory: np.ndarray) -> bool:
        """Page-lock ``memory`` (a whole shared-memory frame ring) in CUDA, so frames that live in it are
        uploaded by DMA straight from it: no copy into a pinned staging buffer first (0.5–1 ms of CPU per
        1080p frame). False, and nothing changes, where CUDA refuses (then frames go through the staging
        buffer as before)."""
        return self.host_memory.register(memory)

    def unregister_host_memory(self) -> None:
        """Undo ``register_host_memory`` (before the memory is unmapped)."""
        self.host_memory.unregister()

    def detect(self, frame: np.ndarray) -> Detections:
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: list[np.ndarray] | np.ndarray) -> list[Detections]:
        """Faces in each uint8 BGR (H, W, 3) frame, in that frame's pixels. Frames of one size share one
        upload and one graph replay; mixed sizes are grouped by size."""
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            return self._detect_same_size(frames)[0]
        return self._detect_groups(list(frames), align=False)[0]

    def detect_align_batch(self, frames: list[np.ndarray], size: int = CROP_SIZE
                           ) -> tuple[list[Detections], list[np.ndarray]]:
        """``detect_batch`` plus each face's aligned crop (n_i, size, size, 3) uint8, warped on the GPU from the
        frame already uploaded for detection (as ``engines.align.align_faces`` does on the CPU)."""
        return self._detect_groups(list(frames), align=True, size=size)

    def _detect_groups(self, frames: list[np.ndarray], align: bool, size: int = CROP_SIZE
                       ) -> tuple[list[Detections], list[np.ndarray]]:
        if not frames:
            return [], []
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"detector expects uint8 BGR images (H, W, 3), got {f.dtype} {f.shape}")
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(f.shape[:2], []).append(i)
        results: list[Detections | None] = [None] * len(frames)
        crops: list[np.ndarray | None] = [None] * len(frames)
        for idx in groups.values():
            h, w = frames[idx[0]].shape[:2]
            if self._graphs.enabled and all(self.host_memory.is_registered(frames[i]) for i in idx):
                static = self._static_input(len(idx), h, w)
                for j, i in enumerate(idx):  # DMA from the ring slot into the graph's input: no host copy
                    static[j].copy_(torch.from_numpy(frames[i]), non_blocking=True)
                found = self._finish(self._graphs.replay(static), self._plan(len(idx), h, w))  # syncs: reads done
                on_device = static
            else:
                buf = self.host_buffer(len(idx), h, w)
                for j, i in enumerate(idx):
                    buf[j] = frames[i]
                found, on_device = self._detect_same_size(buf)
            warped = warp_faces(on_device, [d.landmarks for d in found], size) if align else [None] * len(idx)
            for i, det, c in zip(idx, found, warped):
                results[i], crops[i] = det, c
        return results, crops  # type: ignore[return-value]

    def _detect_same_size(self, frames: np.ndarray) -> tuple[list[Detections], torch.Tensor]:
        """Faces in (B, H, W, 3) frames, and the frames as uploaded (valid until the next call)."""
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"detector expects uint8 BGR frames (B, H, W, 3), got {frames.dtype} {frames.shape}")
        b, h, w, _ = frames.shape
        pinned = self.host_memory.staged(frames)
        if not self._graphs.enabled:
            on_device = pinned.to(self.device)
            return self.detect_tensor(on_device), on_device
        static = self._static_input(b, h, w)
        static.copy_(pinned, non_blocking=True)  # the upload lands in the graph's own input: no device copy
        return self._finish(self._graphs.replay(static), self._plan(b, h, w)), static

    def _static_input(self, b: int, h: int, w: int) -> torch.Tensor:
        """The (b, h, w, 3) uint8 device input of that shape's CUDA graph (captured on first use)."""
        plan = self._plan(b, h, w)
        static = plan.get("static")
        if static is None:
            example = torch.zeros((b, h, w, 3), dtype=torch.uint8, device=self.device)
            (static,) = self._graphs.static_inputs(example)
            plan["static"] = static
        return static

    def detect_tensor(self, frames: torch.Tensor) -> list[Detections]:
        """Faces in (B, H, W, 3) uint8 BGR frames on the device (or one (H, W, 3) frame)."""
        if frames.dim() == 3:
            frames = frames[None]
        b, h, w, _ = frames.shape
        plan = self._plan(b, h, w)
        if self._graphs.enabled:
            return self._finish(self._graphs(frames), plan)
        with torch.inference_mode():
            return self._finish(self._forward(frames.to(self.device)), plan)

    def _finish(self, outputs, plan) -> list[Detections]:
        """Copy the packed candidates back (one sync) and keep the NMS survivors; rare frames whose
        in-graph NMS did not settle, or that have more than K candidates, are redone eagerly."""
        packed, redo, scores, loc, landms = outputs
        host = plan.get("host")
        if host is None or host[0].shape != packed.shape:
            pin = self.device.type == "cuda"
            host = plan["host"] = (torch.empty(packed.shape, pin_memory=pin), torch.empty(redo.shape, dtype=torch.bool,
                                                                                        pin_memory=pin))
        host[0].copy_(packed, non_blocking=True)
        host[1].copy_(redo, non_blocking=True)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        rows, again = host[0].numpy(), host[1].numpy()
        results = []
        for i in range(len(rows)):
            if again[i]:
                results.append(self._finish_eager(scores[i:i + 1], loc[i:i + 1], landms[i:i + 1], plan)[0])
                continue
            r = rows[i][rows[i][:, 15] > 0.5]
            if self.max_faces is not None:
                r = r[: self.max_faces]
            results.append(Detections(r[:, :4], r[:, 14], r[:, 4:14].reshape(-1, 5, 2)))
        return results

    def _finish_eager(self, scores, loc, landms, plan) -> list[Detections]:
        """The general path for a batch: every candidate over the threshold (up to PRE_NMS_TOPK), NMS
        with torchvision (or ``batched_nms_torch``), then mapping to original pixels."""
        b = scores.shape[0]
        with torch.inference_mode():
            top, idx = scores.topk(min(PRE_NMS_TOPK, scores.shape[1]), dim=1)
            boxes, points = self._decode(loc, landms, idx, plan)
        k = top.shape[1]
        counts = (top >= self.score_threshold).sum(1).tolist()
        flat = np.concatenate([i * k + np.arange(c) for i, c in enumerate(counts)])
        index = torch.from_numpy(np.stack([flat, np.repeat(np.arange(b), counts)])).to(self.device)
        cand_scores = top.reshape(-1).index_select(0, index[0])
        cand_boxes = boxes.reshape(-1, 4).index_select(0, index[0])
        cand_points = points.reshape(-1, 5, 2).index_select(0, index[0])
        groups = index[1]
        nms = self._batched_nms or batched_nms_torch
        keep = nms(cand_boxes, cand_scores, groups, self.nms_threshold)  # highest score first
        keep = keep[torch.sort(groups[keep], stable=True).indices]  # by frame, each frame by score
        g = groups[keep]
        if self.max_faces is not None:
            rank = torch.arange(len(g), device=g.device) - torch.searchsorted(g, g)
            keep, g = keep[rank < self.max_faces], g[rank < self.max_faces]
        mapped = self._to_original(cand_boxes[keep], cand_points[keep], plan)
        packed = torch.cat([mapped, cand_scores[keep, None], g[:, None].float()], dim=1).cpu().numpy()
        bounds = np.searchsorted(packed[:, 15], np.arange(b + 1) - 0.5)
        return [
            Detections(packed[s:e, :4], packed[s:e, 14], packed[s:e, 4:14].reshape(-1, 5, 2))
            for s, e in zip(bounds[:-1], bounds[1:])
        ]

    def close(self) -> None:
        self.host_memory.clear()
        self._graphs.reset()
        self._plans.clear()
