"""Every setting, typed, from the environment with ``.env`` loaded first.

Each field names its environment key, default and meaning; ``.env.example`` is generated from this
table (``facestream settings --example``) and a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from app.errors import FacestreamError
from app.redact import add_secret
from engines.device import BadDevice, parse_device

BACKENDS = ("onnxruntime", "pytorch", "tensorrt")
DISPLAY_MODES = ("window", "headless", "none")
#: old key -> its new name. ByteTrack's MATCH_THRESH was one letter group away from MATCH_THRESHOLD (which decides
#: who a face is); both ByteTrack keys now say TRACK_. The old names still work, with one warning.
RENAMED = {"MATCH_THRESH": "TRACK_MATCH_THRESH", "TRACK_THRESH": "TRACK_HIGH_THRESH"}
#: old keys that no longer do anything -> what to use instead (one warning when a .env or the environment sets one)
RETIRED = {"STORE_UNKNOWN": "unknown faces are kept as searchable sightings now: set SIGHTINGS=all "
                            "(facestream sightings --photo P.jpg) and remove STORE_UNKNOWN"}
#: keys a .env may hold that are not settings: read from the real environment by other parts (the model mirror,
#: the TensorRT flavour, the engine store and its S3 credentials, ONNX Runtime's threads) or by docker compose
ENV_ONLY_PREFIXES = ("FACESTREAM_", "AWS_", "COMPOSE_", "ENGINE_STORE")
ENV_ONLY_KEYS = {"ORT_THREADS"}
OVERLAY_MODES = ("compact", "full", "off")
SIGHTINGS_MODES = ("off", "known", "all")
BLUR_MODES = ("none", "unknown", "all")


def _key(key: str, help: str, choices: tuple[str, ...] | None = None, secret: bool = False,
         lo: float | None = None, hi: float | None = None, default: Any = None):
    return field(default=default, metadata={"key": key, "help": help, "choices": choices, "secret": secret,
                                            "lo": lo, "hi": hi})


@dataclass(frozen=True)
class Settings:
    # source
    video_source: str = _key("VIDEO_SOURCE", "file path, webcam index (0), rtsp://… or http(s)://… MJPEG", default="")
    every_frame: str = _key("EVERY_FRAME", "auto (files: every frame, live: drop stale), true or false",
                            ("auto", "true", "false"), default="auto")
    reconnect_max_delay: float = _key("RECONNECT_MAX_DELAY", "longest wait in seconds between reconnects to a "
                                      "live source (exponential backoff from 0.5 s)", lo=0.5, default=30.0)
    decode_threads: int = _key("DECODE_THREADS", "FFmpeg threads per source's decoder (0: auto, an equal share of "
                               "the cores, 2 to 8)", lo=0, hi=64, default=0)
    # models
    checkpoint_dir: str = _key("CHECKPOINT_DIR", "folder holding model files and engines", default="checkpoints")
    detector_model: str = _key("DETECTOR_MODEL", "face detector", ("retinaface_mnet025", "scrfd_500m"),
                               default="retinaface_mnet025")
    embedder_model: str = _key("EMBEDDER_MODEL", "face recogniser", ("w600k_mbf", "w600k_r50", "glintr100"),
                               default="w600k_mbf")
    detector_backend: str = _key("DETECTOR_BACKEND", "backend of the detector", BACKENDS, default="onnxruntime")
    embedding_backend: str = _key("EMBEDDING_BACKEND", "backend of the recogniser", BACKENDS, default="onnxruntime")
    device: str = _key("DEVICE", "auto, cpu or cuda[:N]", default="auto")
    gpu_precision: str = _key("GPU_PRECISION", "arithmetic on the GPU", ("fp16", "fp32"), default="fp16")
    gpu_compile: bool = _key("GPU_COMPILE", "torch.compile the GPU fast path (about 2x the embedder's throughput, "
                             "6-13 s more start-up per batch size)", default=False)
    strict_gpu: bool = _key("STRICT_GPU", "true: anything but the GPU path is an error at start-up", default=False)
    det_size: int = _key("DET_SIZE", "detector input side in pixels (frames are letterboxed to it)",
                         lo=64, hi=4096, default=640)
    det_threshold: float = _key("DET_THRESHOLD", "minimum face score", lo=0.0, hi=1.0, default=0.5)
    nms_threshold: float = _key("NMS_THRESHOLD", "IoU above which overlapping boxes are merged",
                                lo=0.0, hi=1.0, default=0.4)
    min_face: int = _key("MIN_FACE", "ignore faces narrower than this many pixels", lo=0, default=0)
    max_faces: int = _key("MAX_FACES", "most faces kept per frame (highest scores first)", lo=1, hi=512,
                          default=64)
    embed_batch: int = _key("EMBED_BATCH", "largest batch of faces given to the recogniser", lo=1, hi=1024,
                            default=32)
    detect_batch: int = _key("DETECT_BATCH", "most frames (of any streams) detected in one batch", lo=1, hi=64,
                             default=8)
    batch_wait_ms: float = _key("BATCH_WAIT_MS", "how long detection and embedding wait for more records to fill "
                                "a batch (what is already queued is always taken)", lo=0.0, hi=1000.0, default=2.0)
    embed_interval: int = _key("EMBED_INTERVAL", "embed a tracked face every this many frames (1: every frame; "
                               "new tracks are embedded at once; 0: auto, 1 on a GPU and 3 on a CPU); the box, "
                               "id and name are drawn on every frame", lo=0, hi=1000, default=0)
    infer_threads: int = _key("INFER_THREADS", "CPU threads per inference stage (0: auto, half the cores "
                              "each for detection and embedding, which run side by side)", lo=0, hi=256, default=0)
    # identity
    match_threshold: float = _key("MATCH_THRESHOLD", "cosine similarity above which a face is a known person",
                                  lo=-1.0, hi=1.0, default=0.35)
    track_thresh: float = _key("TRACK_HIGH_THRESH", "ByteTrack: detections scoring above this are matched to "
                               "tracks first (formerly TRACK_THRESH)", lo=0.0, hi=1.0, default=0.5)
    match_thresh: float = _key("TRACK_MATCH_THRESH", "ByteTrack: largest match cost (1 - IoU x score) at which a "
                               "box still continues a track (formerly MATCH_THRESH)", lo=0.0, hi=1.0, default=0.8)
    track_buffer: int = _key("TRACK_BUFFER", "frames (at 30 fps) a lost track is kept", lo=1, default=30)
    drift_threshold: float = _key("DRIFT_THRESHOLD", "cosine distance of a track's embedding from its last "
                                  "query that triggers a new gallery query", lo=0.0, hi=2.0, default=0.15)
    identity_break: float = _key("IDENTITY_BREAK", "a track whose face is less similar than this to its own "
                                 "running embedding (another person in its box) becomes a new track",
                                 lo=-1.0, hi=1.0, default=0.3)
    refresh_frames: int = _key("REFRESH_FRAMES", "frames between slow re-checks of a track", lo=1, default=30)
    # sightings and privacy (README: "Sightings")
    sightings: str = _key("SIGHTINGS", "store each finished track's best face as a searchable sighting (facestream "
                          "sightings): off, known (enrolled people only) or all (strangers too)", SIGHTINGS_MODES,
                          default="known")
    sightings_days: float = _key("SIGHTINGS_DAYS", "days a sighting and its snapshot are kept (0: forever); pruned "
                                 "at start and hourly", lo=0.0, default=30.0)
    privacy_blur: str = _key("PRIVACY_BLUR", "blur faces on screen, in the stream and the output file: none, "
                             "unknown (faces not enrolled) or all; with it, unknown faces are never stored as "
                             "sightings", BLUR_MODES, default="none")
    # gallery
    qdrant_url: str = _key("QDRANT_URL", "Qdrant server URL (credentials in it are masked in logs); empty: the "
                           "embedded engine under QDRANT_PATH", default="")
    qdrant_path: str = _key("QDRANT_PATH", "folder of the embedded gallery, and (with a server too) of the kept "
                            "enrolment photos and the spool of enrolments waiting for the server",
                            default="qdrant_data")
    qdrant_api_key: str = _key("QDRANT_API_KEY", "API key of the Qdrant server", secret=True, default="")
    qdrant_collection: str = _key("QDRANT_COLLECTION", "collection (or embedded shard) name", default="faces")
    qdrant_grpc: bool = _key("QDRANT_GRPC", "talk gRPC to the Qdrant server", default=False)
    qdrant_wait_s: float = _key("QDRANT_WAIT_S", "seconds `run` waits at start for the Qdrant server to answer "
                                "before giving up with an error (a server starting beside it)", lo=0.0, hi=3600.0,
                                default=0.0)
    # display
    display: str = _key("DISPLAY_MODE", "window, headless (write OUTPUT / serve the web app) or none",
                        DISPLAY_MODES, default="window")
    output: str = _key("OUTPUT", "annotated video file written in headless mode", default="")
    serve_port: int = _key("SERVE_PORT", "serve the web app (live view, face library, REST API) on this port "
                           "(0: off)", lo=0, hi=65535, default=0)
    serve_host: str = _key("SERVE_HOST", "address the web app binds to; any but loopback needs API_TOKEN "
                           "(docker-compose.yml binds 0.0.0.0 inside its container)", default="127.0.0.1")
    api_token: str = _key("API_TOKEN", "token every web and API request must carry (Authorization: Bearer, or the "
                          "page's login); required to serve on a non-loopback address, so docker-compose.yml (which "
                          "serves on 0.0.0.0 in its container) takes it from here", secret=True, default="")
    upload_max_mb: float = _key("UPLOAD_MAX_MB", "largest photo the web app and API accept, in MB",
                                lo=0.1, hi=100.0, default=10.0)
    overlay: str = _key("OVERLAY", "stats overlay on the video: compact (two translucent lines), full (a "
                        "translucent line per stage) or off; the o key cycles it in the window", OVERLAY_MODES,
                        default="compact")
    # runtime
    stage_restarts: int = _key("STAGE_RESTARTS", "restarts allowed per minute for each of detect, align, "
                               "embed+track, identify and publish after a crash (0: any stage failure ends the run)",
                               lo=0, hi=100, default=3)
    queue_size: int = _key("QUEUE_SIZE",
                           "records each stage queue holds in every-frame mode (live mode: two per stream)",
                           lo=1, hi=11, default=8)
    log_level: str = _key("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR", ("DEBUG", "INFO", "WARNING", "ERROR"),
                          default="INFO")
    # events (docs/events.md)
    mqtt_url: str = _key("MQTT_URL", "MQTT broker for events, mqtt://[user:pass@]host:port (mqtts:// for TLS; "
                         "credentials are masked in logs); empty: no MQTT", default="")
    mqtt_topic: str = _key("MQTT_TOPIC", "MQTT topic prefix: <prefix>/events, <prefix>/<stream>/snapshot, "
                           "<prefix>/available", default="facestream")
    webhook_url: str = _key("WEBHOOK_URL", "URL each event is POSTed to as JSON; empty: no webhook", default="")
    webhook_secret: str = _key("WEBHOOK_SECRET", "key of the HMAC-SHA256 signature in X-Facestream-Signature",
                               secret=True, default="")
    events_dir: str = _key("EVENTS_DIR", "folder of the on-disk queue of events not yet delivered",
                           default="events")
    events_max_mb: int = _key("EVENTS_MAX_MB", "largest size of that queue; when full, the oldest undelivered "
                              "events are dropped (with a warning)", lo=1, default=256)
    events_full_frame: bool = _key("EVENTS_FULL_FRAME", "attach the whole frame (JPEG) to each event's snapshot, "
                                   "besides the face crop", default=False)
    # metrics (docs/metrics.md)
    metrics_port: int = _key("METRICS_PORT", "serve Prometheus metrics at http://127.0.0.1:PORT/metrics while a "
                             "run has no web server (0: off)", lo=0, hi=65535, default=0)

    # ------------------------------------------------------------------
    @classmethod
    def env_keys(cls) -> dict[str, Any]:
        return {f.metadata["key"]: f for f in fields(cls)}

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", overrides: dict[str, str] | None = None,
             environ: dict[str, str] | None = None, warn: Callable[[str], None] | None = None) -> Settings:
        """Read ``env_file`` (without overriding the real environment), then the environment, then
        ``overrides``; validate every value; raise one FacestreamError naming the key on a bad one.

        ``warn`` receives one line per unknown key in ``env_file`` and per old key name still in use. Only the
        command line passes it, in the parent: whatever else loads settings (a stage process, a test) stays quiet."""
        env: dict[str, str] = {}
        file_keys: list[str] = []
        if env_file and Path(env_file).is_file():
            from dotenv import dotenv_values

            file_values = dotenv_values(env_file)
            file_keys = list(file_values)
            env.update({k: v for k, v in file_values.items() if v is not None})
        env.update(os.environ if environ is None else environ)
        env.update(overrides or {})
        name = Path(env_file).name if env_file else ".env"
        env, notes = _renamed(env, set(file_keys), name)
        env, retired = _retired(env, set(file_keys), name)
        notes += retired
        if warn is not None:
            for line in notes + unknown_keys(file_keys, name):
                warn(line)
        values = {}
        for f in fields(cls):
            key = f.metadata["key"]
            if key in env and env[key] is not None:
                values[f.name] = _parse(f, env[key].strip())
        settings = cls(**values)
        for f in fields(cls):
            if f.metadata["secret"]:
                add_secret(getattr(settings, f.name))
        settings._check()
        return settings

    def _check(self) -> None:
        try:
            parse_device(self.device)
        except BadDevice:
            raise FacestreamError(f"DEVICE={self.device!r} is not valid: use auto, cpu or cuda[:N]") from None

    def decoder_threads(self) -> int:
        """FFmpeg threads for each source's decoder: DECODE_THREADS, or on auto an equal share of the cores, 2 to
        8. Measured on 16 cores (docs/benchmarks.md): one 1080p source decodes faster in the pipeline with 8
        threads than with OpenCV's default of one per core (514 vs 468 fps, same call), and 16 sources each
        asking for 16 threads (256 threads) gave bursts of latency that 2 each do not."""
        if self.decode_threads:
            return self.decode_threads
        return max(2, min(8, usable_cores() // max(1, len(self.sources))))

    @property
    def sources(self) -> list[str]:
        return [s.strip() for s in self.video_source.split(",") if s.strip()]

    def example(self) -> str:
        """The text of ``.env.example``: every key with its default and meaning."""
        lines = ["# facestream settings: copy to .env and edit. Every key, its default and meaning.", ""]
        for f in fields(self):
            meta = f.metadata
            default = getattr(self, f.name)
            if isinstance(default, bool):
                default = str(default).lower()
            choices = f" ({' | '.join(meta['choices'])})" if meta["choices"] else ""
            lines.append(f"# {meta['help']}{choices}")
            lines.append(f"{meta['key']}={default}")
        return "\n".join(lines) + "\n"


def _renamed(env: dict[str, str], file_keys: set[str], file_name: str = ".env") -> tuple[dict[str, str], list[str]]:
    """``env`` with old key names moved to their new ones (a new name set as well wins), and one line per old
    name in use."""
    env = dict(env)
    notes = []
    for old, new in RENAMED.items():
        if old not in env:
            continue
        where = file_name if old in file_keys else "the environment"
        value = env.pop(old)
        if new in env:
            notes.append(f"{old} is now {new}: remove {old} from {where} ({new} is set and wins)")
        else:
            env[new] = value
            notes.append(f"{old} is now {new}: rename it in {where}")
    return env, notes


def _retired(env: dict[str, str], file_keys: set[str], file_name: str = ".env") -> tuple[dict[str, str], list[str]]:
    """``env`` without keys that no longer do anything, and one line per such key in use, saying what replaces it."""
    env = dict(env)
    notes = []
    for old, instead in RETIRED.items():
        if old in env:
            env.pop(old)
            where = file_name if old in file_keys else "the environment"
            notes.append(f"{old} (in {where}) is retired: {instead}")
    return env, notes


def unknown_keys(keys: list[str], file_name: str = ".env") -> list[str]:
    """One line per key facestream does not know, naming the closest real key (a typo is silently ignored
    otherwise: ``MATCH_TRESHOLD=0.5`` would leave the threshold at its default)."""
    known = list(Settings.env_keys())
    lines = []
    for key in keys:
        if key in known or key in RENAMED.keys() | RETIRED.keys() | ENV_ONLY_KEYS or key.startswith(ENV_ONLY_PREFIXES):
            continue
        close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "see .env.example for every key"
        lines.append(f"{file_name}: unknown key {key} is ignored — {hint}")
    return lines


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count where the OS says)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 2


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(f, raw: str) -> Any:
    meta, key = f.metadata, f.metadata["key"]
    kind = f.type if isinstance(f.type, type) else {"bool": bool, "int": int, "float": float, "str": str}[f.type]
    try:
        if kind is bool:
            low = raw.lower()
            if low not in _TRUE | _FALSE:
                raise ValueError
            value: Any = low in _TRUE
        elif kind is int:
            value = int(raw)
        elif kind is float:
            value = float(raw)
        else:
            value = raw
    except ValueError:
        expected = {bool: "true or false", int: "a whole number", float: "a number"}.get(kind, "text")
        raise FacestreamError(f"bad value in settings: {key}={raw!r} is not {expected} — fix it in .env "
                              "or the environment") from None
    if meta["choices"] and value not in meta["choices"]:
        raise FacestreamError(f"bad value in settings: {key}={raw!r} — choose one of {', '.join(meta['choices'])}")
    if meta["lo"] is not None and value < meta["lo"] or meta["hi"] is not None and value > meta["hi"]:
        raise FacestreamError(f"bad value in settings: {key}={raw!r} is outside {meta['lo']}..{meta['hi']}")
    return value
