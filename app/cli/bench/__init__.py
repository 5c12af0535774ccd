"""`facestream bench`: the models (``models``), the whole pipeline against the one-process loop (``pipeline``),
how many live streams one pipeline keeps up with (``streams``); figures read from runs (``analysis``), charts
(``plots``)."""

from __future__ import annotations

from app.cli.bench.models import cmd_bench_models
from app.cli.bench.pipeline import cmd_bench_pipeline


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="measure the models (bench models) or the whole pipeline (bench pipeline)")
    bsub = p.add_subparsers(dest="what", metavar="WHAT", help="models or pipeline")
    bsub.required = True
    m = bsub.add_parser("models", help="faces/s per backend and batch; detector ms per frame")
    m.add_argument("--backends", default="onnxruntime,pytorch",
                   help="comma-separated backend specs; the first is the baseline (default onnxruntime,pytorch)")
    m.add_argument("--batches", default="1,32,128", help="comma-separated batch sizes of faces to time")
    m.add_argument("--seconds", type=float, default=2.0, help="time per measurement (after warm-up)")
    m.add_argument("--image", help="photo for the detector timing (default: a shared scene if present)")
    m.add_argument("--json", help="write the results here (default: print only)")
    m.add_argument("--plot", help="write a PNG chart of faces/s per backend and batch here")
    m.add_argument("--engine-build", action="store_true",
                   help="also time a fresh TensorRT engine build (FP32 and FP16) of both models, if TensorRT is here")
    m.set_defaults(func=cmd_bench_models)

    pl = bsub.add_parser("pipeline", help="the real multi-process pipeline vs the naive one-frame-at-a-time loop")
    pl.add_argument("--source", help="a video file (default VIDEO_SOURCE)")
    pl.add_argument("--json", help="write the results here (default: print only)")
    pl.add_argument("--plot", help="write a PNG timeline of capture→display latency here")
    pl.add_argument("--max-frames", type=int, default=0, help="frames of the source per run (default 0: all)")
    pl.add_argument("--loops", type=int, default=1,
                    help="play the file this many times in the every-frame run (a longer steady window)")
    pl.add_argument("--skip-baseline", action="store_true", help="skip the naive one-frame-at-a-time baseline run")
    pl.add_argument("--skip-live", action="store_true", help="skip the simulated live (real-time replay) run")
    pl.add_argument("--skip-every-frame", action="store_true", help="skip the every-frame file run (with --streams)")
    pl.add_argument("--out", help="also write the every-frame run's annotated video here (costs the encoding)")
    pl.add_argument("--streams", default="",
                    help="comma-separated stream counts (e.g. 1,4,8,16): run that many live copies of the source "
                         "at its frame rate and find the most that keep up (default: none)")
    pl.add_argument("--stream-frames", type=int, default=300, help="frames per stream in each --streams run")
    pl.add_argument("--max-p99-ms", type=float, default=250.0,
                    help="a --streams run keeps up while every stream's p99 latency stays under this")
    pl.set_defaults(func=cmd_bench_pipeline)


