"""Downsampling surgery: every downsampling point of a network built elsewhere (the CIFAR ResNet and
VGG, any torchvision CNN) rebuilt with one operator of the registry, by one rule.

A **downsampling point** is a layer that subsamples with a stride > 1:

- ``pool``: a MaxPool2d or AvgPool2d;
- ``conv``: a Conv2d with a kernel larger than 1x1 (3x3, depthwise, ConvNeXt's 2x2 patch merging, ...);
- ``projection``: a 1x1 Conv2d without padding (a residual shortcut's projection) or a
  :class:`Subsample` (the parameter-free option-A shortcut of the CIFAR ResNet).

What ``model=<operator>`` does at each kind of point (``at_points`` of the registry class):

=================  =========================  =============================  ===========================
operator           pool                       conv                           projection
=================  =========================  =============================  ===========================
``published``      kept                       kept                           kept
``strided``        removed; its stride moves  kept (the network as           kept
                   into the convolution that  published)
                   produces its input
``none``           removed                    stride 1                       stride 1
every other one    replaced by the            convolution at stride 1,       the operator's layers on
(its layers)       operator's layers          its norm and activation, then  its input, then the
                                              the operator's layers          projection at stride 1
=================  =========================  =============================  ===========================

A convolution set to stride 1 gets 'same' padding, so the operator's window (kernel_size, padding from
``model.downsample``) sees the full-resolution map; the stride is always the point's own. Pooling after
the convolution's normalisation and activation is Zhang (2019)'s placement (ConvBlurPool); a projection
pools its input first, as Zhang's anti-aliased ResNets do (for average and blur pooling this equals
pooling its output). Where a point cannot take the operator the build stops with a
:class:`PoolStudyError` naming it: a pool whose input does not come from a convolution (through its
normalisation and activation) cannot hand its stride to one under ``strided``; a window smaller than the
stride would skip pixels; a layer called more than once cannot be rebuilt for one call.

The points are found on a torch.fx trace of the whole network. Pools are replaced and strides and
paddings changed in place; only a module whose forward calls a point that gets new layers next to it is
re-traced one level deep and replaced by a ``GraphModule`` of the same name, parameters and buffers,
so every other module keeps its class and its hooks (the layer-wise probes) still fire. ``published``
returns the network itself. Either way the model carries ``downsampling_points``: every point, what it
was and what it became (see :func:`point_records`).
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from poolstudy.errors import InvalidModelError, PoolStudyError
from poolstudy.models.downsample import Downsample, create_downsample

POOL, CONV, PROJECTION, STEM = "pool", "conv", "projection", "stem"
# An even kernel at stride 1 gets padding="same" (one more after than before); torch then notes once that
# it pads a copy of the input, which is what such a convolution has to do.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel lengths")


class Subsample(nn.Module):
    """He et al. (2016)'s option-A shortcut: ``x[:, :, ::stride, ::stride]``, then zero channels
    appended half before, half after, up to ``out_channels``. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_channels - self.in_channels
        if extra:
            x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


@dataclass
class DownsamplingPoint:
    """One point: ``name`` is its layer in the published network, ``output_layer`` the leaf layer
    whose output is the point's output in the rebuilt one (for its size)."""

    name: str
    kind: str
    was: str
    became: str
    output_layer: str


# --- which layers are a convolution's normalisation and activation ------------------------------------

def _norm_types() -> tuple[type, ...]:
    from torchvision.models.convnext import LayerNorm2d  # normalises each pixel over its channels

    return (nn.BatchNorm2d, LayerNorm2d)


_ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.LeakyReLU, nn.ELU, nn.Mish,
                       nn.Hardtanh, nn.PReLU)
_ACTIVATION_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.silu, F.hardswish, F.gelu,
                         F.leaky_relu, F.elu, F.mish, F.hardtanh}
_ACTIVATION_METHODS = {"relu", "relu_"}


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _is_norm(gm: fx.GraphModule, node: fx.Node) -> bool:
    return isinstance(_module(gm, node), _norm_types())


def _is_activation(gm: fx.GraphModule, node: fx.Node) -> bool:
    return (isinstance(_module(gm, node), _ACTIVATION_MODULES)
            or (node.op == "call_function" and node.target in _ACTIVATION_FUNCTIONS)
            or (node.op == "call_method" and node.target in _ACTIVATION_METHODS))


def _node_name(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    if node.op == "placeholder":
        return "the network's input"
    target = getattr(node.target, "__name__", node.target)
    return f"{target}()"


# --- tracing ------------------------------------------------------------------------------------------

class _LeafTracer(fx.Tracer):
    """torch.fx's tracer, with every module without children kept as one call (torchvision's
    StochasticDepth, LayerNorm2d, ...): their Python control flow on ``self.training`` then stays
    inside them instead of being frozen into the graph."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return next(m.children(), None) is None or super().is_leaf_module(m, module_qualified_name)


class _LevelTracer(fx.Tracer):
    """Traces one module's own forward: every submodule it calls stays one call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def trace(model: nn.Module, label: str, tracer: type[fx.Tracer] = _LeafTracer) -> fx.GraphModule:
    """The model as a GraphModule (same layers, names and parameters), traced down to its leaf layers
    (or, with ``_LevelTracer``, one level: its own forward). Raises PoolStudyError when torch.fx cannot
    trace it or its graph differs between training and evaluation mode."""
    was_training = model.training
    sources = []
    try:
        for mode in (False, True):
            model.train(mode)
            graph = tracer().trace(model)
            sources.append(graph.python_code("self").src)
    except Exception as exc:  # torch.fx raises many kinds for untraceable Python
        raise PoolStudyError(f"{label} cannot be traced by torch.fx for downsampling surgery: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.") from None
    finally:
        model.train(was_training)
    if sources[0] != sources[1]:
        raise PoolStudyError(f"{label}'s forward takes different paths in training and evaluation mode "
                             f"(e.g. auxiliary classifiers or a dropout rate > 0 applied in code), which "
                             f"downsampling surgery cannot rebuild as one graph.")
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


class _Shapes(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.shapes: dict[fx.Node, tuple[int, ...]] = {}
        self.current: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.current = n
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.shapes[n] = tuple(out.shape)
        return out


def node_shapes(gm: fx.GraphModule, input_shape: tuple[int, int, int], label: str) -> dict[fx.Node, tuple]:
    """Every node's output shape for one dummy image (evaluation mode, on the model's device)."""
    parameter = next(gm.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    interpreter = _Shapes(gm)
    was_training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            interpreter.run(torch.zeros(1, *input_shape, device=device))
    except RuntimeError as exc:
        where = _node_name(interpreter.current) if interpreter.current is not None else "?"
        raise InvalidModelError(
            f"{label} cannot run on {'x'.join(map(str, input_shape))} inputs (channels x H x W) even as published: "
            f"layer '{where}' fails: {str(exc).splitlines()[0]}. Use a dataset with larger images.") from None
    finally:
        gm.train(was_training)
    return interpreter.shapes


# --- the points -------------------------------------------------------------------------------------

def _pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def point_kind(module: nn.Module) -> str | None:
    """pool, conv, projection, or None when the layer does not subsample."""
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        stride = _pair(module.stride)
    elif isinstance(module, (nn.Conv2d, Subsample)):
        stride = _pair(module.stride)
    else:
        return None
    if max(stride) <= 1:
        return None
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return POOL
    if isinstance(module, Subsample) or (_pair(module.kernel_size) == (1, 1) and _pair(module.padding) == (0, 0)):
        return PROJECTION
    return CONV


def describe_layer(module: nn.Module) -> str:
    """A layer's type and geometry in one line, e.g. 'Conv2d 3x3 s2 p1, 16->32'."""
    if isinstance(module, nn.Conv2d):
        (k, _), (s, _), pad = _pair(module.kernel_size), _pair(module.stride), module.padding
        p = pad if isinstance(pad, str) else _pair(pad)[0]
        groups = ""
        if module.groups > 1:
            groups = ", depthwise" if module.groups == module.in_channels else f", groups={module.groups}"
        return f"Conv2d {k}x{k} s{s} p{p}, {module.in_channels}->{module.out_channels}{groups}"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = _pair(module.kernel_size)[0], _pair(module.stride)[0], _pair(module.padding)[0]
        ceil = ", ceil_mode" if module.ceil_mode else ""
        return f"{nn.MaxPool2d.__name__ if isinstance(module, nn.MaxPool2d) else 'AvgPool2d'}(k{k}, s{s}, p{p}{ceil})"
    if isinstance(module, Subsample):
        return f"Subsample s{module.stride}, {module.in_channels}->{module.out_channels} (option A: zero channels)"
    return type(module).__name__


def _calls(gm: fx.GraphModule) -> Counter:
    return Counter(n.target for n in gm.graph.nodes if n.op == "call_module")


def find_points(gm: fx.GraphModule) -> list[tuple[fx.Node, str]]:
    """(node, kind) of every downsampling point, in the order the forward pass reaches them."""
    return [(n, kind) for n in gm.graph.nodes if n.op == "call_module"
            and (kind := point_kind(gm.get_submodule(n.target))) is not None]


def producer_conv(gm: fx.GraphModule, pool: fx.Node) -> fx.Node:
    """The convolution whose output, through its normalisation and activation only, is the pool's
    input, each step used by nothing else. Raises PoolStudyError naming the pool otherwise."""
    node = pool.args[0]
    while True:
        if not isinstance(node, fx.Node):
            break
        if len(node.users) != 1:
            raise PoolStudyError(
                f"model=strided cannot remove the pool '{pool.target}': its input ('{_node_name(node)}') also "
                f"feeds other layers, so no convolution's stride can take the pool's alone.")
        if isinstance(_module(gm, node), nn.Conv2d):
            if _calls(gm)[node.target] != 1:
                break
            return node
        if not (_is_norm(gm, node) or _is_activation(gm, node)):
            break
        node = node.args[0]
    raise PoolStudyError(
        f"model=strided cannot remove the pool '{pool.target}': its input comes from "
        f"'{_node_name(node) if isinstance(node, fx.Node) else node}', not from a convolution (through only its "
        f"normalisation and activation) whose stride could take the pool's. Use a pooling operator, "
        f"model=published or model=none for this network.")


def chain_end(gm: fx.GraphModule, conv: fx.Node) -> fx.Node:
    """The last of: the convolution, its normalisation, its activation (each the only user of the one before)."""
    end = conv
    for belongs in (_is_norm, _is_activation):
        users = list(end.users)
        if len(users) == 1 and belongs(gm, users[0]) and users[0].args[0] is end:
            end = users[0]
    return end


# --- rebuilding -----------------------------------------------------------------------------------------

def _as_module(layers: list[nn.Module], like: nn.Module) -> nn.Module:
    """The layers as one module, on the device of ``like``'s parameters (the network's)."""
    module = layers[0] if len(layers) == 1 else nn.Sequential(*layers)
    parameter = next(like.parameters(), None)
    return module.to(parameter.device) if parameter is not None else module


def _last_leaf(name: str, module: nn.Module) -> str:
    return f"{name}.{len(module) - 1}" if isinstance(module, nn.Sequential) else name


def _same_padding(conv: nn.Conv2d) -> None:
    """Stride 1 with 'same' padding (an even kernel pads one more after, as torch's padding='same')."""
    conv.stride = (1, 1)
    th, tw = (d * (k - 1) for d, k in zip(_pair(conv.dilation), _pair(conv.kernel_size)))
    conv.padding = (th // 2, tw // 2) if th % 2 == 0 and tw % 2 == 0 else "same"
    # what the layer pads with in a padding_mode other than zeros
    conv._reversed_padding_repeated_twice = [tw // 2, tw - tw // 2, th // 2, th - th // 2]


def _insert_after(gm: fx.GraphModule, node: fx.Node, name: str, module: nn.Module) -> None:
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node,))
    node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)


def _insert_before(gm: fx.GraphModule, node: fx.Node, name: str, module: nn.Module) -> None:
    gm.add_submodule(name, module)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, (node.args[0],))
    node.args = (new, *node.args[1:])


def _operator_at(ds: Downsample, stride: int, name: str) -> Downsample:
    if ds.window_subsamples and ds.kernel_size < stride:
        raise PoolStudyError(
            f"model.downsample.kernel_size = {ds.kernel_size} is smaller than the stride {stride} of the "
            f"downsampling point '{name}': the {ds.name} window would skip pixels. Set "
            f"model.downsample.kernel_size >= {stride}, or model.small_input=true if '{name}' is the ImageNet stem.")
    at_point = copy.copy(ds)
    at_point.stride = stride
    return at_point


def _check_stride_key(ds: Downsample) -> None:
    if ds.at_points in ("layers", "conv") and ds.stride != 2:
        raise PoolStudyError(
            f"model.downsample.stride = {ds.stride!r} is not valid here: a network rebuilt by downsampling surgery "
            f"keeps each point's own stride (2, or the stem's), so model.downsample.stride must stay 2.")


def _channels(gm: fx.GraphModule, node: Any) -> int | None:
    """Channels of a node's output read off the layers that made it (convolution, BatchNorm,
    concatenation, ...); None where the graph does not tell (then a dummy forward pass does)."""
    if not isinstance(node, fx.Node):
        return None
    module = _module(gm, node)
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.BatchNorm2d):
        return module.num_features
    if isinstance(module, Subsample):
        return module.out_channels
    if node.op == "call_function" and node.target is torch.cat:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        parts = [_channels(gm, n) for n in node.args[0]] if dim == 1 else [None]
        return None if None in parts else sum(parts)
    passes_channels = (_is_norm(gm, node) or _is_activation(gm, node)
                       or isinstance(module, (nn.Identity, nn.Dropout, nn.MaxPool2d, nn.AvgPool2d))
                       or (node.op == "call_function" and node.target in (operator.add, torch.add)))
    return _channels(gm, node.args[0]) if passes_channels and node.args else None


def rebuild(model: nn.Module, downsample: Mapping[str, Any] | Downsample, input_shape: tuple[int, int, int],
            label: str | None = None, stem: list[DownsamplingPoint] | None = None,
            traced: fx.GraphModule | None = None) -> nn.Module:
    """``model`` with every downsampling point rebuilt by ``downsample`` (the rule in the module
    docstring); ``published`` returns ``model`` itself. Layers are changed in place (a convolution's
    stride and padding), so pass a model built for this call. ``input_shape`` (C, H, W) is used for a
    dummy forward pass where the layers do not tell a pool's channels. ``stem`` lists changes already
    made to the stem (recorded first); ``traced``: the model already traced by :func:`trace`.

    The result carries ``downsampling_points`` (a list of :class:`DownsamplingPoint`).
    Raises PoolStudyError naming a point that cannot take the operator, InvalidModelError when the
    published network cannot run at ``input_shape``."""
    ds = create_downsample(downsample)
    label = label or type(model).__name__
    _check_stride_key(ds)
    gm = traced if traced is not None else trace(model, label)
    shapes: dict[fx.Node, tuple] = {}

    def channels_into(node: fx.Node) -> int:
        known = _channels(gm, node.args[0])
        if known is not None:
            return known
        if not shapes:
            shapes.update(node_shapes(gm, input_shape, label))
        return shapes[node.args[0]][1]

    calls = _calls(gm)
    records = list(stem or [])
    replace: dict[str, nn.Module] = {}
    insert: list[_Insertion] = []
    for node, kind in find_points(gm):
        layer = gm.get_submodule(node.target)
        was = describe_layer(layer)
        if calls[node.target] != 1:
            raise PoolStudyError(f"downsampling point '{node.target}' ({was}) is called {calls[node.target]} times "
                                 f"in {label}'s forward pass; surgery can only rebuild a layer used once.")
        stride = _pair(layer.stride)
        if stride[0] != stride[1]:
            raise PoolStudyError(f"downsampling point '{node.target}' ({was}) has the non-square stride {stride}, "
                                 "which the operators cannot reproduce.")
        stride = stride[0]
        name = str(node.target)
        if ds.at_points == "published" or (ds.at_points == "conv" and kind != POOL):
            records.append(DownsamplingPoint(name, kind, was, "kept (as published)", name))
        elif kind == POOL and ds.at_points == "conv":
            conv_node = producer_conv(gm, node)
            conv = gm.get_submodule(conv_node.target)
            conv.stride = tuple(s * stride for s in _pair(conv.stride))
            replace[name] = nn.Identity()
            records.append(DownsamplingPoint(name, kind, was, f"removed; its stride {stride} moved into "
                                             f"'{conv_node.target}' (now {describe_layer(conv)})", conv_node.target))
            for record in records:  # the convolution was a point itself (a strided stem): say what it became
                if record.name == conv_node.target:
                    record.became = f"{describe_layer(conv)}: took the stride of '{name}'"
        elif ds.at_points == "none":
            if kind == POOL:
                replace[name] = nn.Identity()
                records.append(DownsamplingPoint(name, kind, was, "removed", name))
            else:
                if kind == CONV:
                    _same_padding(layer)
                else:
                    layer.stride = 1 if isinstance(layer, Subsample) else (1, 1)
                records.append(DownsamplingPoint(name, kind, was, f"stride 1: {describe_layer(layer)}", name))
        else:
            op = _operator_at(ds, stride, name)
            if kind == POOL:
                replace[name] = module = _as_module(op.layers(channels_into(node)), gm)
                records.append(DownsamplingPoint(name, kind, was, op.describe(), _last_leaf(name, module)))
            else:
                channels = layer.out_channels if kind == CONV else layer.in_channels
                module = _as_module(op.layers(channels), gm)
                if kind == CONV:
                    _same_padding(layer)
                else:
                    layer.stride = 1 if isinstance(layer, Subsample) else (1, 1)
                record = DownsamplingPoint(name, kind, was, "", _last_leaf(f"{name}_down", module) if kind == CONV
                                           else name)
                records.append(record)
                insert.append(_Insertion(name, kind == CONV, module, op, record))
    for name, module in replace.items():
        model.set_submodule(name, module)
    model = _insert(model, insert, label)
    model.downsampling_points = records
    return model


@dataclass
class _Insertion:
    """An operator's layers to put after a convolution's chain (``after``) or before a projection."""

    point: str
    after: bool
    module: nn.Module
    op: Downsample
    record: DownsamplingPoint


def _insert(model: nn.Module, insertions: list[_Insertion], label: str) -> nn.Module:
    """Insert the layers into the forward of the module that calls each point (its parent), traced one
    level deep, so every other module keeps its class and stays one call (hooks on it still fire).
    Deepest parents first; each rebuilt parent replaces the original in its own parent."""
    by_parent: dict[str, list[_Insertion]] = {}
    for item in insertions:
        by_parent.setdefault(item.point.rpartition(".")[0], []).append(item)
    for parent in sorted(by_parent, key=lambda p: (-p.count("."), p) if p else (1, "")):
        module = model.get_submodule(parent) if parent else model
        where = f"'{parent}'" if parent else "the network"
        level = trace(module, f"{label} ({where})", _LevelTracer)
        for item in by_parent[parent]:
            child = item.point.rpartition(".")[2]
            node = next((n for n in level.graph.nodes if n.op == "call_module" and n.target == child), None)
            if node is None:
                raise PoolStudyError(f"downsampling point '{item.point}' is not called by the forward of {where} "
                                     f"itself, so the operator's layers cannot be placed next to it.")
            name = f"{child}_down"
            layer = describe_layer(level.get_submodule(child))
            if item.after:
                end = chain_end(level, node)
                _insert_after(level, end, name, item.module)
                chain = "".join(f" -> {_qualified(parent, n)}" for n in _between(node, end))
                item.record.became = f"{layer}{chain} -> {item.op.describe()} ('{_join(parent, name)}')"
            else:
                _insert_before(level, node, name, item.module)
                item.record.became = f"{item.op.describe()} ('{_join(parent, name)}') -> {layer}"
        level.graph.lint()
        level.recompile()
        if not parent:
            return level  # the root itself is rebuilt: it is the deepest-last, so nothing follows
        model.set_submodule(parent, level)
    return model


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _qualified(parent: str, node: fx.Node) -> str:
    return _join(parent, str(node.target)) if node.op == "call_module" else _node_name(node)


def _between(start: fx.Node, end: fx.Node) -> list[fx.Node]:
    """The nodes after ``start`` up to ``end`` along single users (the chain chain_end walked)."""
    nodes, node = [], start
    while node is not end:
        node = next(iter(node.users))
        nodes.append(node)
    return nodes


# --- records for the summary and metrics.json -------------------------------------------------------------

def point_records(model: nn.Module, rows: list) -> list[dict[str, Any]]:
    """Every downsampling point of ``model`` with its output size (channels, H, W) from ``rows``
    (:func:`poolstudy.models.profile.trace_shapes` of that model): name, kind, was, became, output.

    Models built from the registry directly (LeNet, All-CNN-C) have no published form to compare
    with: their points are the layers with a stride > 1, each recorded as it is (``was`` null)."""
    sizes = {row.name: list(row.out_shape) for row in rows}
    points = getattr(model, "downsampling_points", None)
    if points is not None:
        return [{"name": p.name, "kind": p.kind, "was": p.was, "became": p.became, "output": sizes.get(p.output_layer)}
                for p in points]
    records = []
    for name, module in model.named_modules():
        stride = getattr(module, "stride", None)
        if not name or next(module.children(), None) is not None:
            continue
        stride = max(stride) if isinstance(stride, (tuple, list)) else stride
        if isinstance(stride, (int, float)) and stride > 1:
            records.append({"name": name, "kind": point_kind(module) or type(module).__name__, "was": None,
                            "became": describe_layer(module) if point_kind(module) else repr(module),
                            "output": sizes.get(name)})
    return records


def format_points(records: list[dict[str, Any]]) -> str:
    """The points as lines for the job's log."""
    if not records:
        return "downsampling points: none"
    lines = ["downsampling points:"]
    for r in records:
        size = "x".join(map(str, r["output"])) if r["output"] else "?"
        was = f"{r['was']} -> " if r["was"] else ""
        lines.append(f"  {r['name']} [{r['kind']}]: {was}{r['became']}; output {size}")
    return "\n".join(lines)


__all__ = ["DownsamplingPoint", "Subsample", "format_points", "point_records", "rebuild", "trace"]
