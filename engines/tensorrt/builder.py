"""ONNX → serialised TensorRT engine with the TensorRT Python API.

One optimisation profile per engine: the batch dimension ranges over min/opt/max from the
arguments; a detector's dynamic spatial dims are pinned to the detection size (the detector
letterboxes every frame to it, and one fixed size gets the best kernels). Networks are built
strongly typed on both flavours, so precision comes from the ONNX (see ``fp16.py``) and an FP16
engine means the same arithmetic on full TensorRT and on TensorRT-RTX.

The engine file appears only when complete: it is written to a temporary file beside the target
and renamed, so a build that fails or is cancelled leaves no half-written engine (and keeps any
older one untouched).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines.errors import EngineError, ModelFileError
from engines.tensorrt.api import TrtApi, load_trt, make_logger

Shape = tuple[int, ...]


@dataclass(frozen=True)
class BuildEvent:
    """One progress report: ``stage`` is parse | convert | build | write | done | cached | store | stale."""

    model: str
    stage: str
    message: str
    fraction: float | None = None  # 0..1 within the build, when TensorRT says how far it is

    def __str__(self) -> str:
        pct = f" {self.fraction * 100:3.0f}%" if self.fraction is not None else ""
        return f"{self.model}: {self.stage}{pct} {self.message}".rstrip()


Progress = Callable[[BuildEvent], None]


@dataclass(frozen=True)
class ShapeProfile:
    """Per input tensor, the (min, opt, max) shape of one TensorRT optimisation profile."""

    shapes: tuple[tuple[str, Shape, Shape, Shape], ...]

    def to_json(self) -> dict:
        return {name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, lo, opt, hi in self.shapes}

    @classmethod
    def from_json(cls, data: dict) -> ShapeProfile:
        return cls(tuple(
            (name, tuple(v["min"]), tuple(v["opt"]), tuple(v["max"])) for name, v in data.items()
        ))

    @property
    def max_batch(self) -> int:
        return min(hi[0] for _, _, _, hi in self.shapes)

    def describe(self) -> str:
        return ", ".join(
            f"{name} {'x'.join(map(str, lo))} / {'x'.join(map(str, opt))} / {'x'.join(map(str, hi))}"
            for name, lo, opt, hi in self.shapes
        )


def _onnx_inputs(model) -> list[tuple[str, list[int | str | None]]]:
    """Graph inputs that are not initialisers, each as (name, dims); a dim is int, a name, or None."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = []
        for d in inp.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        out.append((inp.name, dims))
    return out


def profile_for(
    onnx_path: str | Path,
    kind: str,
    max_batch: int,
    opt_batch: int | None = None,
    min_batch: int = 1,
    det_size: tuple[int, int] = (640, 640),
) -> ShapeProfile:
    """The optimisation profile for a model: dynamic batch from min/opt/max, a detector's dynamic
    H and W pinned to ``det_size`` = (width, height) as insightface counts it. A static dim stays as is.
    """
    import onnx

    if not 1 <= min_batch <= max_batch:
        raise EngineError(f"batch profile needs 1 <= min ({min_batch}) <= max ({max_batch})")
    opt_batch = min(max(opt_batch or max(1, max_batch // 4), min_batch), max_batch)
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"{onnx_path} is not a readable ONNX model ({exc}): fetch or export it again") from exc
    shapes = []
    for name, dims in _onnx_inputs(model):
        lo, opt, hi = [], [], []
        for axis, d in enumerate(dims):
            if isinstance(d, int):
                lo.append(d), opt.append(d), hi.append(d)
            elif axis == 0:
                lo.append(min_batch), opt.append(opt_batch), hi.append(max_batch)
            elif kind == "detector" and len(dims) == 4 and axis in (2, 3):
                size = det_size[1] if axis == 2 else det_size[0]
                lo.append(size), opt.append(size), hi.append(size)
            else:
                raise EngineError(
                    f"{Path(onnx_path).name}: input {name} has a dynamic axis {axis} ({d or '?'}) that "
                    f"a {kind} profile cannot size: export the model with a fixed size there"
                )
        shapes.append((name, tuple(lo), tuple(opt), tuple(hi)))
    if not shapes:
        raise ModelFileError(f"{onnx_path} has no inputs")
    return ShapeProfile(tuple(shapes))


def untie_dynamic_dims(model) -> bool:
    """Give every dynamic input axis its own name; True if the model was changed.

    Some exporters name every dynamic axis "?" (insightface's SCRFD does: batch, H and W). TensorRT
    reads one name as one value, so batch 1 with 640x640 frames is "contradictory" to it.
    """
    seen: dict[str, int] = {}
    for inp in model.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if d.dim_param:
                seen[d.dim_param] = seen.get(d.dim_param, 0) + 1
    shared = {name for name, n in seen.items() if n > 1}
    if not shared:
        return False
    for inp in model.graph.input:
        for axis, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.dim_param in shared:
                d.dim_param = f"{inp.name}_dim{axis}"
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            if d.dim_param in shared:
                d.ClearField("dim_param")
    return True


def _monitor(api: TrtApi, model: str, progress: Progress | None):
    """A TensorRT progress monitor forwarding top-level phases; an exception raised by the
    callback (a cancel) stops the build and is re-raised by build_engine."""
    trt = api.module

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.lock = threading.Lock()
            self.top: dict[str, int] = {}
            self.error: BaseException | None = None

        def _emit(self, message: str, fraction: float | None) -> bool:
            if progress is None:
                return True
            try:
                progress(BuildEvent(model, "build", message, fraction))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller after the build stops
                with self.lock:
                    self.error = self.error or exc
                return False
            return True

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            if parent_phase is None:
                with self.lock:
                    self.top[phase_name] = max(int(num_steps), 1)
                self._emit(phase_name, 0.0)

        def step_complete(self, phase_name, step) -> bool:
            with self.lock:
                if self.error is not None:
                    return False
                steps = self.top.get(phase_name)
            if steps is None:
                return True
            return self._emit(phase_name, min((int(step) + 1) / steps, 1.0))

        def phase_finish(self, phase_name) -> None:
            with self.lock:
                self.top.pop(phase_name, None)

    return _Monitor()


def write_atomic(dest: Path, data) -> None:
    """Write bytes-like ``data`` to ``dest`` through a temporary file + fsync + rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared engine cache from other users
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass(frozen=True)
class BuildResult:
    seconds: float
    size_bytes: int
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # in the ONNX output order: the order Backend.run returns


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    profile: ShapeProfile,
    *,
    api: TrtApi | None = None,
    workspace_mb: int | None = None,
    sm: str | None = None,
    model_name: str | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build ``onnx_path`` into a serialised engine at ``engine_path``.

    ``sm`` ("86", "120", ...) makes TensorRT-RTX build for that one compute capability instead of
    its portable default ("ANY": every capability it supports); full TensorRT always builds for
    the GPU it runs on and ignores it. ``workspace_mb`` caps the builder's scratch memory.
    """
    import onnx

    api = api or load_trt()
    trt = api.module
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    name = model_name or onnx_path.stem
    emit = progress or (lambda event: None)
    logger = make_logger(api)
    started = time.perf_counter()

    emit(BuildEvent(name, "parse", f"{onnx_path.name} ({api.flavour} {api.version})"))
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"{onnx_path} is not a readable ONNX model ({exc}): fetch or export it again") from exc
    untie_dynamic_dims(model)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString(), str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or [logger.last_error()]
        raise EngineError(f"TensorRT cannot parse {onnx_path.name}: {errors[0].splitlines()[0]}")
    del model

    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if api.is_rtx and sm and sm != "ANY":
        target = getattr(trt.ComputeCapability, f"SM{sm}", None)
        if target is None:
            supported = [m[2:] for m in trt.ComputeCapability.__members__ if m.startswith("SM")]
            raise EngineError(f"TensorRT-RTX cannot build for sm{sm}: it targets sm{', sm'.join(supported)}")
        config.num_compute_capabilities = 1
        config.set_compute_capability(target, 0)
    monitor = _monitor(api, name, progress)
    if hasattr(config, "progress_monitor"):
        config.progress_monitor = monitor

    input_names = tuple(network.get_input(i).name for i in range(network.num_inputs))
    output_names = tuple(network.get_output(i).name for i in range(network.num_outputs))
    inputs = set(input_names)
    if inputs != {n for n, *_ in profile.shapes}:
        raise EngineError(
            f"{onnx_path.name}: profile names inputs {sorted(n for n, *_ in profile.shapes)}, "
            f"the network has {sorted(inputs)}"
        )
    opt_profile = builder.create_optimization_profile()
    for tensor, lo, opt, hi in profile.shapes:
        opt_profile.set_shape(tensor, lo, opt, hi)
    config.add_optimization_profile(opt_profile)

    emit(BuildEvent(name, "build", f"profile {profile.describe()}", 0.0))
    serialized = builder.build_serialized_network(network, config)
    if monitor.error is not None:
        raise monitor.error
    if serialized is None:
        raise EngineError(f"TensorRT could not build {onnx_path.name}: {logger.last_error().splitlines()[0]}")
    data = memoryview(serialized)
    emit(BuildEvent(name, "write", f"{engine_path.name} ({data.nbytes / 1e6:.1f} MB)"))
    write_atomic(engine_path, data)
    seconds = time.perf_counter() - started
    emit(BuildEvent(name, "done", f"{engine_path.name} in {seconds:.1f} s", 1.0))
    return BuildResult(seconds, data.nbytes, input_names, output_names)
