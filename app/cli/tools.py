"""`models`, `samples`, `embed`, `compare`, `settings`: the inference core from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from app import samples
from app.cli.common import BackendSpec, load_settings, read_image
from app.errors import FacestreamError


def add_parsers(sub) -> None:
    p = sub.add_parser("models", help="fetch, export or list model files (list shows each model's licence)")
    p.add_argument("action", choices=("fetch", "export", "list"),
                   help="fetch: download (or copy from the mirror) and sha256-check the model files into "
                        "CHECKPOINT_DIR; export: write retinaface_mnet025.onnx from the .pth; "
                        "list: each file's size, state and licence")
    p.add_argument("--mirror", metavar="DIR",
                   help="copy from this folder instead of downloading (default: the FACESTREAM_MODEL_MIRROR "
                        "environment variable, else download)")
    p.add_argument("--force", action="store_true", help="export again even if the ONNX exists")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("samples", help="fetch or list the sample people and clip the quickstart uses")
    p.add_argument("action", choices=("fetch", "list"),
                   help="fetch: download (or copy from the mirror) and sha256-check every sample file; "
                        "list: each file's state and licence")
    p.add_argument("--dest", metavar="DIR", default=samples.DEFAULT_DIR,
                   help="samples folder: people/ (one sub-folder per person) and video/")
    p.add_argument("--mirror", metavar="DIR",
                   help=f"copy from this folder (same layout) instead of downloading (default: the "
                        f"{samples.MIRROR_ENV} environment variable, else download)")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("embed", help="detect, align and embed the faces of images; write the embeddings")
    p.add_argument("images", nargs="+", help="photos (JPEG, PNG, ...)")
    p.add_argument("--out", metavar="FILE", help="write embeddings to FILE.npy, one row per face in print order "
                                                 "(default: print only)")
    p.add_argument("--backend", help="embedding backend spec, e.g. onnxruntime or pytorch:cuda:fp16 "
                                     "(default: EMBEDDING_BACKEND)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("compare", help="embedding parity between two backends on real aligned faces")
    p.add_argument("images", nargs="+", help="photos with faces (detected once, by ONNX Runtime on the CPU)")
    p.add_argument("--a", default="onnxruntime", help="first backend spec (default onnxruntime)")
    p.add_argument("--b", default="pytorch", help="second backend spec (default pytorch)")
    p.add_argument("--max-drift", type=float, default=0.001,
                   help="fail when 1 - min cosine exceeds this (default 0.001)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("settings", help="print every setting (or .env.example text with --example)")
    p.add_argument("--example", action="store_true", help="print .env.example: every key, its default and meaning")
    p.set_defaults(func=cmd_settings)


def _list_models(ckpt: Path) -> None:
    """One line per model file: name, size, state, licence, what it is (shipped, exported, then brought)."""
    from engines.fetch import DERIVED, USER_SUPPLIED, manifest
    from engines.model_zoo import MODELS

    rows = [(name, f"{e['size']:,d} B", e["license"], e["what"]) for name, e in manifest().items()]
    rows += [(name, "(exported)", manifest()[src]["license"], f"made from {src} by `facestream models export`")
             for name, src in DERIVED.items()]
    rows += [(m.onnx, "(bring it)", USER_SUPPLIED.get(m.onnx, "unknown: see where you got it"), m.description)
             for m in MODELS.values() if m.onnx not in manifest() and m.onnx not in DERIVED]
    width = max(len(r[2]) for r in rows)
    for name, size, licence, what in rows:
        state = "present" if (ckpt / name).is_file() else "missing"
        print(f"{name:24s} {size:>14s}  {state:8s} licence: {licence:{width}s}  {what}")


def cmd_samples(args) -> int:
    if args.action == "list":
        for rel, entry in samples.manifest().items():
            print(f"{rel:36s} {entry['size']:>10,d} B  {samples.state(args.dest, rel):8s} licence: {entry['license']}")
        return 0
    dest = samples.ensure_samples(args.dest, mirror=args.mirror)
    print(f"next: facestream enrol --folder {dest / samples.PEOPLE} && "
          f"facestream run --source {dest / samples.CLIP}", file=sys.stderr)
    return 0


def cmd_models(args) -> int:
    from engines.fetch import ensure_models, export_retinaface

    settings = load_settings(args)
    ckpt = Path(settings.checkpoint_dir)
    if args.action == "list":
        _list_models(ckpt)
        return 0
    if args.action == "fetch":
        ensure_models(ckpt, mirror=args.mirror, export=False)
        print(f"models ready in {ckpt}; next: `facestream models export`. Licences: `facestream models list` "
              "(insightface's models are for non-commercial research only)", file=sys.stderr)
        return 0
    export_retinaface(ckpt, force=args.force)
    return 0


def _analyzer(settings, embed_spec: BackendSpec | None = None, det_backend: str | None = None):
    from app.stages.models import model_kwargs
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
    from app.stages.models import model_kwargs
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
