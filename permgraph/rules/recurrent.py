"""Recurrent layers: ``aten.lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu`` and their cells.

A recurrent layer's hidden units may be permuted: every gate of unit ``j`` reads and
writes unit ``j`` only, so one permutation of the hidden units, applied to the rows of each
gate's block of ``weight_ih`` / ``weight_hh`` / the biases and to the columns of
``weight_hh``, gives the same outputs with their last axis permuted. The gate rows are
``Prod(gates, hidden)``: the gates sit at fixed positions (input, forget, cell, output for
an LSTM), the hidden permutation is shared by all of them.

Each layer and direction has its own hidden units; layer ``l``'s output (both directions
concatenated: a ``Sum``) is layer ``l + 1``'s input. The time axis is blocked (a recurrence
depends on the order of steps). The initial and final states ``(layers · directions,
batch, hidden)`` hold one layer's units per slice of their first axis: with one layer and
direction that is simply its hidden units; a final state only ever indexed slice by slice
(``h_n[-1]``) gives each slice its layer's units; a zero initial state is left alone (a
permutation does not change it); anything else ties all layers' hidden units into one
group, which is sound and coarser. A form the rules do not follow (``proj_size``, packed
sequences) blocks every axis with the reason.
"""

from __future__ import annotations

from typing import Any

import torch.fx

from permgraph.axisgraph import Layout, Prod, Sum
from permgraph.rules.context import AxisLayouts, Context, RuleOutput, TupleLayouts, block_everything, op_name, register
from permgraph.rules.shape import picked_one_by_one

GATES = {"aten.lstm": 4, "aten.gru": 3, "aten.rnn_tanh": 1, "aten.rnn_relu": 1,
         "aten.lstm_cell": 4, "aten.gru_cell": 3, "aten.rnn_tanh_cell": 1, "aten.rnn_relu_cell": 1}
# initial states made by these are constant: every permutation leaves them unchanged
CONSTANT_FACTORIES = {"aten.zeros", "aten.zeros_like", "aten.new_zeros", "aten.full", "aten.full_like",
                      "aten.new_full", "aten.scalar_tensor"}
ROLE = "recurrent hidden units"


def _tie_weights(ctx: Context, gates: int, weights: list[Any], inp: Layout) -> Layout | None:
    """Tie one layer-direction's ``w_ih, w_hh[, b_ih, b_hh]`` to a new hidden-unit atom and
    ``inp`` (its input features); None when the shapes are not ``(gates·H, ·)``."""
    w_ih, w_hh, *biases = weights
    size = ctx.shape(w_hh)[1] if len(ctx.shape(w_hh)) == 2 else -1
    rows = gates * size
    if ctx.shape(w_hh) != (rows, size) or ctx.shape(w_ih)[:1] != (rows,) or any(
            ctx.shape(b) != (rows,) for b in biases):
        return None
    hidden = ctx.fresh(size, blocked=None, role=ROLE)
    gate_rows = Prod((ctx.fresh(gates, "gates sit at fixed positions"), hidden))
    ctx.unify(ctx.layouts(w_ih)[0], gate_rows)
    ctx.unify(ctx.layouts(w_ih)[1], inp)
    ctx.unify(ctx.layouts(w_hh)[0], gate_rows)
    ctx.unify(ctx.layouts(w_hh)[1], hidden)
    for b in biases:
        ctx.unify(ctx.layouts(b)[0], gate_rows)
    return hidden


def _tie_initial_state(ctx: Context, h0: Any, batch: Layout, hidden: list[Layout]) -> None:
    """``h0`` / ``c0`` ``(layers · directions, batch, hidden)``: see the module docstring."""
    t = ctx.layouts(h0)
    if len(t) != 3:
        for layout in t:
            ctx.block(layout, "initial state of an unexpected shape")
        for h in hidden:
            ctx.block(h, "initial state of an unexpected shape")
        return
    ctx.block(t[0], "the layer of each slice is fixed by its position")
    ctx.unify(t[1], batch)
    source = h0.target if isinstance(h0, torch.fx.Node) else None
    if len(hidden) > 1 and source is not None and op_name(source) in CONSTANT_FACTORIES:
        return
    for h in hidden:
        ctx.unify(t[2], h)


def _final_state(ctx: Context, k: int, batch: Layout, hidden: list[Layout]) -> AxisLayouts:
    """Output ``k`` (``h_n`` or ``c_n``), ``(layers · directions, batch, hidden)``."""
    position = ctx.fresh(len(hidden), "the layer of each slice is fixed by its position")
    if len(hidden) == 1:
        return [position, batch, hidden[0]]
    users = [u for u in ctx.node.users if u.op == "call_function" and u.args[1:] == (k,)]
    if all(picked_one_by_one(u, 0) for u in users):
        stand_in = ctx.fresh(ctx.g.size(hidden[0]), blocked=None)
        ctx.g.add_slices(position, tuple({stand_in: h} for h in hidden))
        return [position, batch, stand_in]
    for h in hidden[1:]:
        ctx.unify(hidden[0], h)
    return [position, batch, hidden[0]]


@register("aten.lstm", "aten.gru", "aten.rnn_tanh", "aten.rnn_relu")
def _recurrent(ctx: Context) -> RuleOutput:
    """A whole (multi-layer, possibly bidirectional) recurrent layer over a sequence."""
    if ctx["batch_sizes"] is not None:
        return block_everything(ctx, "packed sequences are not followed")
    x, params = ctx["input"], list(ctx["params"])
    layers, dirs = int(ctx["num_layers"]), 2 if ctx["bidirectional"] else 1
    per = 4 if ctx["has_biases"] else 2
    tx = ctx.layouts(x)
    if len(params) != layers * dirs * per or len(tx) != 3:
        return block_everything(ctx, "recurrent layer with projections (proj_size) or an unexpected parameter list")
    time_axis, batch_axis = (1, 0) if ctx["batch_first"] else (0, 1)
    ctx.block(tx[time_axis], "a recurrence depends on the order of time steps")
    gates, inp, hidden = GATES[ctx.op], tx[-1], []
    for layer in range(layers):
        here = []
        for d in range(dirs):
            start = (layer * dirs + d) * per
            h = _tie_weights(ctx, gates, params[start:start + per], inp)
            if h is None:
                return block_everything(ctx, "recurrent weights of unexpected shapes (proj_size?)")
            here.append(h)
        hidden += here
        inp = here[0] if dirs == 1 else Sum(tuple(here))
    batch = tx[batch_axis]
    hx = ctx["hx"]
    for h0 in hx if isinstance(hx, (list, tuple)) else [hx]:
        _tie_initial_state(ctx, h0, batch, hidden)
    out: AxisLayouts = [batch, batch]
    out[time_axis] = ctx.fresh(ctx.out_shape(0)[time_axis], "time steps of a recurrence")
    out.append(inp)
    states = len(ctx.example_output) - 1
    return TupleLayouts((out, *(_final_state(ctx, k, batch, hidden) for k in range(1, states + 1))))


@register("aten.lstm_cell", "aten.gru_cell", "aten.rnn_tanh_cell", "aten.rnn_relu_cell")
def _cell(ctx: Context) -> RuleOutput:
    """One step: ``(batch, input)`` and the state ``(batch, hidden)`` to the next state."""
    x, hx = ctx["input"], ctx["hx"]
    weights = [ctx["w_ih"], ctx["w_hh"]] + [b for b in (ctx["b_ih"], ctx["b_hh"]) if ctx.is_tensor(b)]
    tx = ctx.layouts(x)
    states = list(hx) if isinstance(hx, (list, tuple)) else [hx]
    h = _tie_weights(ctx, GATES[ctx.op], weights, tx[-1]) if tx else None
    if h is None or len(weights) not in (2, 4):
        return block_everything(ctx, "recurrent cell weights of unexpected shapes")
    for s in states:
        ts = ctx.layouts(s)
        ctx.unify(ts[-1], h)
        for a, b in zip(ts[:-1], tx[:-1]):
            ctx.unify(a, b)
    out = tx[:-1] + [h]
    if isinstance(ctx.example_output, (list, tuple)):
        return TupleLayouts(tuple(list(out) for _ in ctx.example_output))
    return out
