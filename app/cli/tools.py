"""`models`, `embed`, `compare`, `settings`: the inference core from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from app.cli.common import BackendSpec, load_settings, read_image
from app.errors import FacestreamError


def add_parsers(sub) -> None:
    p = sub.add_parser("models", help="fetch, export or list model files")
    p.add_argument("action", choices=("fetch", "export", "list"))
    p.add_argument("--mirror", help="copy from this folder instead of downloading (or FACESTREAM_MODEL_MIRROR)")
    p.add_argument("--force", action="store_true", help="export again even if the ONNX exists")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("embed", help="detect, align and embed the faces of images; write the embeddings")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", help="write embeddings to FILE.npy, one row per face in print order")
    p.add_argument("--backend", help="embedding backend spec, e.g. onnxruntime or pytorch:cuda:fp16")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("compare", help="embedding parity between two backends on real aligned faces")
    p.add_argument("images", nargs="+")
    p.add_argument("--a", default="onnxruntime", help="first backend spec (default onnxruntime)")
    p.add_argument("--b", default="pytorch", help="second backend spec (default pytorch)")
    p.add_argument("--max-drift", type=float, default=0.001, help="fail when 1 - min cosine exceeds this")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("settings", help="print every setting (or .env.example text with --example)")
    p.add_argument("--example", action="store_true")
    p.set_defaults(func=cmd_settings)


def cmd_models(args) -> int:
    from engines.fetch import ensure_models, export_retinaface, manifest

    settings = load_settings(args)
    ckpt = Path(settings.checkpoint_dir)
    if args.action == "list":
        for name, entry in manifest().items():
            path = ckpt / name
            state = "present" if path.is_file() else "missing"
            print(f"{name:28s} {entry['size']:>12,d} B  {state:8s} {entry['what']}")
        onnx = ckpt / "retinaface_mnet025.onnx"
        print(f"{onnx.name:28s} {'(exported)':>14s}  {'present' if onnx.is_file() else 'missing':8s} "
              "`facestream models export`")
        return 0
    if args.action == "fetch":
        ensure_models(ckpt, mirror=args.mirror, export=False)
        print(f"models ready in {ckpt}; next: `facestream models export`", file=sys.stderr)
        return 0
    export_retinaface(ckpt, force=args.force)
    return 0


def _analyzer(settings, embed_spec: BackendSpec | None = None, det_backend: str | None = None):
    from app.stages.detect import model_kwargs
    from engines.analyzer import FaceAnalyzer
    from engines.model_zoo import load_detector

    kw = model_kwargs(settings)
    detector = load_detector(settings.detector_model, det_backend or settings.detector_backend, **kw,
                             input_size=(settings.det_size, settings.det_size),
                             score_threshold=settings.det_threshold, nms_threshold=settings.nms_threshold)
    embedder = _embedder(settings, embed_spec or BackendSpec(settings.embedding_backend, settings.device,
                                                             settings.gpu_precision))
    return FaceAnalyzer(detector, embedder, min_face=settings.min_face)


def _embedder(settings, spec: BackendSpec):
    from app.stages.detect import model_kwargs
    from engines.model_zoo import load_embedder

    kw = model_kwargs(settings)
    kw.update(device=spec.device, precision=spec.precision)
    return load_embedder(settings.embedder_model, spec.backend, **kw)


def cmd_embed(args) -> int:
    settings = load_settings(args)
    analyzer = _analyzer(settings, BackendSpec.parse(args.backend) if args.backend else None)
    rows = []
    for path in args.images:
        faces = analyzer.analyze(read_image(path))
        print(f"{path}: {len(faces.detections)} face(s)")
        for i in range(len(faces.detections)):
            box = ", ".join(f"{v:.1f}" for v in faces.detections.boxes[i])
            lms = " ".join(f"({x:.1f},{y:.1f})" for x, y in faces.detections.landmarks[i])
            print(f"  face {len(rows)}: box [{box}] score {faces.detections.scores[i]:.3f} landmarks {lms}")
            rows.append(faces.embeddings[i])
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.part.npy")
        np.save(tmp, np.stack(rows) if rows else np.zeros((0, 512), np.float32))
        tmp.replace(out)
        print(f"wrote {len(rows)} embedding(s) to {out}")
    return 0


def compare_backends(settings, images: list, a: BackendSpec, b: BackendSpec) -> dict:
    """Cosine between two backends' embeddings of the same aligned faces (detected once, ONNX Runtime on CPU).

    ``images``: paths, or (name, BGR array) pairs."""
    from dataclasses import replace

    from engines.align import align_faces

    settings = replace(settings, strict_gpu=False)  # both sides are named explicitly, the reference may be a CPU
    # faces are found once, by the reference detector on the CPU, so both sides embed the very same crops
    detector = _analyzer(replace(settings, device="cpu"), BackendSpec("onnxruntime", "cpu"),
                         det_backend="onnxruntime").detector
    crops, names = [], []
    for item in images:
        path, img = item if isinstance(item, tuple) else (item, read_image(item))
        dets = detector.detect(img)
        names += [f"{path}#{i}" for i in range(len(dets))]
        if len(dets):
            crops.append(align_faces(img, dets.landmarks))
    if not crops:
        raise FacestreamError("no face found in the images given to compare: use photos with faces")
    crops_arr = np.concatenate(crops)
    emb_a, emb_b = _embedder(settings, a), _embedder(settings, b)
    ea, eb = emb_a.embed(crops_arr), emb_b.embed(crops_arr)
    cos = np.sum(ea * eb, axis=1)
    worst = int(np.argmin(cos))
    return {"a": emb_a.backend.describe(), "b": emb_b.backend.describe(), "faces": len(cos),
            "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "worst_face": names[worst], "l2_max": float(np.linalg.norm(ea - eb, axis=1).max())}


def cmd_compare(args) -> int:
    settings = load_settings(args)
    a, b = BackendSpec.parse(args.a), BackendSpec.parse(args.b)
    r = compare_backends(settings, args.images, a, b)
    print(f"{r['a']} vs {r['b']} on {r['faces']} face(s): cosine mean {r['cos_mean']:.6f} min {r['cos_min']:.6f} "
          f"(worst {r['worst_face']}), max L2 distance {r['l2_max']:.6f}")
    drift = 1.0 - r["cos_min"]
    if drift > args.max_drift:
        print(f"facestream: error: drift {drift:.6f} exceeds --max-drift {args.max_drift}", file=sys.stderr)
        return 1
    return 0


def cmd_settings(args) -> int:
    settings = load_settings(args)
    if args.example:
        sys.stdout.write(settings.__class__().example())
        return 0
    from dataclasses import fields

    from app.redact import redact

    for f in fields(settings):
        value = getattr(settings, f.name)
        shown = "***" if f.metadata["secret"] and value else redact(str(value))
        print(f"{f.metadata['key']}={shown}")
    return 0
