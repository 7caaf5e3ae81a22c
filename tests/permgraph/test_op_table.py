"""One row per op: a tiny model that uses it, its inputs, and the free groups ``infer`` must find.

Every row is also proven by ``permgraph.verify`` and checks that the traced graph really
contains the op it is about (``torch.export`` rewrites some calls, ``F.pad`` to ``aten.pad``
for instance). A row whose op blocks the hidden units names the tensor whose axis 0 it
blocks and a phrase of the reason. Adding an op is adding a row.

Most rows push a hidden layer through the op: ``Through(fn)`` is ``fc2(fn(fc1(x)))`` with 8
hidden units, so an op that commutes with permuting them leaves one free group of 8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import permgraph
from permgraph.rules import op_name


class Through(nn.Module):
    """``fc2(fn(fc1(x)))``: 4 inputs, ``width`` hidden units, ``fc2`` reads ``out`` features."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], width: int = 8, out: int | None = None):
        super().__init__()
        self.fc1, self.fc2, self.fn = nn.Linear(4, width), nn.Linear(out or width, 3), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fn(self.fc1(x)))


class ConvThrough(nn.Module):
    """``c2(fn(c1(x)))`` averaged over positions: 3 input channels, 8 hidden ones."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.c1, self.c2, self.fn = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 2, 1), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.fn(self.c1(x))).mean((2, 3))


class Affine(nn.Module):
    """``relu(fn(h, w, b))`` for a hand-held weight ``w`` (8, 8) and bias ``b`` (8): a layer
    written with the op under test."""

    def __init__(self, fn: Callable[..., torch.Tensor]):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.randn(8, 8) / 3), nn.Parameter(torch.randn(8) / 10)
        self.fn = fn

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fn(h, self.w, self.b))


class Attention(nn.Module):
    """Two heads of 4 dims over 3 positions, through ``attend(q, k, v)``."""

    def __init__(self, attend: Callable[..., torch.Tensor]):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
        self.attend = attend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (p(x).view(b, n, 2, 4).transpose(1, 2) for p in (self.q, self.k, self.v))
        return self.o(self.attend(q, k, v).transpose(1, 2).reshape(b, n, 8)).sum(1)


class ConcatSplit(nn.Module):
    """DenseNet-style concat of two parts, then a split back into them."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 5)
        self.c, self.d = nn.Linear(9, 6), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=-1)
        left, right = h.split([4, 5], dim=-1)
        return self.c(h) + self.d(left).sum(-1, keepdim=True) + right.mean(-1, keepdim=True)


class PickPositions(nn.Module):
    """Integer indexing of the position axis: the hidden units stay free."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 6), nn.Linear(6, 2)
        self.register_buffer("rows", torch.tensor([0, 2, 3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.relu(self.a(x))[:, self.rows]).sum(1)


class Recurrent(nn.Module):
    """``head(rnn(x)[0])`` averaged over time: 8 input features, 6 hidden units a layer."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1) if not rnn.proj_size else rnn.proj_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0]).mean(1)


class Unrolled(nn.Module):
    """A recurrent cell (8 features in, 6 hidden units) run over the positions of ``x``."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell, self.head = cell, nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = None
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return self.head(state[0] if isinstance(state, tuple) else state)


def randn(*shape: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(*shape),)


VECTORS, IMAGES, SEQUENCES = randn(2, 4), randn(2, 3, 6, 6), randn(2, 3, 8)


def conv_stack(*layers: nn.Module, channels: int = 3) -> Callable[[], nn.Module]:
    """``Conv2d(channels, 8, 1)``, the layers, then a flatten of the (batch, c, 1, 1) result."""
    return lambda: nn.Sequential(nn.Conv2d(channels, 8, 1), *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


@dataclass(frozen=True)
class Row:
    """``op`` must appear in the graph of ``model()`` on ``inputs()``; the sorted sizes of the
    free groups are ``free``; ``blocked`` = (tensor, phrase): that tensor's axis 0 is blocked
    with a reason containing the phrase."""

    op: str
    model: Callable[[], nn.Module]
    inputs: Callable[[], tuple[torch.Tensor, ...]]
    free: tuple[int, ...]
    blocked: tuple[str, str] | None = None
    name: str = ""


ORDER = ("fc1.weight", "depends on the order of units")

TABLE = [
    # pointwise
    Row("aten.relu", lambda: Through(F.relu), VECTORS, (8,)),
    Row("aten.gelu", lambda: Through(F.gelu), VECTORS, (8,)),
    Row("aten.add", lambda: Through(lambda h: h + torch.ones(8)), VECTORS, (8,), name="broadcast a constant"),
    Row("aten.mul", lambda: Through(lambda h: h * torch.sigmoid(h)), VECTORS, (8,)),
    Row("aten.where", lambda: Through(lambda h: torch.where(h > 0, h, 0.1 * h)), VECTORS, (8,)),
    Row("aten.type_as", lambda: Through(lambda h: h.type_as(h) * 2), VECTORS, (8,)),
    Row("aten.dropout", lambda: Through(lambda h: F.dropout(h, 0.5, training=False)), VECTORS, (8,)),
    Row("aten.prelu", lambda: nn.Sequential(nn.Linear(4, 8), nn.PReLU(8), nn.Linear(8, 3)), VECTORS, (8,)),
    Row("aten.special_i0", lambda: Through(torch.special.i0), VECTORS, (),
        ("fc1.weight", "aten.special_i0 (special_i0): no rule"), name="an op without a rule"),
    # factories
    Row("aten.zeros", lambda: Through(lambda h: h + torch.zeros(8)), VECTORS, (8,)),
    Row("aten.arange", lambda: Through(lambda h: h + torch.arange(8)), VECTORS, (),
        ("fc1.weight", "values depend on position")),
    # reductions and softmax
    Row("aten.mean", lambda: Through(lambda h: h - h.mean(-1, keepdim=True)), VECTORS, (8,)),
    Row("aten.sum", lambda: Through(lambda h: h / h.sum()), VECTORS, (8,)),
    Row("aten.amax", lambda: Through(lambda h: h - h.amax(-1, keepdim=True)), VECTORS, (8,)),
    Row("aten.softmax", lambda: Through(lambda h: h.softmax(-1)), VECTORS, (8,)),
    Row("aten.var_mean", lambda: Through(lambda h: torch.var_mean(h, -1, keepdim=True)[0] * h), VECTORS, (8,)),
    Row("aten.argmax", lambda: Through(lambda h: h.argmax(-1, keepdim=True).float() * h), VECTORS, (),
        ("fc1.weight", "index of the maximum")),
    Row("aten.max", lambda: Through(lambda h: h.max(-1, keepdim=True).indices * h), VECTORS, (),
        ("fc1.weight", "indices of the maximum"), name="max with indices"),
    # order-dependent
    Row("aten.cumsum", lambda: Through(lambda h: h.cumsum(-1)), VECTORS, (), ORDER),
    Row("aten.sort", lambda: Through(lambda h: h.sort(-1).values), VECTORS, (), ORDER),
    Row("aten.roll", lambda: Through(lambda h: h.roll(1, dims=-1)), VECTORS, (), ORDER),
    Row("aten.flip", lambda: Through(lambda h: h.flip(-1)), VECTORS, (), ORDER),
    # contractions
    Row("aten.linear", lambda: nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 3)),
        VECTORS, (7, 9)),
    Row("aten.addmm", lambda: Through(Affine(lambda h, w, b: torch.addmm(b, h, w.t()))), VECTORS, (8, 8)),
    Row("aten.einsum", lambda: Through(Affine(lambda h, w, b: torch.einsum("bi,oi->bo", h, w) + b)), VECTORS, (8, 8)),
    Row("aten.matmul", lambda: Attention(lambda q, k, v: (q @ k.transpose(-1, -2)).softmax(-1) @ v), SEQUENCES,
        (2, 4, 4), name="attention by hand"),
    # convolutions
    Row("aten.conv2d", conv_stack(nn.ReLU(), nn.Conv2d(8, 2, 3)), IMAGES, (8,)),
    Row("aten.conv2d", conv_stack(nn.ReLU(), nn.Conv2d(8, 8, 3, groups=4), nn.ReLU(), nn.Conv2d(8, 2, 1)), IMAGES,
        (2, 2, 4), name="grouped"),
    Row("aten.conv2d", conv_stack(nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8), nn.ReLU(), nn.Conv2d(8, 2, 1)), IMAGES,
        (8,), name="depthwise"),
    Row("aten.conv_transpose2d", conv_stack(nn.ReLU(), nn.ConvTranspose2d(8, 6, 3), nn.ReLU(), nn.Conv2d(6, 2, 1)),
        IMAGES, (6, 8)),
    Row("aten.conv1d", lambda: nn.Sequential(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.Conv1d(8, 2, 1), nn.Flatten()),
        randn(2, 3, 7), (8,)),
    # normalisation
    Row("aten.batch_norm", conv_stack(nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 1)), IMAGES, (8,)),
    Row("aten.layer_norm", lambda: nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3)),
        VECTORS, (8,)),
    Row("aten.rms_norm", lambda: nn.Sequential(nn.Linear(4, 8), nn.RMSNorm(8), nn.ReLU(), nn.Linear(8, 3)),
        VECTORS, (8,)),
    Row("aten.group_norm", conv_stack(nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 2, 1)), IMAGES, (2, 4)),
    Row("aten.instance_norm", conv_stack(nn.InstanceNorm2d(8, affine=True), nn.ReLU(), nn.Conv2d(8, 2, 1)), IMAGES,
        (8,)),
    # embedding and attention
    Row("aten.embedding", lambda: nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)),
        lambda: (torch.randint(0, 10, (2, 3)),), (5, 6), ("0.weight", "indexed by token ids")),
    Row("aten.scaled_dot_product_attention", lambda: Attention(F.scaled_dot_product_attention), SEQUENCES, (2, 4, 4)),
    Row("aten.scaled_dot_product_attention",
        lambda: Attention(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)), SEQUENCES,
        (2, 4, 4), name="causal"),
    # shapes
    Row("aten.flatten", lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)),
        randn(1, 2, 6, 6), (3,), name="channels flattened with positions"),
    Row("aten.view", lambda: Through(lambda h: h.view(-1, 2, 4).relu().view(-1, 8)), VECTORS, (2, 4),
        name="split into factors, which stay apart"),
    Row("aten.permute", lambda: Through(lambda h: h.view(-1, 2, 4).permute(0, 2, 1).reshape(-1, 8)), VECTORS, (2, 4)),
    Row("aten.transpose", lambda: Through(lambda h: h.view(-1, 2, 4).transpose(1, 2).reshape(-1, 8)), VECTORS,
        (2, 4), name="channel shuffle"),
    Row("aten.expand", lambda: Through(lambda h: h.unsqueeze(1).expand(-1, 5, -1).mean(1)), VECTORS, (8,)),
    Row("aten.repeat", lambda: Through(lambda h: h.repeat(1, 2), out=16), VECTORS, (8,)),
    # slicing, joining, picking
    Row("aten.cat", lambda: ConcatSplit(), randn(2, 3), (2, 4, 5), name="concat then split"),
    Row("aten.chunk", lambda: Through(lambda h: torch.cat(h.chunk(2, -1)[::-1], -1)), VECTORS, (4, 4)),
    Row("aten.slice", lambda: Through(lambda h: h[:, :3], out=3), VECTORS, (3, 5)),  # 5 units nobody reads
    Row("aten.slice", lambda: Through(lambda h: h[:, ::2], out=4), VECTORS, (), ("fc1.weight", "strided slice"),
        name="strided"),
    Row("aten.narrow", lambda: Through(lambda h: h.narrow(1, 2, 4), out=4), VECTORS, (2, 2, 4)),
    Row("aten.stack", lambda: Through(lambda h: torch.stack([h, 2 * h], 1).sum(1)), VECTORS, (8,)),
    Row("aten.select", lambda: Through(lambda h: h * h[:, 0].unsqueeze(1)), VECTORS, (),
        ("fc1.weight", "select picks a unit by position")),
    Row("aten.index", lambda: PickPositions(), randn(2, 5, 3), (6,), name="positions picked"),
    Row("aten.index_select", lambda: Through(lambda h: h.index_select(1, torch.tensor([1, 0, 2, 3, 4, 5, 6, 7]))),
        VECTORS, (), ("fc1.weight", "index_select picks units by position")),
    Row("aten.unbind", lambda: Through(lambda h: torch.stack(h.unbind(1), 1)), VECTORS, (),
        ("fc1.weight", "unbind picks units by position")),
    Row("aten.pad", lambda: Through(lambda h: F.pad(h, (1, 1)), out=10), VECTORS, (), ("fc1.weight", "padded axis")),
    Row("aten.constant_pad_nd", lambda: Through(lambda h: torch.constant_pad_nd(h, (0, 0, 1, 1))), VECTORS, (8,),
        name="another axis padded"),
    # recurrent layers: one group of hidden units per layer and direction
    Row("aten.lstm", lambda: Recurrent(nn.LSTM(8, 6, num_layers=2, batch_first=True)), SEQUENCES, (6, 6)),
    Row("aten.gru", lambda: Recurrent(nn.GRU(8, 6, bidirectional=True, batch_first=True)), SEQUENCES, (6, 6),
        name="bidirectional"),
    Row("aten.rnn_tanh", lambda: Recurrent(nn.RNN(8, 6, batch_first=True)), SEQUENCES, (6,)),
    Row("aten.rnn_relu", lambda: Recurrent(nn.RNN(8, 6, nonlinearity="relu")), SEQUENCES, (6,), name="time first"),
    Row("aten.lstm", lambda: Recurrent(nn.LSTM(8, 6, proj_size=4, batch_first=True)), SEQUENCES, (),
        ("rnn.weight_ih_l0", "proj_size"), name="projections"),
    Row("aten.lstm_cell", lambda: Unrolled(nn.LSTMCell(8, 6)), SEQUENCES, (6,)),
    Row("aten.gru_cell", lambda: Unrolled(nn.GRUCell(8, 6)), SEQUENCES, (6,)),
    Row("aten.rnn_tanh_cell", lambda: Unrolled(nn.RNNCell(8, 6)), SEQUENCES, (6,)),
    # pooling and resampling
    Row("aten.max_pool2d", conv_stack(nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 2, 1)), IMAGES, (8,)),
    Row("aten.avg_pool2d", conv_stack(nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 2, 1)), IMAGES, (8,)),
    Row("aten.adaptive_avg_pool2d", lambda: ConvThrough(lambda h: F.adaptive_avg_pool2d(h.relu(), 2)), IMAGES, (8,)),
    Row("aten.upsample_nearest2d", lambda: ConvThrough(lambda h: F.interpolate(h.relu(), scale_factor=2)), IMAGES,
        (8,)),
    Row("aten.pixel_shuffle", conv_stack(nn.PixelShuffle(2), nn.ReLU(), nn.Conv2d(2, 2, 3)), IMAGES, (2,)),
    Row("aten.pixel_unshuffle", conv_stack(nn.PixelUnshuffle(2), nn.ReLU(), nn.Conv2d(32, 2, 1)), IMAGES, (8,)),
    # routing (tests/permgraph/test_moe.py has the routed-experts models)
    Row("aten.topk", lambda: Through(lambda h: h * h.topk(2, -1).values.sum(-1, keepdim=True)), VECTORS, (8,),
        name="values"),
    Row("aten.topk", lambda: Through(lambda h: h * h.topk(2, -1).indices.sum(-1, keepdim=True)), VECTORS, (),
        ("fc1.weight", "reads them as numbers"), name="indices as numbers"),
    Row("aten.gather", lambda: Through(lambda h: h.gather(1, torch.tensor([[1, 0, 2, 3, 4, 5, 6, 7]]).expand(2, 8))),
        VECTORS, (), ("fc1.weight", "gather picks units by position")),
    Row("aten.index_add", lambda: Through(lambda h: torch.zeros(2, 8).index_add(0, torch.tensor([1, 0]), h)), VECTORS,
        (8,)),
    Row("aten.scatter", lambda: Through(lambda h: torch.zeros_like(h).scatter(-1, *h.topk(3, -1)[::-1])), VECTORS, (8,),
        name="k winners take all"),
    Row("aten.scatter_add", lambda: Through(lambda h: h.scatter_add(1, torch.tensor([[1, 0], [2, 2]]), h[:, :2])),
        VECTORS, (), ("fc1.weight", "scatter writes units by position")),
]


def row_id(row: Row) -> str:
    return row.op.removeprefix("aten.") + (f" ({row.name})" if row.name else "")


@pytest.mark.parametrize("row", TABLE, ids=row_id)
def test_op(row: Row):
    torch.manual_seed(0)
    model, args = row.model(), row.inputs()
    spec, analysis = permgraph.infer(model, args, return_analysis=True)
    ops = {op_name(n.target) for n in analysis.traced.graph.nodes if n.op == "call_function"}
    assert row.op in ops, f"the graph has no {row.op}: {sorted(ops)}"
    assert tuple(sorted(g.size for g in spec.free_groups)) == row.free, spec
    if row.blocked is not None:
        param, phrase = row.blocked
        groups = [g for g in spec.groups if any(m.param == param and m.axis == 0 for m in g.members)]
        assert groups and all(not g.is_free and phrase in g.blocked for g in groups), [g.blocked for g in groups]
    report = permgraph.verify(model, spec, args)
    assert report.ok, f"{report}\n{spec}"


def test_row_ids_are_unique():
    ids = [row_id(r) for r in TABLE]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
