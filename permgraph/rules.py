"""One rule per ATen op: which axes of its inputs and outputs share a permutation.

A rule receives the op's bound arguments with the layouts of their axes and returns the
layouts of its outputs. It states the op's equivariance: outputs reuse input layouts where
the op commutes with permuting them, ``ctx.unify`` ties axes that must move together
(contractions, broadcasting), and every axis the op does not commute with is blocked with
a reason. An op without a rule blocks every axis it touches (see ``block_everything``).

Rules follow each op's semantics, never a model family: HF GPT-2's ``Conv1D`` is just an
``addmm`` with an (in, out) weight and needs nothing special.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx

from permgraph.axisgraph import AxisGraph, Layout, LayoutMismatch, Prod, Sum

__all__ = ["Context", "RULES", "Types", "register", "rule_for", "block_everything"]

Types = list[Layout]  # one layout per tensor dim
Rule = Callable[["Context"], Any]
RULES: dict[str, Rule] = {}


def register(*names: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for n in names:
            RULES[n] = fn
        return fn

    return deco


def op_name(target: Any) -> str:
    """``aten.add`` for ``torch.ops.aten.add.Tensor``; ``getitem`` for operator.getitem."""
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return str(packet)
    return getattr(target, "__name__", str(target))


def rule_for(target: Any) -> Rule | None:
    return RULES.get(op_name(target))


class Context:
    """What a rule sees: bound arguments, their layouts and shapes, and the graph."""

    def __init__(self, g: AxisGraph, node: torch.fx.Node, values: dict[torch.fx.Node, Any]):
        self.g = g
        self.node = node
        self.values = values
        self.op = op_name(node.target)
        self.where = f"{self.op} ({node.name})"
        self.args = _bind(node)

    # -- argument access ------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self.args.get(name)

    def types(self, arg: Any) -> Types:
        t = self.values.get(arg) if isinstance(arg, torch.fx.Node) else None
        if t is None:
            return []
        return list(t)

    @staticmethod
    def shape(arg: Any) -> tuple[int, ...]:
        val = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else arg
        if isinstance(val, torch.Tensor):
            return tuple(int(s) for s in val.shape)
        return ()

    @staticmethod
    def is_tensor(arg: Any) -> bool:
        return isinstance(arg, torch.fx.Node) and isinstance(arg.meta.get("val"), torch.Tensor)

    def out_shape(self, i: int | None = None) -> tuple[int, ...]:
        val = self.node.meta.get("val")
        if i is not None:
            val = val[i]
        return tuple(int(s) for s in val.shape) if isinstance(val, torch.Tensor) else ()

    # -- building layouts ------------------------------------------------------------
    def fresh(self, size: int, blocked: str | None = "", role: str | None = None) -> Layout:
        """A new atom. Blocked unless ``blocked=None``: an output axis that does not come
        from an input must not be permuted on its own."""
        reason = None if blocked is None else (blocked or f"{self.where}: new axis")
        return self.g.atom(size, self.where, blocked=reason, role=role)

    def fresh_types(self, shape: Sequence[int], blocked: str | None = "") -> Types:
        return [self.fresh(s, blocked) for s in shape]

    def unify(self, a: Layout, b: Layout) -> None:
        self.g.unify(a, b, self.where)

    def block(self, layout: Layout, why: str) -> None:
        self.g.block(layout, f"{self.where}: {why}")

    def split_prod(self, layout: Layout, sizes: list[int]) -> list[Layout] | None:
        try:
            return self.g.split_prod(layout, sizes, self.where)
        except LayoutMismatch as e:
            self.block(layout, str(e))
            return None

    def split_sum(self, layout: Layout, sizes: list[int]) -> list[Layout] | None:
        try:
            return self.g.split_sum(layout, sizes, self.where)
        except LayoutMismatch as e:
            self.block(layout, str(e))
            return None

    def broadcast(self, *args: Any) -> Types:
        """Numpy broadcasting: axes of equal length (not 1) are tied, right-aligned."""
        tensors = [a for a in args if self.is_tensor(a)]
        if not tensors:
            return []
        ndim = max(len(self.shape(a)) for a in tensors)
        out: Types = []
        for d in range(-ndim, 0):
            candidates = []
            for a in tensors:
                shp, typ = self.shape(a), self.types(a)
                if len(shp) >= -d and shp[d] != 1:
                    candidates.append(typ[d])
            if not candidates:
                out.append(self.fresh(1))
                continue
            for c in candidates[1:]:
                self.unify(candidates[0], c)
            out.append(candidates[0])
        return out


def _bind(node: torch.fx.Node) -> dict[str, Any]:
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {f"arg{i}": a for i, a in enumerate(node.args)} | dict(node.kwargs)
    out: dict[str, Any] = {}
    for i, a in enumerate(schema.arguments):
        if i < len(node.args):
            out[a.name] = node.args[i]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        else:
            out[a.name] = a.default_value if a.has_default_value() else None
    return out


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def _flat_nodes(x: Any) -> list[torch.fx.Node]:
    if isinstance(x, torch.fx.Node):
        return [x]
    if isinstance(x, (list, tuple)):
        return [n for y in x for n in _flat_nodes(y)]
    if isinstance(x, dict):
        return [n for y in x.values() for n in _flat_nodes(y)]
    return []


def block_everything(ctx: Context, why: str) -> Any:
    """The fallback: block every axis of every tensor input and output."""
    for n in _flat_nodes(list(ctx.node.args) + list(ctx.node.kwargs.values())):
        for t in ctx.types(n):
            ctx.block(t, why)
    return _fresh_like(ctx, ctx.node.meta.get("val"), why)


def _fresh_like(ctx: Context, val: Any, why: str) -> Any:
    if isinstance(val, torch.Tensor):
        return [ctx.fresh(int(s), why) for s in val.shape]
    if isinstance(val, (list, tuple)):
        return [_fresh_like(ctx, v, why) for v in val]
    return None


# ---------------------------------------------------------------------------------
# pointwise
# ---------------------------------------------------------------------------------
UNARY = """abs alias bitwise_not ceil clamp clamp_max clamp_min clone contiguous cos cosh detach
dropout alpha_dropout feature_dropout elu erf erfc exp exp2 expm1 fill float floor frac gelu
hardsigmoid hardswish hardtanh isinf isnan leaky_relu lift_fresh_copy log log10 log1p log2
logical_not logit mish nan_to_num neg reciprocal relu relu6 round rsqrt selu celu sgn sigmoid
sign silu sin sinh softplus sqrt square tan tanh threshold trunc zero _to_copy to
_assert_tensor_metadata bernoulli positive""".split()

BINARY = """add sub rsub mul div true_divide floor_divide remainder fmod pow maximum minimum where
masked_fill eq ne lt le gt ge logical_and logical_or logical_xor bitwise_and bitwise_or
bitwise_xor addcmul addcdiv lerp copy hypot atan2 xlogy fmax fmin __and__ __or__ __xor__""".split()


def _pointwise_names(names: list[str]) -> list[str]:
    out = []
    for n in names:
        out += [f"aten.{n}", f"aten.{n}_"]
    return out


@register(*_pointwise_names(UNARY))
def _unary(ctx: Context) -> Any:
    first = next((a for a in ctx.node.args if ctx.is_tensor(a)), None)
    if first is None:
        return block_everything(ctx, "no tensor input")
    # ops like clamp(min=Tensor) take more tensors: broadcast them all
    return ctx.broadcast(*[a for a in _flat_nodes(list(ctx.node.args) + list(ctx.node.kwargs.values()))])


@register(*_pointwise_names(BINARY), "aten.type_as")
def _pointwise(ctx: Context) -> Any:
    if ctx.op == "aten.type_as":
        return ctx.types(ctx.node.args[0])
    tensors = _flat_nodes(list(ctx.node.args) + list(ctx.node.kwargs.values()))
    return ctx.broadcast(*tensors)


@register("aten.native_dropout")
def _native_dropout(ctx: Context) -> Any:
    t = ctx.types(ctx["input"])
    return [t, t]


@register("aten.prelu", "aten._prelu_kernel")
def _prelu(ctx: Context) -> Any:
    x, w = ctx["self"], ctx["weight"]
    t = ctx.types(x)
    if ctx.shape(w) and ctx.shape(w)[0] > 1 and len(t) >= 2:
        ctx.unify(ctx.types(w)[0], t[1])
    return t


# ---------------------------------------------------------------------------------
# factories: constant tensors may be permuted freely, others not
# ---------------------------------------------------------------------------------
CONSTANT_FACTORIES = """zeros ones full zeros_like ones_like full_like new_zeros new_ones new_full
scalar_tensor""".split()
OTHER_FACTORIES = """empty empty_like new_empty arange rand randn randint rand_like randn_like
randint_like linspace tensor empty_strided eye tril_indices triu_indices""".split()


@register(*[f"aten.{n}" for n in CONSTANT_FACTORIES])
def _constant_factory(ctx: Context) -> Any:
    return [ctx.fresh(s, blocked=None) for s in ctx.out_shape()]


@register(*[f"aten.{n}" for n in OTHER_FACTORIES])
def _other_factory(ctx: Context) -> Any:
    return ctx.fresh_types(ctx.out_shape(), "values depend on position")


# ---------------------------------------------------------------------------------
# reductions and softmax
# ---------------------------------------------------------------------------------
def _reduce_dims(ctx: Context, x: Any, dims: Any) -> list[int]:
    ndim = len(ctx.shape(x))
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    return [_dim(d, ndim) for d in dims]


@register(
    "aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.var", "aten.std", "aten.prod",
    "aten.any", "aten.all", "aten.logsumexp", "aten.linalg_vector_norm", "aten.norm",
    "aten.nansum", "aten.nanmean", "aten.count_nonzero",
)
def _reduction(ctx: Context) -> Any:
    """Sums and friends are invariant to permuting the reduced axes: they consume them."""
    x = ctx.node.args[0]
    dims_arg = ctx["dim"]
    if ctx.op in ("aten.prod", "aten.any", "aten.all") and isinstance(dims_arg, int):
        dims_arg = [dims_arg]
    if ctx.op == "aten.norm" and dims_arg is None:
        dims_arg = None
    dims = _reduce_dims(ctx, x, dims_arg)
    keep = bool(ctx["keepdim"])
    t = ctx.types(x)
    out: Types = []
    for i, layout in enumerate(t):
        if i in dims:
            if keep:
                out.append(ctx.fresh(1))
        else:
            out.append(layout)
    return out


@register("aten.var_mean", "aten.std_mean")
def _var_mean(ctx: Context) -> Any:
    out = _reduction(ctx)
    return [out, list(out)]


@register("aten.max", "aten.min")
def _max_min(ctx: Context) -> Any:
    schema_args = [a.name for a in ctx.node.target._schema.arguments]
    if "other" in schema_args:
        return ctx.broadcast(ctx["self"], ctx["other"])
    if "dim" not in schema_args:
        return []
    x, d = ctx["self"], ctx["dim"]
    t = ctx.types(x)
    d = _dim(d, len(t))
    keep = bool(ctx["keepdim"])
    vals = [layout for i, layout in enumerate(t) if i != d]
    if keep:
        vals.insert(d, ctx.fresh(1))
    idx = list(vals)
    ctx.block(t[d], "indices of the maximum depend on unit order")
    return [vals, idx]


@register("aten.argmax", "aten.argmin")
def _argmax(ctx: Context) -> Any:
    x, d = ctx["self"], ctx["dim"]
    t = ctx.types(x)
    if d is None:
        for layout in t:
            ctx.block(layout, "index of an element depends on unit order")
        return ctx.fresh_types(ctx.out_shape())
    d = _dim(d, len(t))
    ctx.block(t[d], "index of the maximum depends on unit order")
    out = [layout for i, layout in enumerate(t) if i != d]
    if ctx["keepdim"]:
        out.insert(d, ctx.fresh(1))
    return out


@register("aten.cumsum", "aten.cumprod", "aten.cummax", "aten.cummin", "aten.sort", "aten.topk",
          "aten.argsort", "aten.roll", "aten.flip")
def _order_dependent(ctx: Context) -> Any:
    """Ops along an axis that depend on its order: block that axis."""
    x = ctx.node.args[0]
    t = ctx.types(x)
    dims = ctx["dim"] if "dim" in ctx.args else ctx["dims"]
    if dims is None:
        dims = list(range(len(t)))
    if isinstance(dims, int):
        dims = [dims]
    for d in dims:
        ctx.block(t[_dim(d, len(t))], "depends on the order of units")
    val = ctx.node.meta.get("val")
    if isinstance(val, (list, tuple)):
        return [list(t) for _ in val]
    return t


@register("aten.softmax", "aten._softmax", "aten.log_softmax", "aten._log_softmax",
          "aten._safe_softmax")
def _softmax(ctx: Context) -> Any:
    """Softmax along an axis commutes with permuting that axis."""
    return ctx.types(ctx.node.args[0])


# ---------------------------------------------------------------------------------
# linear algebra
# ---------------------------------------------------------------------------------
@register("aten.linear")
def _linear(ctx: Context) -> Any:
    x, w, b = ctx["input"], ctx["weight"], ctx["bias"]
    tx, tw = ctx.types(x), ctx.types(w)
    if len(tw) == 1:  # weight (in,): output drops the feature axis
        ctx.unify(tx[-1], tw[0])
        out = tx[:-1]
    else:
        ctx.unify(tx[-1], tw[1])
        out = tx[:-1] + [tw[0]]
    if ctx.is_tensor(b) and ctx.shape(b) and len(tw) == 2:
        ctx.unify(ctx.types(b)[-1], tw[0])
    return out


def _matmul_types(ctx: Context, a: Any, b: Any) -> Types:
    ta, tb = ctx.types(a), ctx.types(b)
    sa, sb = ctx.shape(a), ctx.shape(b)
    if len(ta) == 1 and len(tb) == 1:
        ctx.unify(ta[0], tb[0])
        return []
    squeeze_a = len(ta) == 1
    squeeze_b = len(tb) == 1
    if squeeze_a:
        ta, sa = [ctx.fresh(1)] + ta, (1,) + sa
    if squeeze_b:
        tb, sb = tb + [ctx.fresh(1)], sb + (1,)
    ctx.unify(ta[-1], tb[-2])
    # batch dims broadcast like pointwise ops
    nb = max(len(ta), len(tb)) - 2
    batch: Types = []
    for i in range(nb):
        da, db = len(ta) - 2 - nb + i, len(tb) - 2 - nb + i
        cands = []
        if da >= 0 and sa[da] != 1:
            cands.append(ta[da])
        if db >= 0 and sb[db] != 1:
            cands.append(tb[db])
        if not cands:
            batch.append(ctx.fresh(1))
            continue
        if len(cands) == 2:
            ctx.unify(cands[0], cands[1])
        batch.append(cands[0])
    if nb >= 2:  # (batch, heads, ...) products: name the parts for display, as SDPA does
        ctx.g.add_role(batch[-1], "heads")
        ctx.g.add_role(ta[-1], "query/key dims")
        ctx.g.add_role(tb[-1], "value dims")
    out = batch + ([] if squeeze_a else [ta[-2]]) + ([] if squeeze_b else [tb[-1]])
    return out


@register("aten.matmul", "aten.mm", "aten.bmm")
def _matmul(ctx: Context) -> Any:
    a, b = ctx.node.args[0], ctx.node.args[1]
    return _matmul_types(ctx, a, b)


@register("aten.addmm", "aten.baddbmm", "aten.addbmm", "aten.addmv")
def _addmm(ctx: Context) -> Any:
    bias = ctx["self"]
    m1 = ctx["mat1"] if "mat1" in ctx.args else (ctx["batch1"] if "batch1" in ctx.args else ctx["mat"])
    m2 = ctx["mat2"] if "mat2" in ctx.args else (ctx["batch2"] if "batch2" in ctx.args else ctx["vec"])
    prod = _matmul_types(ctx, m1, m2)
    if ctx.op == "aten.addbmm":  # sums over the batch: consume it
        prod = prod[1:]
    out_shape = ctx.out_shape()
    tb, sb = ctx.types(bias), ctx.shape(bias)
    for i in range(1, len(tb) + 1):
        if sb[-i] != 1 and out_shape[-i] == sb[-i]:
            ctx.unify(tb[-i], prod[-i])
    return prod


@register("aten.einsum")
def _einsum(ctx: Context) -> Any:
    """Every index letter is one axis: equal letters are tied, summed letters consumed."""
    eq, operands = ctx["equation"], ctx["tensors"]
    eq = eq.replace(" ", "")
    if "..." in eq or "->" not in eq:
        return block_everything(ctx, f"einsum {eq!r} with ellipsis or implicit output")
    lhs, rhs = eq.split("->")
    letters: dict[str, Layout] = {}
    for spec, op in zip(lhs.split(","), operands):
        shp = ctx.shape(op)
        for ch, t, s in zip(spec, ctx.types(op), shp):
            if s == 1:
                continue
            if ch in letters:
                ctx.unify(letters[ch], t)
            else:
                letters[ch] = t
    out_shape = ctx.out_shape()
    return [letters.get(ch) or ctx.fresh(s) for ch, s in zip(rhs, out_shape)]


# ---------------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------------
@register("aten.conv1d", "aten.conv2d", "aten.conv3d", "aten.convolution", "aten._convolution",
          "aten.conv_transpose1d", "aten.conv_transpose2d", "aten.conv_transpose3d",
          "aten.conv1d_padding", "aten.conv2d_padding")
def _conv(ctx: Context) -> Any:
    """Channels: in-channels tie to the weight's in axis, out-channels come from its out
    axis. With ``groups`` > 1 both are factored as (group, within-group) and the group
    factors tie, so groups move as blocks and units move within them. Spatial and kernel
    axes are blocked: a convolution does not commute with reordering positions."""
    x, w, b = ctx["input"], ctx["weight"], ctx["bias"]
    groups = int(ctx["groups"] or 1)
    transposed = bool(ctx["transposed"]) or ctx.op.startswith("aten.conv_transpose")
    tx, tw = ctx.types(x), ctx.types(w)
    sw = ctx.shape(w)
    nsp = len(sw) - 2
    batched = len(tx) == nsp + 2
    cx = 1 if batched else 0
    for t in tx[cx + 1:]:
        ctx.block(t, "spatial axis of a convolution")
    for t in tw[2:]:
        ctx.block(t, "kernel axis of a convolution")
    in_axis, out_axis = (0, 1) if transposed else (1, 0)
    out_shape = ctx.out_shape()
    if transposed:
        cin = sw[0]
        if groups == 1:
            ctx.unify(tx[cx], tw[0])
            out_c: Layout = tw[1]
        else:
            parts = ctx.split_prod(tx[cx], [groups, cin // groups])
            wparts = ctx.split_prod(tw[0], [groups, cin // groups])
            if parts is None or wparts is None:
                ctx.block(tw[1], "grouped transposed convolution")
                out_c = ctx.fresh(out_shape[cx])
            else:
                ctx.unify(parts[0], wparts[0])
                ctx.unify(parts[1], wparts[1])
                ctx.g.add_role(parts[0], "conv groups")
                out_c = Prod((parts[0], tw[1]))
    else:
        cin = ctx.shape(x)[cx]
        if groups == 1:
            ctx.unify(tx[cx], tw[in_axis])
            out_c = tw[out_axis]
        else:
            xparts = ctx.split_prod(tx[cx], [groups, cin // groups])
            wparts = ctx.split_prod(tw[0], [groups, sw[0] // groups])
            if xparts is None or wparts is None:
                ctx.block(tw[0], "grouped convolution")
                ctx.block(tw[1], "grouped convolution")
            else:
                ctx.unify(xparts[0], wparts[0])
                ctx.unify(xparts[1], tw[1])
                ctx.g.add_role(xparts[0], "conv groups")
            out_c = tw[0]
    if ctx.is_tensor(b):
        ctx.unify(ctx.types(b)[0], out_c)
    out: Types = []
    if batched:
        out.append(tx[0])
    out.append(out_c)
    out += ctx.fresh_types(out_shape[len(out):], "spatial axis of a convolution")
    return out


# ---------------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------------
BATCH_NORMS = ["aten.batch_norm", "aten._native_batch_norm_legit_no_training",
               "aten._native_batch_norm_legit", "aten.native_batch_norm",
               "aten._native_batch_norm_legit_functional", "aten.cudnn_batch_norm",
               "aten.instance_norm", "aten._batch_norm_with_update",
               "aten._batch_norm_no_update", "aten._batch_norm_with_update_functional"]


@register(*BATCH_NORMS)
def _batch_norm(ctx: Context) -> Any:
    """Per-channel affine and statistics (running or batch): channel axis 1 ties them."""
    x = ctx["input"]
    tx = ctx.types(x)
    channel = tx[1] if len(tx) > 1 else tx[0]
    for name in ("weight", "bias", "running_mean", "running_var"):
        p = ctx[name]
        if ctx.is_tensor(p) and ctx.shape(p):
            ctx.unify(ctx.types(p)[0], channel)
    val = ctx.node.meta.get("val")
    if isinstance(val, (list, tuple)):
        out: list[Any] = [tx]
        for v in val[1:]:
            if isinstance(v, torch.Tensor) and v.dim() == 1 and v.shape[0] == ctx.shape(x)[1]:
                out.append([channel])
            else:
                out.append(_fresh_like(ctx, v, "batch-norm side output"))
        return out
    return tx


@register("aten.layer_norm", "aten.native_layer_norm", "aten.rms_norm", "aten._fused_rms_norm")
def _layer_norm(ctx: Context) -> Any:
    """Normalises over the last axes: commutes with permuting them, affine included."""
    x = ctx["input"]
    tx = ctx.types(x)
    k = len(ctx["normalized_shape"])
    for name in ("weight", "bias"):
        p = ctx[name]
        if ctx.is_tensor(p):
            for tp, t in zip(ctx.types(p), tx[-k:]):
                ctx.unify(tp, t)
    val = ctx.node.meta.get("val")
    if isinstance(val, (list, tuple)):
        stats = tx[:-k] + [ctx.fresh(1) for _ in range(k)]
        return [tx] + [stats if isinstance(v, torch.Tensor) and v.dim() == len(tx) else
                       _fresh_like(ctx, v, "norm statistics") for v in val[1:]]
    return tx


@register("aten.group_norm", "aten.native_group_norm")
def _group_norm(ctx: Context) -> Any:
    """Channels factor as (group, within-group): whole groups move, and units move within
    them (the same way in every group, which a per-channel affine can express)."""
    x = ctx["input"]
    groups = int(ctx["num_groups"] if "num_groups" in ctx.args else ctx["group"])
    tx = ctx.types(x)
    c = ctx.shape(x)[1]
    parts = ctx.split_prod(tx[1], [groups, c // groups])
    if parts is not None:
        ctx.g.add_role(parts[0], "norm groups")
        ctx.g.add_role(parts[1], "within a norm group")
    for name in ("weight", "bias"):
        p = ctx[name]
        if ctx.is_tensor(p):
            ctx.unify(ctx.types(p)[0], tx[1])
    val = ctx.node.meta.get("val")
    if isinstance(val, (list, tuple)):
        g_layout = parts[0] if parts is not None else ctx.fresh(groups)
        return [tx, [tx[0], g_layout], [tx[0], g_layout]]
    return tx


# ---------------------------------------------------------------------------------
# embedding and attention
# ---------------------------------------------------------------------------------
@register("aten.embedding")
def _embedding(ctx: Context) -> Any:
    """Rows are picked by token ids, so the vocabulary axis is blocked; the embedding
    axis passes to the output (and ties to a head that shares the weight)."""
    w, ids = ctx["weight"], ctx["indices"]
    tw = ctx.types(w)
    ctx.block(tw[0], "embedding rows are indexed by token ids")
    return ctx.types(ids) + [tw[1]]


@register("aten.scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
          "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_flash_attention")
def _sdpa(ctx: Context) -> Any:
    """softmax(q kᵀ) v per head: heads (a batch axis of q, k, v) move together, q and k
    share their feature permutation, v and the output share theirs, and keys may be
    permuted together with values (but they come from positions, which are blocked)."""
    q, k, v = ctx["query"], ctx["key"], ctx["value"]
    tq, tk, tv = ctx.types(q), ctx.types(k), ctx.types(v)
    sq, sk = ctx.shape(q), ctx.shape(k)
    ctx.unify(tq[-1], tk[-1])
    ctx.unify(tk[-2], tv[-2])
    ctx.g.add_role(tq[-1], "query/key dims")
    ctx.g.add_role(tv[-1], "value dims")
    nb = len(tq) - 2
    gqa = bool(ctx["enable_gqa"]) and nb >= 1 and sq[-3] != sk[-3]
    for i in range(nb):
        d = i - nb - 2
        cands = [t[d] for t, s in ((tq, sq), (tk, sk), (tv, ctx.shape(v))) if len(t) >= -d and s[d] != 1]
        if gqa and d == -3:
            hkv = sk[-3]
            parts = ctx.split_prod(tq[-3], [hkv, sq[-3] // hkv])
            if parts is not None:
                ctx.unify(parts[0], tk[-3])
                ctx.unify(parts[0], tv[-3])
                ctx.g.add_role(tk[-3], "heads")
                ctx.g.add_role(parts[1], "query heads per key head")
            continue
        for c in cands[1:]:
            ctx.unify(cands[0], c)
        if i == nb - 1 and nb >= 2:
            ctx.g.add_role(tq[d], "heads")
    mask = ctx["attn_mask"]
    if ctx.is_tensor(mask):
        tm, smk = ctx.types(mask), ctx.shape(mask)
        targets = tq[:-1] + [tk[-2]]
        full = [ctx.shape(q)[i] for i in range(nb)] + [sq[-2], sk[-2]]
        for i in range(1, len(tm) + 1):
            if smk[-i] != 1 and full[-i] == smk[-i]:
                ctx.unify(tm[-i], targets[-i])
    if ctx["is_causal"]:
        ctx.block(tq[-2], "causal attention depends on position order")
        ctx.block(tk[-2], "causal attention depends on position order")
    out = tq[:-1] + [tv[-1]]
    val = ctx.node.meta.get("val")
    if isinstance(val, (list, tuple)):
        return [out] + [_fresh_like(ctx, x, "attention side output") for x in val[1:]]
    return out


# ---------------------------------------------------------------------------------
# shape ops
# ---------------------------------------------------------------------------------
def reshape_types(ctx: Context, t: Types, in_shape: Sequence[int], out_shape: Sequence[int]) -> Types:
    """Layouts after a reshape: merged axes become products, split axes factors."""
    ins = [(layout, s) for layout, s in zip(t, in_shape) if s != 1]
    out_sizes = [s for s in out_shape if s != 1]
    result: list[Layout] = []
    i = 0
    j = 0
    while j < len(out_sizes) or i < len(ins):
        # gather the smallest chunk of input and output axes with equal products
        chunk_in = [ins[i]] if i < len(ins) else []
        chunk_out = [out_sizes[j]] if j < len(out_sizes) else []
        i += 1
        j += 1
        pin = chunk_in[0][1] if chunk_in else 1
        pout = chunk_out[0] if chunk_out else 1
        while pin != pout:
            if pin < pout and i < len(ins):
                chunk_in.append(ins[i])
                pin *= ins[i][1]
                i += 1
            elif pout < pin and j < len(out_sizes):
                chunk_out.append(out_sizes[j])
                pout *= out_sizes[j]
                j += 1
            else:
                break
        merged: Layout = chunk_in[0][0] if len(chunk_in) == 1 else Prod(tuple(x for x, _ in chunk_in))
        if pin != pout:
            ctx.block(merged, "reshape with mismatched sizes")
            result += [ctx.fresh(s) for s in chunk_out]
            continue
        if len(chunk_out) == 1:
            result.append(merged)
            continue
        parts = ctx.split_prod(merged, chunk_out)
        result += parts if parts is not None else [ctx.fresh(s) for s in chunk_out]
    # put size-1 axes back
    out: Types = []
    it = iter(result)
    for s in out_shape:
        out.append(ctx.fresh(1) if s == 1 else next(it))
    return out


@register("aten.view", "aten._unsafe_view", "aten.reshape", "aten.view_copy", "aten._reshape_alias",
          "aten.flatten", "aten.unflatten", "aten.view_as", "aten.reshape_as", "aten.squeeze",
          "aten.unsqueeze", "aten.squeeze_copy", "aten.unsqueeze_copy", "aten._unsafe_view_copy")
def _reshape(ctx: Context) -> Any:
    x = ctx.node.args[0]
    return reshape_types(ctx, ctx.types(x), ctx.shape(x), ctx.out_shape())


@register("aten.permute", "aten.transpose", "aten.t", "aten.movedim", "aten.swapaxes",
          "aten.swapdims", "aten.numpy_T", "aten.mT", "aten.permute_copy", "aten.transpose_copy",
          "aten.adjoint")
def _permute(ctx: Context) -> Any:
    x = ctx.node.args[0]
    t = ctx.types(x)
    n = len(t)
    if ctx.op in ("aten.permute", "aten.permute_copy"):
        order = [_dim(d, n) for d in ctx["dims"]]
        return [t[d] for d in order]
    if ctx.op == "aten.movedim":
        src, dst = ctx["source"], ctx["destination"]
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        order: list[int | None] = [None] * n
        for s, d in zip(src, dst):
            order[_dim(d, n)] = _dim(s, n)
        rest = iter(d for d in range(n) if d not in {_dim(s, n) for s in src})
        return [t[o if o is not None else next(rest)] for o in order]
    if ctx.op in ("aten.t", "aten.numpy_T") or n < 2 and ctx.op != "aten.transpose":
        return list(reversed(t))
    if ctx.op in ("aten.mT", "aten.adjoint"):
        return t[:-2] + [t[-1], t[-2]]
    a, b = ctx.node.args[1], ctx.node.args[2]
    a, b = _dim(a, n), _dim(b, n)
    out = list(t)
    out[a], out[b] = out[b], out[a]
    return out


@register("aten.expand", "aten.expand_as", "aten.expand_copy", "aten.broadcast_to")
def _expand(ctx: Context) -> Any:
    """Expanded axes repeat one value, so any permutation of them is harmless: free."""
    x = ctx.node.args[0]
    t, s = ctx.types(x), ctx.shape(x)
    out_shape = ctx.out_shape()
    lead = len(out_shape) - len(t)
    out: Types = [ctx.fresh(n, blocked=None) for n in out_shape[:lead]]
    for layout, si, so in zip(t, s, out_shape[lead:]):
        out.append(layout if si == so else ctx.fresh(so, blocked=None))
    return out


@register("aten.repeat")
def _repeat(ctx: Context) -> Any:
    """Tiles are identical, so the tile index may be permuted freely."""
    x = ctx.node.args[0]
    t, s = ctx.types(x), ctx.shape(x)
    reps = list(ctx["repeats"])
    lead = len(reps) - len(t)
    out: Types = [ctx.fresh(r, blocked=None) for r in reps[:lead]]
    for layout, si, r in zip(t, s, reps[lead:]):
        if r == 1:
            out.append(layout)
        elif si == 1:
            out.append(ctx.fresh(r, blocked=None))
        else:
            out.append(Prod((ctx.fresh(r, blocked=None), layout)))
    return out


@register("aten.repeat_interleave")
def _repeat_interleave(ctx: Context) -> Any:
    x = ctx["self"]
    reps, d = ctx["repeats"], ctx["dim"]
    if not isinstance(reps, int) or d is None or not ctx.is_tensor(x):
        return block_everything(ctx, "repeat_interleave with tensor repeats")
    t = ctx.types(x)
    d = _dim(d, len(t))
    out = list(t)
    out[d] = Prod((t[d], ctx.fresh(reps, blocked=None)))
    return out


@register("aten.slice", "aten.narrow", "aten.slice_copy")
def _slice(ctx: Context) -> Any:
    """A contiguous slice cuts the axis into pieces; units may still move within each."""
    x = ctx.node.args[0]
    t, s = ctx.types(x), ctx.shape(x)
    d = _dim(ctx["dim"] or 0, len(t))
    n = s[d]
    if ctx.op == "aten.narrow":
        start, length, step = ctx["start"], ctx["length"], 1
        start = start + n if start < 0 else start
        end = start + length
    else:
        start, end, step = ctx["start"], ctx["end"], ctx["step"] or 1
        start = 0 if start is None else (start + n if start < 0 else start)
        end = n if end is None else (end + n if end < 0 else end)
        start, end = max(0, min(start, n)), max(0, min(end, n))
    out = list(t)
    if step != 1:
        ctx.block(t[d], "strided slice")
        out[d] = ctx.fresh(ctx.out_shape()[d])
        return out
    if start == 0 and end == n:
        return out
    sizes = [x for x in (start, end - start, n - end)]
    pieces = ctx.split_sum(t[d], [x for x in sizes if x > 0])
    if pieces is None:
        out[d] = ctx.fresh(end - start)
        return out
    out[d] = pieces[1] if start > 0 else pieces[0]
    return out


@register("aten.split", "aten.split_with_sizes", "aten.chunk", "aten.tensor_split", "aten.unsafe_split",
          "aten.split_with_sizes_copy", "aten.unsafe_chunk")
def _split(ctx: Context) -> Any:
    x = ctx.node.args[0]
    t = ctx.types(x)
    d = _dim(ctx["dim"] or 0, len(t))
    outs = ctx.node.meta["val"]
    sizes = [int(o.shape[d]) for o in outs]
    pieces = ctx.split_sum(t[d], [s for s in sizes if s > 0])
    result = []
    it = iter(pieces or [])
    for s in sizes:
        o = list(t)
        o[d] = (next(it) if pieces is not None else ctx.fresh(s)) if s > 0 else ctx.fresh(0)
        result.append(o)
    return result


@register("aten.unbind", "aten.unbind_copy")
def _unbind(ctx: Context) -> Any:
    x = ctx.node.args[0]
    t = ctx.types(x)
    d = _dim(ctx["dim"] or 0, len(t))
    ctx.block(t[d], "unbind picks units by position")
    rest = [layout for i, layout in enumerate(t) if i != d]
    return [list(rest) for _ in range(ctx.shape(x)[d])]


@register("aten.select", "aten.select_copy")
def _select(ctx: Context) -> Any:
    x = ctx.node.args[0]
    t = ctx.types(x)
    d = _dim(ctx["dim"], len(t))
    ctx.block(t[d], "select picks a unit by position")
    return [layout for i, layout in enumerate(t) if i != d]


@register("aten.index_select")
def _index_select(ctx: Context) -> Any:
    x = ctx["self"]
    t = ctx.types(x)
    d = _dim(ctx["dim"], len(t))
    ctx.block(t[d], "index_select picks units by position")
    out = list(t)
    out[d] = ctx.fresh(ctx.out_shape()[d])
    return out


@register("aten.index")
def _index(ctx: Context) -> Any:
    """``x[..., idx, ...]`` with one index tensor: the indexed axis is blocked (units are
    picked by position); the other axes pass through around the index's own axes."""
    x, indices = ctx["self"], list(ctx["indices"])
    t = ctx.types(x)
    used = [k for k, i in enumerate(indices) if i is not None]
    if len(used) != 1 or not ctx.is_tensor(indices[used[0]]):
        return block_everything(ctx, "advanced indexing with several index tensors")
    k = used[0]
    idx = indices[k]
    if ctx.types(idx) and ctx.is_tensor(idx) and idx.meta["val"].dtype == torch.bool:
        return block_everything(ctx, "boolean mask indexing")
    ctx.block(t[k], "indexing picks units by position")
    return t[:k] + ctx.types(idx) + t[k + 1:]


@register("aten.cat", "aten.concat", "aten.concatenate")
def _cat(ctx: Context) -> Any:
    tensors = [a for a in ctx["tensors"] if ctx.is_tensor(a)]
    nonempty = [a for a in tensors if ctx.shape(a) != (0,)]
    if not nonempty:
        return ctx.fresh_types(ctx.out_shape())
    ndim = len(ctx.shape(nonempty[0]))
    d = _dim(ctx["dim"] or 0, ndim)
    first = ctx.types(nonempty[0])
    out = list(first)
    for a in nonempty[1:]:
        for i, layout in enumerate(ctx.types(a)):
            if i != d:
                ctx.unify(first[i], layout)
    parts = [ctx.types(a)[d] for a in nonempty]
    out[d] = parts[0] if len(parts) == 1 else Sum(tuple(parts))
    return out


@register("aten.stack")
def _stack(ctx: Context) -> Any:
    tensors = [a for a in ctx["tensors"] if ctx.is_tensor(a)]
    first = ctx.types(tensors[0])
    for a in tensors[1:]:
        for x, y in zip(first, ctx.types(a)):
            ctx.unify(x, y)
    d = _dim(ctx["dim"] or 0, len(first) + 1)
    out = list(first)
    out.insert(d, ctx.fresh(len(tensors), "stack index is a position"))
    return out


@register("aten.pad", "aten.constant_pad_nd", "aten.reflection_pad1d", "aten.reflection_pad2d",
          "aten.reflection_pad3d", "aten.replication_pad1d", "aten.replication_pad2d",
          "aten.replication_pad3d")
def _pad(ctx: Context) -> Any:
    x = ctx.node.args[0]
    t = ctx.types(x)
    pad = list(ctx["pad"] if "pad" in ctx.args else ctx["padding"])
    out = list(t)
    out_shape = ctx.out_shape()
    for k in range(len(pad) // 2):
        d = len(t) - 1 - k
        if pad[2 * k] or pad[2 * k + 1] or ctx.op != "aten.constant_pad_nd":
            ctx.block(t[d], "padded axis")
            out[d] = ctx.fresh(out_shape[d])
    return out


# ---------------------------------------------------------------------------------
# pooling and resampling: channels pass, spatial axes are blocked
# ---------------------------------------------------------------------------------
def _spatial_op(nsp: int) -> Rule:
    def rule(ctx: Context) -> Any:
        x = ctx.node.args[0]
        t = ctx.types(x)
        for layout in t[-nsp:]:
            ctx.block(layout, "spatial axis")
        val = ctx.node.meta.get("val")

        def one(v: torch.Tensor) -> Types:
            return t[:-nsp] + [ctx.fresh(int(s), "spatial axis") for s in v.shape[-nsp:]]

        if isinstance(val, (list, tuple)):
            return [one(v) for v in val]
        return one(val)

    return rule


for _k in (1, 2, 3):
    register(
        f"aten.max_pool{_k}d", f"aten.avg_pool{_k}d", f"aten.adaptive_avg_pool{_k}d",
        f"aten.adaptive_max_pool{_k}d", f"aten.max_pool{_k}d_with_indices", f"aten.lp_pool{_k}d",
        f"aten._adaptive_avg_pool{_k}d", f"aten.fractional_max_pool{_k}d",
    )(_spatial_op(_k))
register("aten.upsample_nearest1d", "aten._upsample_nearest_exact1d", "aten.upsample_linear1d")(_spatial_op(1))
register("aten.upsample_nearest2d", "aten.upsample_bilinear2d", "aten.upsample_bicubic2d",
         "aten._upsample_nearest_exact2d", "aten._upsample_bilinear2d_aa", "aten.grid_sampler_2d")(_spatial_op(2))
register("aten.upsample_nearest3d", "aten.upsample_trilinear3d")(_spatial_op(3))


# ---------------------------------------------------------------------------------
# bookkeeping ops
# ---------------------------------------------------------------------------------
@register("getitem")
def _getitem(ctx: Context) -> Any:
    src, i = ctx.node.args
    val = ctx.values.get(src)
    if isinstance(val, list) and isinstance(i, int) and i < len(val):
        return val[i]
    return block_everything(ctx, "getitem on an untracked value")


IGNORED = {"aten.sym_size", "aten.sym_numel", "aten.sym_stride", "aten._assert_async",
           "aten._assert_scalar", "aten.sym_constrain_range_for_size", "aten.item",
           "aten._local_scalar_dense", "aten.is_nonzero", "aten.sym_storage_offset",
           "aten._functional_assert_async", "aten.dim", "aten.size", "aten.numel"}

for _name in IGNORED:
    register(_name)(lambda ctx: None)

# Python-level scalar arithmetic on symbolic sizes produces no tensors.
for _fn in (operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv,
            operator.mod, operator.neg, operator.pow, operator.eq, operator.lt, operator.le,
            operator.gt, operator.ge, operator.ne):
    register(_fn.__name__)(lambda ctx: None)
