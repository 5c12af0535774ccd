"""Greedy NMS on the device: torchvision's where it works, a vectorised torch one, and a fixed-shape one for
CUDA graphs. All follow ``engines.nms.nms``: suppress when IoU > threshold with a kept, higher-scoring box;
equal scores keep input order."""

from __future__ import annotations

from collections.abc import Callable

import torch


def torchvision_batched_nms() -> Callable | None:
    """torchvision's ``batched_nms``, or None where torchvision is missing or built for another torch."""
    try:
        from torchvision.ops import batched_nms
    except Exception:  # noqa: BLE001 - an ABI mismatch raises all sorts
        return None
    return batched_nms


def nms_torch(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS on the device without a per-box Python loop; kept indices, highest score first.

    Greedy NMS is the unique solution of ``keep[j] = not any(keep[i] and S[i, j] for i before j)``
    with ``S`` the upper-triangular overlap matrix; iterating that equation from all-kept fixes at
    least one more leading box per step and usually converges in 2-4 steps.
    """
    n = len(boxes)
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float()
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, None] + area[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    over = torch.triu(iou > iou_threshold, diagonal=1).to(torch.float32)
    keep = torch.ones(n, dtype=torch.float32, device=b.device)
    for _ in range(n):
        new = ((keep @ over) == 0).to(torch.float32)
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep.bool()]


def batched_nms_torch(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                      iou_threshold: float) -> torch.Tensor:
    """NMS within each group at once: boxes of different groups are shifted apart so they never overlap.
    Returns kept indices, highest score first."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    return nms_torch(boxes + (groups.to(boxes.dtype) * span)[:, None], scores, iou_threshold)


def graph_nms(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float,
              steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS for (B, K) score-sorted candidates in fixed shapes (capturable in a CUDA graph): the fixed-point
    iteration of ``nms_torch`` for ``steps`` steps. Returns the (B, K) kept flags and, per frame, whether the
    iteration converged (then the answer is exact; else the caller redoes that frame)."""
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, :, None] + area[:, None, :] - inter
    over = (inter > iou_threshold * union) & (union > 0)  # IoU > t without a division
    over = torch.triu(over & valid[:, :, None], diagonal=1).float()
    vf = valid.float()
    keep = vf
    prev = keep
    for _ in range(steps):
        prev = keep
        keep = vf * (torch.bmm(keep[:, None, :], over)[:, 0] == 0).float()
    return keep, (keep == prev).all(dim=1)
