"""Make a PyTorch module cheap to run for inference on an NVIDIA GPU.

Three steps, each measurable on its own (``bench/gpu_fastpath.py``):

- ``fold_batchnorm``: a BatchNorm right after a convolution (or linear layer) is an affine map per
  output channel, so it can live in that layer's weight and bias. Removes one full read+write of
  every activation it touched; exact up to float rounding.
- ``prepare_module``: fold, cast to FP16, lay activations out channels_last (what the tensor-core
  convolution kernels want), optionally ``torch.compile`` (fuses the remaining elementwise ops).
- ``GraphedCallable``: one CUDA graph per input shape, so a call is one graph launch instead of
  hundreds of kernel launches — what makes batch 1 fast.

CUDA is touched only when a graph is captured or a module is moved to a CUDA device; folding runs on CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

#: (layer, norm) pairs that fold: the norm is applied per output channel of the layer
_FOLDABLE = ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))


def _foldable(layer: nn.Module, norm: nn.Module) -> bool:
    if not any(isinstance(layer, a) and type(norm) is b for a, b in _FOLDABLE):
        return False
    if norm.running_mean is None or norm.running_var is None:  # batch statistics only: not affine
        return False
    out = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
    return norm.num_features == out


@torch.no_grad()
def fold_into(layer: nn.Conv2d | nn.Linear, norm: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """Fold eval-mode ``norm`` into ``layer``'s weight and bias (in float64, then back to the layer's dtype)."""
    w = layer.weight.detach().double()
    inv = torch.rsqrt(norm.running_var.double() + norm.eps)
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(inv)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(inv)
    scale = gamma * inv
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(scale)
    new_w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    new_b = (bias - norm.running_mean.double()) * scale + beta
    dtype, device = layer.weight.dtype, layer.weight.device
    layer.weight.copy_(new_w.to(dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b.to(device=device, dtype=dtype), requires_grad=False)
    else:
        layer.bias.copy_(new_b.to(dtype))


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _pairs_by_tracing(module: nn.Module) -> list[tuple[str, str]]:
    """(layer name, norm name) pairs where the norm's only input is the layer's output and the layer's
    output goes nowhere else — read off the dataflow graph, so attribute order does not matter."""
    import torch.fx

    graph = torch.fx.symbolic_trace(module).graph
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        if calls[node.target] != 1 or calls[src.target] != 1:  # shared module: folding would change other uses
            continue
        if _foldable(module.get_submodule(src.target), module.get_submodule(node.target)):
            pairs.append((src.target, node.target))
    return pairs


def _pairs_by_order(module: nn.Module) -> list[tuple[str, str]]:
    """Fallback for modules torch.fx cannot trace: adjacent children of plain ``nn.Sequential``s only,
    where execution order is the registration order by construction."""
    pairs = []
    for name, seq in module.named_modules():
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            continue
        children = list(seq.named_children())
        for (a_name, a), (b_name, b) in zip(children, children[1:]):
            if _foldable(a, b):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + a_name, prefix + b_name))
    return pairs


def fold_batchnorm(module: nn.Module, inplace: bool = False) -> tuple[nn.Module, int]:
    """Fold every BatchNorm that directly follows a Conv2d (BatchNorm2d) or Linear (BatchNorm1d).

    The module tree keeps its classes and forward code: each folded norm is replaced by
    ``nn.Identity``. Pairs are found by tracing with torch.fx; modules it cannot trace fall back to
    adjacent pairs inside ``nn.Sequential``. Returns (module, number of norms folded); the module is
    a deep copy in eval mode unless ``inplace``.
    """
    if not inplace:
        module = copy.deepcopy(module)
    module.eval()
    try:
        pairs = _pairs_by_tracing(module)
    except Exception:  # untraceable control flow: use the structural fallback
        pairs = _pairs_by_order(module)
    for layer_name, norm_name in pairs:
        fold_into(module.get_submodule(layer_name), module.get_submodule(norm_name))
        _set_submodule(module, norm_name, nn.Identity())
    return module, len(pairs)


def densify_grouped_convs(module: nn.Module, max_group_channels: int = 4) -> int:
    """Replace grouped (not depthwise) convolutions with at most ``max_group_channels`` input channels per
    group by the equivalent dense convolution (block-diagonal weight, zeros elsewhere). In place.

    More arithmetic, but on tensor cores: cuDNN has no fast kernel for tiny groups (MobileFaceNet's
    128-channel, 64-group 3×3 conv), and a dense conv of that size is cheap. Exact: the added weights
    are zeros. Returns how many convolutions were replaced.
    """
    count = 0
    for name, conv in list(module.named_modules()):
        if not isinstance(conv, nn.Conv2d) or conv.groups == 1 or conv.groups == conv.in_channels:
            continue
        cin_g, cout_g = conv.in_channels // conv.groups, conv.out_channels // conv.groups
        if cin_g > max_group_channels or conv.padding_mode != "zeros":
            continue
        dense = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, 1, conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            dense.weight.zero_()
            for g in range(conv.groups):
                dense.weight[g * cout_g:(g + 1) * cout_g, g * cin_g:(g + 1) * cin_g] = conv.weight[
                    g * cout_g:(g + 1) * cout_g]
            if conv.bias is not None:
                dense.bias.copy_(conv.bias)
        _set_submodule(module, name, dense)
        count += 1
    return count


class Float32Island(nn.Module):
    """Runs ``inner`` in float32 inside a reduced-precision network: input cast up, output left in float32.

    For small layers whose outputs need the precision, e.g. a detector's score head: FP16 probabilities
    near 1 are spaced 5e-4 apart, enough to reorder two anchors of one face and change which box NMS keeps.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float())


def prepare_module(
    module: nn.Module,
    device: str | torch.device = "cuda",
    dtype: torch.dtype = torch.float16,
    channels_last: bool = True,
    fold_bn: bool = True,
    compile_mode: str | None = None,
    densify_groups: int = 0,
    fp32_modules: Sequence[str] = (),
) -> nn.Module:
    """A copy of ``module`` ready for inference: BN folded, cast, channels_last, optionally compiled.

    ``compile_mode`` is a ``torch.compile`` mode ("default", "reduce-overhead", "max-autotune",
    "max-autotune-no-cudagraphs") or None. Use a "no-cudagraphs" mode when the caller captures its
    own graph (``GraphedCallable``): graphs inside graphs do not nest. Compilation happens lazily at
    the first call per input shape. ``densify_groups`` > 0 applies ``densify_grouped_convs`` with that
    limit; ``fp32_modules`` names submodules kept in float32 (``Float32Island``).
    """
    if fold_bn:
        module, _ = fold_batchnorm(module)
    else:
        module = copy.deepcopy(module).eval()
    if densify_groups:
        densify_grouped_convs(module, densify_groups)
    module = module.to(device=device, dtype=dtype)
    for name in fp32_modules:
        _set_submodule(module, name, Float32Island(module.get_submodule(name)))
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    for p in module.parameters():
        p.requires_grad_(False)
    if compile_mode:
        module = torch.compile(module, mode=None if compile_mode == "default" else compile_mode, dynamic=False)
    return module


def _signature(tensors: Sequence[torch.Tensor]) -> tuple:
    return tuple((tuple(t.shape), t.dtype) for t in tensors)


class GraphedCallable:
    """``fn(*tensors)`` replayed from one CUDA graph per input signature (shapes and dtypes).

    A call copies its inputs into the graph's static inputs and replays it. The returned tensors are
    the graph's static outputs: they are overwritten by the next call of *any* graph of this object
    (all share one memory pool), so consume or clone them first. ``fn`` must be capturable: no
    host syncs, no data-dependent shapes. With ``enabled=False`` it simply calls ``fn`` (CPU, debugging).
    """

    def __init__(self, fn: Callable, warmup: int = 3, enabled: bool = True) -> None:
        self.fn = fn
        self.warmup = warmup
        self.enabled = enabled
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], object]] = {}
        self._pool = None

    def __len__(self) -> int:
        return len(self._graphs)

    def static_inputs(self, *example: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The static input tensors of the graph for this signature (captured on first use): writing
        into them directly (e.g. an upload) and then calling ``replay`` saves one device copy."""
        return self._entry(example)[1]

    def _entry(self, example: Sequence[torch.Tensor]):
        key = _signature(example)
        entry = self._graphs.get(key)
        if entry is not None:
            return entry
        static = tuple(t.detach().clone() for t in example)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(self.warmup):  # cudnn autotuning, lazy init and torch.compile run here, not in the graph
                self.fn(*static)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool), torch.inference_mode():
            out = self.fn(*static)
        entry = self._graphs[key] = (graph, static, out)
        return entry

    def replay(self, *example: torch.Tensor):
        """Replay the graph for this signature without copying inputs (they are already in ``static_inputs``)."""
        graph, _, out = self._entry(example)
        graph.replay()
        return out

    def __call__(self, *tensors: torch.Tensor):
        if not self.enabled:
            with torch.inference_mode():
                return self.fn(*tensors)
        graph, static, out = self._entry(tensors)
        for dst, src in zip(static, tensors):
            if dst.data_ptr() != src.data_ptr():
                dst.copy_(src, non_blocking=True)
        graph.replay()
        return out

    def reset(self) -> None:
        self._graphs.clear()
        self._pool = None


class FastModule:
    """A prepared module behind per-shape CUDA graphs: ``fast(x)`` for any batch on the device.

    The input is cast and laid out (channels_last) as part of the copy into the static input, so the
    caller may pass float32 NCHW. Outputs are static graph tensors (see ``GraphedCallable``).
    """

    def __init__(self, module: nn.Module, device: str = "cuda", dtype: torch.dtype = torch.float16,
                 channels_last: bool = True, fold_bn: bool = True, compile_mode: str | None = None,
                 cuda_graphs: bool = True, densify_groups: int = 0) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last
        self.module = prepare_module(module, self.device, dtype, channels_last, fold_bn, compile_mode,
                                     densify_groups=densify_groups)
        self.graphs = GraphedCallable(self.module, enabled=cuda_graphs and self.device.type == "cuda")
        self._static: dict[tuple[int, ...], torch.Tensor] = {}

    def _shaped(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def __call__(self, x: torch.Tensor):
        if not self.graphs.enabled:
            return self.graphs(self._shaped(x))
        key = tuple(x.shape)
        static = self._static.get(key)
        if static is None:
            example = torch.zeros(key, dtype=self.dtype, device=self.device)
            if self.channels_last and x.dim() == 4:
                example = example.contiguous(memory_format=torch.channels_last)
            (static,) = self.graphs.static_inputs(example)
            self._static[key] = static
        static.copy_(x, non_blocking=True)  # one kernel: cast + layout change + copy
        return self.graphs.replay(static)


def count_macs(module: nn.Module, *example: torch.Tensor) -> int:
    """Multiply-accumulates of every Conv2d and Linear in one forward pass on ``example`` (via forward hooks).

    Convolution: output elements × (input channels / groups) × kernel area; linear: output elements ×
    input features. Elementwise layers are not counted: they are not matrix work.
    """
    total = 0

    def hook(layer: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += output.numel() * (layer.in_channels // layer.groups) * kh * kw
        else:
            total += output.numel() * layer.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            module(*example)
    finally:
        for h in handles:
            h.remove()
    return total
