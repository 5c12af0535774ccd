"""The PyTorch CUDA fast path, measured in one run: `python3 bench/gpu_fastpath.py --out DIR`.

- MobileFaceNet (real w600k_mbf weights): eager FP32 at b32 (the baseline), then BN folded + FP16 +
  CUDA graph in four variants (channels_last or NCHW, grouped convs as they are or made dense) at
  b32/128, the best at b1/256 too, kernel profiles, and the best under torch.compile (mode "default":
  fuses conv bias + PReLU + residual) inside our own graph.
- iresnet100 (random weights): FP16 + graph (+ compile) at b128, as a share of the dense FP16 matrix
  peak measured in the same run (model FLOPs = 2 × conv/linear MACs counted with forward hooks).
- GPU RetinaFace on a 1080p frame: upload, resize, normalise, inference, decode, NMS and copy back,
  per frame at batch 1/4/8.

Times are medians after warm-up: CUDA events around device work, a synchronised host clock around
calls that include host work. torch.compile variants run in child processes with a time limit, so a
slow compile cannot eat the run. Writes DIR/gpu_fastpath.json and DIR/gpu_fastpath.png, prints a table.
Imports only engines/ (no app/): runs where torch, torchvision, numpy, opencv and matplotlib are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

MBF_BATCHES = (1, 32, 128, 256)
TARGETS = {"mbf_b128_faces_per_s": 60000, "mbf_b32_speedup_vs_eager_fp32": 4.0, "mbf_b1_ms": 0.5,
           "r100_b128_pct_of_fp16_peak": 50.0, "det_1080p_ms_per_frame": 2.0}


def log(*args) -> None:
    print(*args, flush=True)


# -- timing ------------------------------------------------------------------------------------------
def cuda_ms(fn, warmup: int = 10, iters: int = 50) -> dict:
    """Median (and p10/p90) device milliseconds of ``fn`` by CUDA events around each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    pairs = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        pairs.append((a, b))
    torch.cuda.synchronize()
    return _stats([a.elapsed_time(b) for a, b in pairs])


def wall_ms(fn, warmup: int = 10, iters: int = 50) -> dict:
    """Median host milliseconds of a call that ends synchronised (e.g. with a copy to the host)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return _stats(times)


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"median_ms": statistics.median(ms), "p10_ms": ms[len(ms) // 10], "p90_ms": ms[(len(ms) * 9) // 10],
            "n": len(ms)}


# -- pieces ------------------------------------------------------------------------------------------
def environment() -> dict:
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(0), "sm": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(), "numpy": np.__version__,
        "cudnn_allow_tf32_default": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32_default": torch.backends.cuda.matmul.allow_tf32,
    }


def fp16_matmul_peak() -> dict:
    """Dense FP16 tensor-core rate through torch.matmul (cuBLAS), random data, a few square sizes."""
    best = {}
    for n in (4096, 8192, 12288):
        a = torch.randn(n, n, device="cuda", dtype=torch.float16)
        b = torch.randn(n, n, device="cuda", dtype=torch.float16)
        t = cuda_ms(lambda a=a, b=b: torch.matmul(a, b), warmup=5, iters=20)
        tflops = 2 * n**3 / (t["median_ms"] * 1e-3) / 1e12
        log(f"  fp16 matmul {n}^3: {t['median_ms']:.3f} ms = {tflops:.0f} TFLOP/s")
        if tflops > best.get("tflops", 0):
            best = {"n": n, "tflops": tflops, **t}
        del a, b
    return best


def mbf_module():
    from engines.recognizers.mobilefacenet import mobilefacenet_from_onnx

    return mobilefacenet_from_onnx(ASSETS / "models" / "w600k_mbf.onnx")


def faces_row(kind: str, batch: int, t: dict) -> dict:
    return {"variant": kind, "batch": batch, **t, "faces_per_s": batch / (t["median_ms"] * 1e-3)}


#: fast-path variants tried for each recogniser: all fold BN, run FP16 and replay a CUDA graph
VARIANTS = {
    "fp16 CL": {"channels_last": True},
    "fp16 NCHW": {"channels_last": False},
    "fp16 CL dense-groups": {"channels_last": True, "densify_groups": 4},
    "fp16 NCHW dense-groups": {"channels_last": False, "densify_groups": 4},
}


def bench_fast(module, batches, compile_mode: str | None, label: str, sink: list, deadline: float,
               **variant) -> None:
    """Fast path (fold + FP16 + layout + graph) at each batch; appends rows as it goes."""
    from engines.gpu.optimize import FastModule

    fast = FastModule(module, compile_mode=compile_mode, **variant)
    fmt = torch.channels_last if variant.get("channels_last", True) else torch.contiguous_format
    for b in batches:
        if time.time() > deadline:
            log(f"  {label} b{b}: skipped, out of time")
            break
        x = (torch.rand(b, 3, 112, 112, device="cuda") * 2 - 1).half().contiguous(memory_format=fmt)
        t0 = time.time()
        fast(x)  # capture (and compile) outside the timing
        torch.cuda.synchronize()
        prep_s = time.time() - t0
        t = cuda_ms(lambda fast=fast, x=x: fast(x), warmup=20, iters=100)
        row = faces_row(label, b, t)
        row["prepare_s"] = prep_s
        row["options"] = {k: str(v) if isinstance(v, torch.dtype) else v for k, v in variant.items()}
        row["options"]["compile_mode"] = compile_mode
        sink.append(row)
        log(f"  {label:<40} b{b:<4} {t['median_ms']:8.3f} ms  {row['faces_per_s']:>10.0f} faces/s"
            f"  (capture{'+compile' if compile_mode else ''} {prep_s:.1f} s)")


def top_kernels(module, x, rows: int = 12) -> str:
    """The kernels that take the device time of one eager forward pass (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for _ in range(3):
            module(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                module(x)
            torch.cuda.synchronize()
    averages = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total"):
        try:
            return averages.table(sort_by=key, row_limit=rows, max_name_column_width=70)
        except Exception:  # the column's name changed across torch versions
            continue
    return ""


def fastest(rows: list[dict], batch: int) -> dict | None:
    rows = [r for r in rows if r["batch"] == batch and r["variant"].startswith("fast")]
    return min(rows, key=lambda r: r["median_ms"]) if rows else None


def bench_mbf(deadline: float, quick: bool = False) -> dict:
    from engines.gpu.optimize import prepare_module

    module = mbf_module()
    rows: list[dict] = []
    x32 = torch.rand(32, 3, 112, 112, device="cuda") * 2 - 1
    eager = mbf_module().cuda().eval()
    with torch.inference_mode():
        t = cuda_ms(lambda: eager(x32), warmup=20, iters=100)
        rows.append(faces_row("eager fp32 (cuDNN TF32 on: default)", 32, t))
        torch.backends.cudnn.allow_tf32 = False
        t = cuda_ms(lambda: eager(x32), warmup=20, iters=100)
        rows.append(faces_row("eager fp32 (TF32 off)", 32, t))
        torch.backends.cudnn.allow_tf32 = True
        half = mbf_module().cuda().half().to(memory_format=torch.channels_last).eval()
        xh = x32.half().contiguous(memory_format=torch.channels_last)
        t = cuda_ms(lambda: half(xh), warmup=20, iters=100)
        rows.append(faces_row("eager fp16 channels_last", 32, t))
        half = mbf_module().cuda().half().eval()
        t = cuda_ms(lambda: half(x32.half()), warmup=20, iters=100)
        rows.append(faces_row("eager fp16 NCHW", 32, t))
    for r in rows:
        log(f"  {r['variant']:<40} b32   {r['median_ms']:8.3f} ms  {r['faces_per_s']:>10.0f} faces/s")
    bench_fast(module, (32,), None, "fast: fp32/TF32 NCHW + graph (no fp16)", rows, deadline,
               channels_last=False, dtype=torch.float32)
    for name, opts in VARIANTS.items():
        if quick and "NCHW" in name:
            continue
        bench_fast(module, (32, 128), None, f"fast: {name}", rows, deadline, **opts)
    best = fastest(rows, 128)
    opts = {k: v for k, v in best["options"].items() if k != "compile_mode"}
    log(f"  best at b128: {best['variant']}")
    bench_fast(module, (1, 256), None, best["variant"], rows, deadline, **opts)
    out = {"rows": rows, "best_variant": best["variant"], "best_options": opts, "profiles": {}}
    x128 = torch.rand(128, 3, 112, 112, device="cuda") * 2 - 1
    for name, o in (("fp16 CL", VARIANTS["fp16 CL"]), (best["variant"], opts)):
        if quick or time.time() > deadline or name in out["profiles"]:
            continue
        fmt = torch.channels_last if o.get("channels_last", True) else torch.contiguous_format
        prepared = prepare_module(module, densify_groups=o.get("densify_groups", 0),
                                  channels_last=o.get("channels_last", True))
        table = top_kernels(prepared, x128.half().contiguous(memory_format=fmt))
        out["profiles"][name] = table
        log(f"  top kernels, {name}, b128 eager (5 passes):\n{table}")
    return out


def bench_r100(deadline: float, peak_tflops: float, quick: bool = False) -> dict:
    from engines.gpu.optimize import count_macs
    from engines.recognizers.iresnet import iresnet100

    module = iresnet100()
    macs = count_macs(module.cuda(), torch.rand(1, 3, 112, 112, device="cuda"))
    module = module.cpu()
    rows: list[dict] = []
    bench_fast(module, (128,), None, "fast: fp16 CL", rows, deadline, channels_last=True)
    if not quick:
        bench_fast(module, (128,), None, "fast: fp16 NCHW", rows, deadline, channels_last=False)
    out = {"weights": "random (no released iresnet100 weights here; speed does not depend on them)",
           "macs_per_face": macs, "flops_per_face": 2 * macs, "rows": rows}
    best = fastest(rows, 128)
    out["best_options"] = {k: v for k, v in best["options"].items() if k != "compile_mode"}
    annotate_r100(out, peak_tflops)
    return out


def annotate_r100(r100: dict, peak_tflops: float) -> None:
    for row in r100["rows"]:
        row["tflops"] = r100["flops_per_face"] * row["batch"] / (row["median_ms"] * 1e-3) / 1e12
        row["pct_of_fp16_peak"] = 100 * row["tflops"] / peak_tflops
        log(f"  {row['variant']:<34} b{row['batch']}: {row['tflops']:.0f} TFLOP/s = "
            f"{row['pct_of_fp16_peak']:.1f}% of the {peak_tflops:.0f} TFLOP/s fp16 matmul peak")


def bench_detector(deadline: float, quick: bool = False) -> dict:
    import cv2

    from engines.gpu.detector import GpuRetinaFace

    frame = cv2.imread(str(ASSETS / "media" / "scenes" / "obama-1080p.jpg"))
    pth = ASSETS / "models" / "retinaface_mnet025.pth"
    out: dict = {"frame": list(frame.shape), "layouts": {}, "rows": []}
    for layout, cl in (("channels_last", True), ("NCHW", False)):  # the network's layout: pick the faster
        det = GpuRetinaFace.from_checkpoint(pth, channels_last=cl)
        det.detect(frame)
        out["layouts"][layout] = wall_ms(lambda det=det: det.detect(frame), iters=100)["median_ms"]
        log(f"  detector b1, network {layout}: {out['layouts'][layout]:.3f} ms from a numpy frame")
    cl = out["layouts"]["channels_last"] <= out["layouts"]["NCHW"]
    det = GpuRetinaFace.from_checkpoint(pth, channels_last=cl)
    out.update(input_size=list(det.input_size), nms=det.nms_impl, channels_last=cl)
    for b in (1, 4, 8):
        if time.time() > deadline:
            break
        frames = np.stack([frame] * b)
        pinned = det.host_buffer(b, *frame.shape[:2])
        pinned[:] = frames
        faces = [len(d) for d in det.detect_batch(frames)]
        t_np = wall_ms(lambda frames=frames: det.detect_batch(frames), iters=100)
        t_pin = wall_ms(lambda pinned=pinned: det.detect_batch(pinned), iters=100)
        t_pageable = wall_ms(lambda frames=frames: det.detect_tensor(torch.from_numpy(frames).cuda()), iters=100)
        # where the time goes: upload (pinned → graph input), the graph (resize … NMS), copy back + host
        plan = det._plan(b, *frame.shape[:2])
        static = plan["static"]
        src = torch.from_numpy(pinned)
        t_up = cuda_ms(lambda static=static, src=src: static.copy_(src, non_blocking=True), iters=100)
        t_graph = cuda_ms(lambda static=static: det._graphs.replay(static), iters=100)
        outputs = det._graphs.replay(static)
        t_post = wall_ms(lambda outputs=outputs, plan=plan: det._finish(outputs, plan), iters=100)
        row = {"batch": b, "faces_per_frame": faces, "from_numpy": t_np, "from_pinned": t_pin,
               "from_pageable_tensor": t_pageable, "upload": t_up, "graph": t_graph, "copy_back_and_host": t_post,
               "ms_per_frame_from_numpy": t_np["median_ms"] / b, "ms_per_frame_from_pinned": t_pin["median_ms"] / b,
               "ms_per_frame_pageable_upload": t_pageable["median_ms"] / b}
        out["rows"].append(row)
        log(f"  detector b{b}: {row['ms_per_frame_from_numpy']:.3f} ms/frame from a numpy frame, "
            f"{row['ms_per_frame_from_pinned']:.3f} from the pinned buffer, "
            f"{row['ms_per_frame_pageable_upload']:.3f} with a plain .cuda() upload | batch: upload "
            f"{t_up['median_ms']:.3f}, graph {t_graph['median_ms']:.3f}, copy back+host {t_post['median_ms']:.3f} ms"
            f" | faces {faces}")
    if not quick and time.time() < deadline:
        x = torch.rand(1, 3, 640, 640, device="cuda") * 255 - 117
        fmt = torch.channels_last if cl else torch.contiguous_format
        out["profile"] = top_kernels(det.net, x.half().contiguous(memory_format=fmt))
        log(f"  top kernels, RetinaFace network 640x640 b1 eager:\n{out['profile']}")
    # the CPU numpy adapter on the same frame, as a sanity check of what was timed
    from engines.backends.pytorch_backend import PyTorchBackend
    from engines.detectors.retinaface import RetinaFace
    from engines.detectors.retinaface_net import load_retinaface

    ref = RetinaFace(PyTorchBackend(load_retinaface(pth), device="cpu"))
    a, g = ref.detect(frame), det.detect(frame)
    out["cpu_reference_faces"] = len(a)
    if len(a) and len(g):
        from engines.nms import iou_matrix

        out["min_box_iou_vs_cpu"] = float(iou_matrix(a.boxes, g.boxes).max(1).min())
    return out


# -- child process: one torch.compile variant ----------------------------------------------------------
def child(args) -> None:
    torch.backends.cudnn.benchmark = True
    deadline = time.time() + args.child_seconds
    batches = [int(b) for b in args.batches.split(",")]
    if args.child == "mbf":
        module = mbf_module()
    else:
        from engines.recognizers.iresnet import iresnet100

        module = iresnet100()
    opts = json.loads(args.options or "{}")
    label = f"fast: compile({args.compile_mode}) " + ("CL" if opts.get("channels_last", True) else "NCHW") + (
        " dense-groups" if opts.get("densify_groups") else "")

    class Sink(list):
        def append(self, row):  # write after every batch: a kill keeps what was measured
            super().append(row)
            Path(args.child_out).write_text(json.dumps(list(self)))

    bench_fast(module, batches, args.compile_mode, label, Sink(), deadline, **opts)


def run_child(what: str, batches: str, mode: str, seconds: float, tmp: Path, options: dict) -> list[dict]:
    out = tmp / f"child_{what}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", what, "--batches", batches, "--compile-mode", mode,
           "--child-out", str(out), "--child-seconds", str(max(10.0, seconds - 20)), "--assets", str(ASSETS),
           "--options", json.dumps(options)]
    log(f"  [{what}] torch.compile({mode}) in a child process, at most {seconds:.0f} s")
    try:
        subprocess.run(cmd, timeout=seconds, check=False)
    except subprocess.TimeoutExpired:
        log(f"  [{what}] compile child stopped at its time limit; keeping what it measured")
    return json.loads(out.read_text()) if out.exists() else []


# -- report ------------------------------------------------------------------------------------------
def summarise(res: dict) -> dict:
    mbf = res.get("mbf", {}).get("rows", [])
    eager = next((r for r in mbf if r["variant"].startswith("eager fp32 (cuDNN")), None)

    def best(batch):
        return fastest(mbf, batch)

    s = {}
    if best(128):
        s["mbf_b128_faces_per_s"] = best(128)["faces_per_s"]
    if best(32) and eager:
        s["mbf_b32_speedup_vs_eager_fp32"] = eager["median_ms"] / best(32)["median_ms"]
    if best(1):
        s["mbf_b1_ms"] = best(1)["median_ms"]
    r100 = res.get("r100", {}).get("rows", [])
    if r100:
        s["r100_b128_pct_of_fp16_peak"] = max(r["pct_of_fp16_peak"] for r in r100)
    det = res.get("detector", {}).get("rows", [])
    if det:
        s["det_1080p_ms_per_frame"] = det[0]["ms_per_frame_from_numpy"]
        comp = res["detector"].get("compiled")
        if comp:
            s["det_1080p_ms_per_frame"] = min(s["det_1080p_ms_per_frame"], comp["from_numpy"]["median_ms"])
    reached = {}
    for k, v in s.items():
        target = TARGETS[k]
        reached[k] = {"value": v, "target": target, "met": v <= target if k.endswith("_ms") or "ms_per" in k
                      else v >= target}
    return reached


def print_table(res: dict) -> None:
    log("\n=== summary ===")
    env = res["env"]
    log(f"{env['gpu']} (sm {env['sm']}), torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}")
    log(f"fp16 matmul peak: {res['peak']['tflops']:.0f} TFLOP/s")
    log(f"{'model / variant':<58}{'batch':>6}{'ms':>10}{'faces/s':>12}")
    for r in res.get("mbf", {}).get("rows", []):
        log(f"{'MobileFaceNet ' + r['variant']:<58}{r['batch']:>6}{r['median_ms']:>10.3f}{r['faces_per_s']:>12.0f}")
    for r in res.get("r100", {}).get("rows", []):
        log(f"{'iresnet100 (random) ' + r['variant']:<58}{r['batch']:>6}{r['median_ms']:>10.3f}"
            f"{r['faces_per_s']:>12.0f}  {r['pct_of_fp16_peak']:.1f}% of peak")
    for r in res.get("detector", {}).get("rows", []):
        log(f"{'RetinaFace 1080p GPU pipeline (ms/frame)':<58}{r['batch']:>6}{r['ms_per_frame_from_numpy']:>10.3f}"
            f"   (from pinned buffer {r['ms_per_frame_from_pinned']:.3f})")
    comp = res.get("detector", {}).get("compiled")
    if comp:
        log(f"{'RetinaFace 1080p, network compiled (ms/frame)':<58}{1:>6}{comp['from_numpy']['median_ms']:>10.3f}")
    log(f"peak device memory: {res.get('peak_memory_mib', 0):.0f} MiB allocated (main process)")
    for k, v in res.get("targets", {}).items():
        log(f"target {k}: {v['value']:.3f} vs {v['target']} -> {'MET' if v['met'] else 'missed'}")


def plot(res: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    mbf = res.get("mbf", {}).get("rows", [])
    variants = sorted({r["variant"] for r in mbf if r["variant"].startswith("fast")})
    for v in variants:
        rows = sorted((r for r in mbf if r["variant"] == v), key=lambda r: r["batch"])
        ax.plot([r["batch"] for r in rows], [r["faces_per_s"] for r in rows], marker="o", label=v)
    for r in mbf:
        if r["variant"].startswith("eager"):
            ax.scatter([r["batch"]], [r["faces_per_s"]], marker="x", label=r["variant"])
    ax.axhline(TARGETS["mbf_b128_faces_per_s"], color="grey", ls="--", lw=0.8, label="target at b128")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("faces/s")
    ax.set_title("MobileFaceNet w600k_mbf")
    ax.legend(fontsize=7)
    ax = axes[1]
    r100 = res.get("r100", {}).get("rows", [])
    ax.bar([r["variant"].replace("fast", "").strip(" :+") or "fast" for r in r100],
           [r["pct_of_fp16_peak"] for r in r100])
    ax.axhline(TARGETS["r100_b128_pct_of_fp16_peak"], color="grey", ls="--", lw=0.8)
    ax.set_ylabel("% of measured fp16 matmul peak")
    ax.set_title("iresnet100 b128 (random weights)")
    ax.tick_params(axis="x", labelsize=7)
    ax = axes[2]
    det = res.get("detector", {}).get("rows", [])
    xs = np.arange(len(det))
    ax.bar(xs - 0.2, [r["ms_per_frame_from_numpy"] for r in det], 0.4, label="from numpy frame")
    ax.bar(xs + 0.2, [r["ms_per_frame_from_pinned"] for r in det], 0.4, label="from pinned buffer")
    ax.set_xticks(xs, [f"b{r['batch']}" for r in det])
    ax.axhline(TARGETS["det_1080p_ms_per_frame"], color="grey", ls="--", lw=0.8, label="target")
    ax.set_ylabel("ms per 1080p frame")
    ax.set_title("RetinaFace GPU pipeline (upload → faces on host)")
    ax.legend(fontsize=7)
    fig.suptitle(f"{res['env']['gpu']}, torch {res['env']['torch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    global ASSETS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/gpu_fastpath"))
    p.add_argument("--assets", type=Path, default=None,
                   help="folder with models/ and media/ (default .gpu_assets, else ../shared)")
    p.add_argument("--budget-s", type=float, default=420.0, help="stop starting new measurements after this")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode for the compiled variants ('none' skips them); max-autotune modes "
                        "autotune every convolution and need minutes per batch size")
    p.add_argument("--quick", action="store_true",
                   help="skip the NCHW variants and the kernel profiles (leaves time for the compiled variants)")
    p.add_argument("--child", choices=("mbf", "r100"), help=argparse.SUPPRESS)
    p.add_argument("--batches", default="", help=argparse.SUPPRESS)
    p.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    p.add_argument("--child-seconds", type=float, default=0, help=argparse.SUPPRESS)
    p.add_argument("--options", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    ASSETS = args.assets or next(
        (d for d in (REPO / ".gpu_assets", REPO.parent / "shared") if (d / "models").is_dir()), REPO / ".gpu_assets")
    if args.child:
        child(args)
        return 0
    if not torch.cuda.is_available():
        log("no CUDA device: this benchmark measures the GPU path only")
        return 2
    start = time.time()
    deadline = start + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "gpu_fastpath.json"
    torch.backends.cudnn.benchmark = True
    res: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "assets": str(ASSETS)}

    def save() -> None:
        res["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        res["peak_memory_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        res["elapsed_s"] = time.time() - start
        res["targets"] = summarise(res)
        json_path.write_text(json.dumps(res, indent=1))

    res["env"] = environment()
    log(json.dumps(res["env"]))
    log("== fp16 matmul peak")
    res["peak"] = fp16_matmul_peak()
    save()
    log("== MobileFaceNet (w600k_mbf, real weights)")
    res["mbf"] = bench_mbf(deadline, args.quick)
    save()
    log("== iresnet100 (random weights)")
    res["r100"] = bench_r100(deadline, res["peak"]["tflops"], args.quick)
    save()
    log("== RetinaFace GPU detector, 1080p")
    res["detector"] = bench_detector(deadline, args.quick)
    save()
    torch.cuda.empty_cache()
    if args.compile_mode != "none":
        tmp = args.out / ".children"
        tmp.mkdir(exist_ok=True)
        for what, batches, share in (("mbf", "128,32,1", 0.45), ("r100", "128", 1.0)):
            left = deadline - time.time()
            if left < 45:
                log(f"== compile {what}: skipped, {left:.0f} s left")
                continue
            log(f"== {what} under torch.compile")
            key = "mbf" if what == "mbf" else "r100"
            rows = run_child(what, batches, args.compile_mode, left * share, tmp, res[key]["best_options"])
            res[key]["rows"].extend(rows)
            if what == "r100":
                annotate_r100(res["r100"], res["peak"]["tflops"])
            save()
        for f in tmp.glob("*.json"):
            f.unlink()
        tmp.rmdir()
    save()
    report(res, args.out)
    if args.compile_mode != "none" and deadline - time.time() > 60:
        log("== RetinaFace GPU detector with the network under torch.compile")
        try:
            res["detector"]["compiled"] = bench_detector_compiled(args.compile_mode, res["detector"]["channels_last"])
        except Exception as exc:  # keep everything measured so far
            log(f"  compiled detector failed: {exc!r}")
            res["detector"]["compiled_error"] = repr(exc)
        save()
        report(res, args.out)
    return 0


def report(res: dict, out: Path) -> None:
    try:
        plot(res, out / "gpu_fastpath.png")
    except Exception as exc:  # the numbers matter more than the picture
        log(f"plot failed: {exc!r}")
    print_table(res)


def bench_detector_compiled(mode: str, channels_last: bool) -> dict:
    import cv2

    from engines.gpu.detector import GpuRetinaFace

    frame = cv2.imread(str(ASSETS / "media" / "scenes" / "obama-1080p.jpg"))
    t0 = time.time()
    det = GpuRetinaFace.from_checkpoint(ASSETS / "models" / "retinaface_mnet025.pth", compile_mode=mode,
                                        channels_last=channels_last)
    faces = len(det.detect(frame))
    prep = time.time() - t0
    t = wall_ms(lambda: det.detect(frame), iters=100)
    plan = det._plan(1, *frame.shape[:2])
    t_graph = cuda_ms(lambda: det._graphs.replay(plan["static"]), iters=100)
    log(f"  detector b1 compiled({mode}): {t['median_ms']:.3f} ms/frame from a numpy frame, graph "
        f"{t_graph['median_ms']:.3f} ms, {faces} face(s), compile+capture {prep:.0f} s")
    return {"mode": mode, "from_numpy": t, "graph": t_graph, "faces": faces, "prepare_s": prep}


ASSETS = REPO / ".gpu_assets"

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
