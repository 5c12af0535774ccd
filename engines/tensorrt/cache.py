"""The engine cache: one engine per model, precision, GPU architecture and TensorRT build.

File name: ``{model}-{precision}-sm{XY}-{trt|trtrtx}{version}.engine`` with ``….json`` beside it
holding what the engine was built from (ONNX sha256, shape profile, builder flavour and version,
target architecture, build seconds, the engine's own sha256). ``sm`` is the GPU's compute
capability for full TensorRT, which builds for the GPU it runs on; TensorRT-RTX builds
*portable* engines by default, even with no GPU at all, and those are named ``smANY`` (they run on
every capability TensorRT-RTX supports: 8.0, 8.6, 8.9, 12.x) unless one target is asked for.

An engine is used only when its JSON exists and agrees with what is asked for and with the
engine's bytes; otherwise it is rebuilt (``ensure_engine``) or refused with one clear line
(``load_engine_bytes``). Nothing here imports TensorRT until a build is needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engines.errors import EngineError, ModelFileError
from engines.fetch import sha256_file
from engines.tensorrt.builder import BuildEvent, Progress, ShapeProfile, build_engine, profile_for, write_atomic

META_FORMAT = 1
PRECISIONS = ("fp32", "fp16")
DEFAULT_MAX_BATCH = 32  # embedder: faces per call
DEFAULT_DET_MAX_BATCH = 4  # detector: frames per call (a few cameras batched together)
DEFAULT_DET_SIZE = (640, 640)
DEFAULT_WORKSPACE_MB = 1024
#: the keys of the JSON that must equal what is asked for
CHECKED_KEYS = ("model", "precision", "sm", "flavour", "builder_version", "onnx_sha256", "profile")


def normalise_sm(sm: str | int | tuple[int, int] | None) -> str | None:
    """ "8.6" / "sm86" / 86 / (8, 6) → "86"; "any" → "ANY"; None stays None."""
    if sm is None:
        return None
    if isinstance(sm, tuple):
        return f"{int(sm[0])}{int(sm[1])}"
    text = str(sm).strip().lower().removeprefix("sm").replace(".", "").replace("_", "")
    if text == "any":
        return "ANY"
    if not text.isdigit():
        raise EngineError(f"GPU architecture {sm!r} is not a compute capability like 8.6, sm86 or ANY")
    return text


def engine_name(model: str, precision: str, sm: str, flavour: str, version: str) -> str:
    return f"{model}-{precision}-sm{sm}-{flavour}{version}.engine"


def meta_path(engine_path: Path) -> Path:
    return Path(engine_path).with_suffix(".json")


def describe_sm(sm: str) -> str:
    if sm == "ANY":
        return "portable: every compute capability TensorRT-RTX supports (8.0, 8.6, 8.9, 12.x)"
    return f"compute capability {sm[:-1]}.{sm[-1]}"


@dataclass
class EngineRecord:
    """A ready engine on disk and how it came to be there."""

    model: str
    precision: str
    path: Path
    sm: str
    flavour: str
    version: str
    profile: ShapeProfile
    onnx_sha256: str
    build_seconds: float  # of the build that made it (possibly earlier, elsewhere)
    source: str  # "built" | "cache" | "store"
    size_bytes: int
    reason: str = ""  # why it was (re)built: "missing", "ONNX changed", ...
    meta: dict = field(default_factory=dict, repr=False)

    @property
    def meta_path(self) -> Path:
        return meta_path(self.path)

    def __str__(self) -> str:
        how = {"built": f"built in {self.build_seconds:.1f} s", "cache": "up to date", "store": "from the store"}
        extra = f" ({self.reason})" if self.reason and self.source == "built" else ""
        return f"{self.path.name}: {how.get(self.source, self.source)}{extra}, {self.size_bytes / 1e6:.1f} MB"


def read_meta(engine_path: Path) -> dict | None:
    path = meta_path(engine_path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # present but unreadable: disagrees with everything


def disagreements(meta: dict | None, expected: dict, engine_path: Path | None = None,
                  data: bytes | None = None) -> list[str]:
    """What stops ``meta`` (and the engine bytes) from being trusted for ``expected``; [] if nothing."""
    if meta is None:
        return ["its JSON is missing"]
    if meta.get("format") != META_FORMAT:
        return ["its JSON is unreadable or of another format"]
    labels = {"onnx_sha256": "ONNX changed", "builder_version": "TensorRT version changed",
              "sm": "GPU architecture changed", "profile": "shape profile changed",
              "flavour": "TensorRT flavour changed", "precision": "precision differs", "model": "model differs"}
    out = [labels[k] for k in CHECKED_KEYS if k in expected and expected[k] is not None and meta.get(k) != expected[k]]
    if engine_path is not None or data is not None:
        try:
            size = len(data) if data is not None else engine_path.stat().st_size
        except FileNotFoundError:
            return out + ["the engine file is missing"]
        if size != meta.get("engine_bytes"):
            return out + ["the engine file's size differs from its JSON"]
        digest = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(engine_path)
        if digest != meta.get("engine_sha256"):
            out.append("the engine file's sha256 differs from its JSON")
    return out


def load_engine_bytes(engine_path: str | Path, expected: dict | None = None) -> tuple[bytes, dict]:
    """The engine's bytes and JSON, or EngineError when the JSON is missing or disagrees.

    ``expected`` holds any of CHECKED_KEYS (profile as its JSON form); the bytes are always checked
    against the JSON's sha256, so a truncated or replaced engine is never deserialised.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EngineError(f"engine {engine_path} is missing: run `facestream build-engines`")
    meta = read_meta(engine_path)
    data = engine_path.read_bytes()
    problems = disagreements(meta, expected or {}, data=data)
    if problems:
        raise EngineError(
            f"engine {engine_path.name} is not used because {'; '.join(problems)}: "
            "delete it and run `facestream build-engines`"
        )
    return data, meta


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (POSIX), so two processes never build the same engine at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic rename still keeps the files whole
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def resolve_sm(api, sm: str | None = None, device_index: int = 0) -> str:
    """Target architecture: as asked; else ANY for TensorRT-RTX; else the GPU's for full TensorRT."""
    sm = normalise_sm(sm)
    if sm is not None:
        return sm
    if api.is_rtx:
        return "ANY"
    from engines.tensorrt.api import gpu_compute_capability

    found = gpu_compute_capability(device_index)
    if found is None:
        raise EngineError("full TensorRT builds engines for the GPU it runs on, and no NVIDIA GPU is visible here")
    return found


def _record(path: Path, meta: dict, source: str, reason: str = "") -> EngineRecord:
    return EngineRecord(
        model=meta["model"], precision=meta["precision"], path=path, sm=meta["sm"], flavour=meta["flavour"],
        version=meta["builder_version"], profile=ShapeProfile.from_json(meta["profile"]),
        onnx_sha256=meta["onnx_sha256"], build_seconds=float(meta.get("build_seconds", 0.0)), source=source,
        size_bytes=int(meta.get("engine_bytes", 0)), reason=reason, meta=meta,
    )


def ensure_engine(
    onnx_path: str | Path,
    model_name: str,
    precision: str,
    sm: str | None,
    profile: ShapeProfile,
    engine_dir: str | Path,
    *,
    api=None,
    flavour: str | None = None,
    version: str | None = None,
    workspace_mb: int | None = DEFAULT_WORKSPACE_MB,
    progress: Progress | None = None,
    store=None,
    rebuild: bool = False,
) -> EngineRecord:
    """An up-to-date engine for ``onnx_path``: the cached one if its JSON agrees, else one from
    ``store`` (an EngineStore) if it has a matching one, else a fresh build (uploaded to the store).

    Stale means: ONNX bytes changed, target architecture changed, TensorRT flavour or version
    changed, profile changed, or the JSON is missing/unreadable/disagrees with the engine's bytes.
    ``version``/``flavour`` override what the installed TensorRT reports (pinning, tests);
    ``sm=None`` picks ANY for TensorRT-RTX and the GPU's capability for full TensorRT.
    """
    from engines.tensorrt.api import load_trt

    if precision not in PRECISIONS:
        raise EngineError(f"precision {precision!r} is not one TensorRT engines are built in: use fp16 or fp32")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelFileError(f"model file {onnx_path} is missing: run `facestream models fetch`")
    api = api or load_trt(flavour)
    flavour = flavour or api.flavour
    version = version or api.version
    sm = resolve_sm(api, sm)
    emit = progress or (lambda event: None)
    engine_dir = Path(engine_dir)
    engine_dir.mkdir(parents=True, exist_ok=True)
    path = engine_dir / engine_name(model_name, precision, sm, flavour, version)
    expected = {"model": model_name, "precision": precision, "sm": sm, "flavour": flavour,
                "builder_version": version, "onnx_sha256": sha256_file(onnx_path), "profile": profile.to_json()}

    with _lock(engine_dir / f".{path.stem}.lock"):
        reason = "rebuild asked for"
        if not rebuild:
            if path.is_file():
                problems = disagreements(read_meta(path), expected, engine_path=path)
                if not problems:
                    meta = read_meta(path)
                    emit(BuildEvent(model_name, "cached", path.name))
                    return _record(path, meta, "cache")
                reason = "; ".join(problems)
                emit(BuildEvent(model_name, "stale", f"{path.name}: {reason}"))
            else:
                reason = "missing"
            if store is not None:
                fetched = _from_store(store, path, expected, emit, model_name)
                if fetched is not None:
                    return fetched

        # Forget the old JSON first: a crash from here on leaves an engine with no JSON, never trusted.
        meta_path(path).unlink(missing_ok=True)
        started = time.perf_counter()
        converter = None
        with contextlib.ExitStack() as stack:
            source = onnx_path
            if precision == "fp16":
                import tempfile

                from engines.tensorrt.fp16 import convert_fp16

                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".fp16-", dir=engine_dir)))
                emit(BuildEvent(model_name, "convert", f"{onnx_path.name} → FP16 ONNX (float32 I/O)"))
                source = tmp / f"{onnx_path.stem}.fp16.onnx"
                convert_fp16(onnx_path, source)
                converter = _converter_version()
            result = build_engine(source, path, profile, api=api, workspace_mb=workspace_mb, sm=sm,
                                  model_name=model_name, progress=progress)
        seconds = time.perf_counter() - started
        meta = {
            "format": META_FORMAT, **expected, "onnx": onnx_path.name, "gpu_arch": describe_sm(sm),
            "build_seconds": round(seconds, 3), "engine_bytes": result.size_bytes,
            "engine_sha256": sha256_file(path), "inputs": list(result.inputs), "outputs": list(result.outputs),
            "workspace_mb": workspace_mb, "fp16_converter": converter,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_atomic(meta_path(path), (json.dumps(meta, indent=2) + "\n").encode())
        record = _record(path, meta, "built", reason)
        if store is not None:
            try:
                store.put(path)
                emit(BuildEvent(model_name, "store", f"uploaded {path.name} to {store}"))
            except EngineError as exc:
                emit(BuildEvent(model_name, "store", f"not uploaded: {exc}"))
        return record


def _from_store(store, path: Path, expected: dict, emit, model_name: str) -> EngineRecord | None:
    try:
        found = store.fetch(path.name, path.parent)
    except EngineError as exc:
        emit(BuildEvent(model_name, "store", f"lookup failed, building here: {exc}"))
        return None
    if not found:
        return None
    problems = disagreements(read_meta(path), expected, engine_path=path)
    if problems:
        emit(BuildEvent(model_name, "store", f"stored {path.name} not used: {'; '.join(problems)}"))
        return None
    emit(BuildEvent(model_name, "store", f"downloaded {path.name} from {store}"))
    return _record(path, read_meta(path), "store")


def _converter_version() -> str | None:
    try:
        from importlib.metadata import version

        return f"onnxconverter-common {version('onnxconverter-common')}"
    except Exception:  # noqa: BLE001 - informational only
        return None


def default_profile(
    onnx_path: str | Path,
    kind: str,
    max_batch: int | None = None,
    opt_batch: int | None = None,
    det_size: tuple[int, int] = DEFAULT_DET_SIZE,
) -> ShapeProfile:
    """The profile ``build_engines`` and the runtime backend agree on for a model of ``kind``."""
    if max_batch is None:
        max_batch = DEFAULT_DET_MAX_BATCH if kind == "detector" else DEFAULT_MAX_BATCH
    return profile_for(onnx_path, kind, max_batch=max_batch, opt_batch=opt_batch, det_size=tuple(det_size))


def build_engines(
    models: Sequence[tuple[str, str | Path, str]],
    engine_dir: str | Path,
    precisions: Sequence[str] = ("fp16",),
    max_batch: int = DEFAULT_MAX_BATCH,
    opt_batch: int | None = None,
    det_size: tuple[int, int] = DEFAULT_DET_SIZE,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    progress: Progress | None = None,
    *,
    det_max_batch: int = DEFAULT_DET_MAX_BATCH,
    sm: str | None = None,
    store=None,
    rebuild: bool = False,
    flavour: str | None = None,
) -> list[EngineRecord]:
    """Ensure an engine for every (name, onnx_path, kind) × precision; what the CLI's build-engines runs.

    ``kind`` is "detector" or "embedder": detectors get ``det_max_batch`` frames at ``det_size``,
    embedders ``max_batch`` faces. ``store`` is an EngineStore, None to read ``ENGINE_STORE`` from
    the environment, or False for none.
    """
    from engines.tensorrt.api import load_trt

    if store is None:
        from engines.tensorrt.store import EngineStore

        store = EngineStore.from_env()
    api = load_trt(flavour)
    records = []
    for name, onnx_path, kind in models:
        mb = det_max_batch if kind == "detector" else max_batch
        ob = None if kind == "detector" else opt_batch
        profile = default_profile(onnx_path, kind, max_batch=mb, opt_batch=ob, det_size=det_size)
        for precision in precisions:
            records.append(ensure_engine(
                onnx_path, name, precision, sm, profile, engine_dir, api=api, workspace_mb=workspace_mb,
                progress=progress, store=store or None, rebuild=rebuild,
            ))
    return records
