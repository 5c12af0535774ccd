"""`build-engines`: TensorRT engines for the configured detector and embedder, cached per GPU and version."""

from __future__ import annotations

import sys
from pathlib import Path

from app.cli.common import load_settings


def add_parsers(sub) -> None:
    p = sub.add_parser("build-engines", help="build TensorRT engines from the ONNX models (cached)")
    p.add_argument("--engine-dir", help="where engines go (default CHECKPOINT_DIR/engines)")
    p.add_argument("--precision", action="append", choices=("fp16", "fp32"),
                   help="engine precision, repeatable (default fp16)")
    p.add_argument("--max-batch", type=int, default=128, help="largest batch of faces for the embedder")
    p.add_argument("--opt-batch", type=int, default=32, help="batch the embedder's kernels are tuned for")
    p.add_argument("--det-max-batch", type=int, default=4, help="largest batch of frames for the detector")
    p.add_argument("--det-size", type=int, help="detector input side (default DET_SIZE)")
    p.add_argument("--workspace-mb", type=int, default=1024, help="cap on TensorRT's build memory, MiB")
    p.add_argument("--sm", help="target compute capability, e.g. 86 (TensorRT-RTX only; default: all it supports)")
    p.add_argument("--rebuild", action="store_true", help="build even when a fresh engine is cached")
    p.set_defaults(func=cmd_build_engines)


def cmd_build_engines(args) -> int:
    from engines.fetch import require
    from engines.model_zoo import get_info
    from engines.tensorrt.cache import build_engines

    settings = load_settings(args)
    models = []
    for name, kind in ((settings.detector_model, "detector"), (settings.embedder_model, "embedder")):
        info = get_info(name, kind)
        models.append((name, require(settings.checkpoint_dir, info.onnx), kind))
    size = args.det_size or settings.det_size
    records = build_engines(
        models, args.engine_dir or Path(settings.checkpoint_dir) / "engines", precisions=args.precision or ["fp16"],
        max_batch=args.max_batch, opt_batch=args.opt_batch, det_size=(size, size), workspace_mb=args.workspace_mb,
        progress=lambda ev: print(f"  {ev}", file=sys.stderr), det_max_batch=args.det_max_batch, sm=args.sm,
        rebuild=args.rebuild,
    )
    for r in records:
        print(f"{r.path.name}: {r.source}{f' ({r.reason})' if r.reason else ''}, {r.size_bytes / 2**20:.1f} MB, "
              f"built in {r.build_seconds:.1f} s")
    return 0
