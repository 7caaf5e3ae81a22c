"""Recurrent layers: the hidden units of each layer and direction are one group, with the
gates' block structure (rows = gates × hidden, one permutation shared by every gate).

Besides ``verify``, a hand check that does not use permgraph: permute one layer's hidden
units by plain indexing (every gate's rows of ``weight_ih`` / ``weight_hh`` / biases, the
columns of ``weight_hh`` and of whatever reads the layer) and compare the outputs in
float64; permuting the rows but forgetting ``weight_hh``'s columns must move them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import permgraph

HIDDEN = 6
GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


class Net(nn.Module):
    """``rnn`` over (batch, time, 5) features, a head on its output; with ``use_final`` also
    on the last layer's final state ``h_n[-1]``; ``h0`` given by the caller when passed."""

    def __init__(self, rnn: nn.RNNBase, use_final: bool = False):
        super().__init__()
        self.rnn, self.use_final = rnn, use_final
        width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.head, self.final = nn.Linear(width, 3), nn.Linear(rnn.hidden_size, 3)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        if not self.rnn.batch_first:
            x = x.transpose(0, 1)
        y, state = self.rnn(x) if h0 is None else self.rnn(x, h0)
        if not self.rnn.batch_first:
            y = y.transpose(0, 1)
        out = self.head(y).mean(1)
        if self.use_final:
            hn = state[0] if isinstance(state, tuple) else state
            out = out + self.final(hn[-1])
        return out


def _verified(model: nn.Module, *args: torch.Tensor) -> permgraph.PermSpec:
    spec = permgraph.infer(model, args)
    report = permgraph.verify(model, spec, args, control=True)
    assert report.ok, f"{report}\n{spec}"
    if spec.free_groups:
        assert report.control_diff > 1e-6 * report.max_abs_output, report
    return spec


def _hidden_groups(spec: permgraph.PermSpec) -> list[permgraph.Group]:
    return [g for g in spec.free_groups if "recurrent hidden units" in g.structure]


def _permute_hidden(model: Net, layer: int, suffix: str, perm: torch.Tensor, readers: list[tuple[str, int]],
                    columns: bool = True) -> dict[str, torch.Tensor]:
    """The state dict with layer ``layer``'s hidden units (direction ``suffix``) permuted by
    hand; ``readers`` are (key, column offset) of the tensors that read them."""
    gates = GATES[type(model.rnn)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = (torch.arange(gates)[:, None] * HIDDEN + perm[None, :]).reshape(-1)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        key = f"rnn.{name}_l{layer}{suffix}"
        state[key] = state[key][rows]
    if columns:
        key = f"rnn.weight_hh_l{layer}{suffix}"
        state[key] = state[key][:, perm]
    for key, offset in readers:
        cols = torch.arange(state[key].shape[1])
        cols[offset:offset + HIDDEN] = offset + perm
        state[key] = state[key][:, cols]
    return state


def _moved(model: Net, state: dict[str, torch.Tensor], x: torch.Tensor) -> float:
    """max |Δoutput| / max |output| under ``state``, in float64."""
    model = model.double().eval()
    original = model.state_dict()
    with torch.no_grad():
        y0 = model(x.double())
        model.load_state_dict({k: v.double() for k, v in state.items()})
        y1 = model(x.double())
        model.load_state_dict(original)
    return float((y1 - y0).abs().max() / y0.abs().max())


def _model(cls: type[nn.RNNBase], **kw) -> Net:
    torch.manual_seed(0)
    use_final = kw.pop("use_final", False)
    return Net(cls(5, HIDDEN, **kw), use_final).double()


X = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0)).double()
PERM = torch.tensor([3, 0, 5, 1, 4, 2])


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("batch_first", [True, False])
def test_one_layer_hidden_units_are_one_group_and_permute_exactly_by_hand(cls, batch_first):
    model = _model(cls, batch_first=batch_first)
    spec = _verified(model, X)
    groups = _hidden_groups(spec)
    assert len(groups) == 1 and groups[0].size == HIDDEN
    members = {(m.param, m.axis): m for m in groups[0].members}
    gates = GATES[cls]
    assert members[("rnn.weight_ih_l0", 0)].sizes == ((gates, HIDDEN) if gates > 1 else (HIDDEN,))
    assert ("rnn.weight_hh_l0", 1) in members and ("head.weight", 1) in members
    assert _moved(model, _permute_hidden(model, 0, "", PERM, [("head.weight", 0)]), X) < 1e-12
    assert _moved(model, _permute_hidden(model, 0, "", PERM, [("head.weight", 0)], columns=False), X) > 1e-4


def test_stacked_lstm_layers_have_their_own_hidden_units():
    model = _model(nn.LSTM, num_layers=2, batch_first=True, use_final=True)
    spec = _verified(model, X)
    groups = _hidden_groups(spec)
    assert len(groups) == 2
    by_layer = {next(m.param for m in g.members if m.param.startswith("rnn.weight_hh")): g for g in groups}
    assert set(by_layer) == {"rnn.weight_hh_l0", "rnn.weight_hh_l1"}
    # layer 0's units are what layer 1 reads; layer 1's are what the heads read (h_n[-1] too)
    assert ("rnn.weight_ih_l1", 1) in {(m.param, m.axis) for m in by_layer["rnn.weight_hh_l0"].members}
    assert {("head.weight", 1), ("final.weight", 1)} <= {(m.param, m.axis) for m in by_layer["rnn.weight_hh_l1"].members}
    assert _moved(model, _permute_hidden(model, 0, "", PERM, [("rnn.weight_ih_l1", 0)]), X) < 1e-12
    last = _permute_hidden(model, 1, "", PERM, [("head.weight", 0), ("final.weight", 0)])
    assert _moved(model, last, X) < 1e-12
    assert _moved(model, _permute_hidden(model, 1, "", PERM, [("head.weight", 0)]), X) > 1e-4  # h_n forgotten


def test_bidirectional_gru_directions_are_separate_groups_side_by_side():
    model = _model(nn.GRU, num_layers=2, bidirectional=True, use_final=True)
    spec = _verified(model, X)
    assert len(_hidden_groups(spec)) == 4
    # the output concatenates the directions: the backward units sit at offset HIDDEN
    backward = next(g for g in _hidden_groups(spec) if any(m.param == "rnn.weight_hh_l1_reverse" for m in g.members))
    assert {m.offset for m in backward.members if m.param == "head.weight" and m.axis == 1} == {HIDDEN}
    state = _permute_hidden(model, 1, "_reverse", PERM, [("head.weight", HIDDEN), ("final.weight", 0)])
    assert _moved(model, state, X) < 1e-12
    state = _permute_hidden(model, 0, "_reverse", PERM, [("rnn.weight_ih_l1", HIDDEN), ("rnn.weight_ih_l1_reverse", HIDDEN)])
    assert _moved(model, state, X) < 1e-12


def test_final_state_used_whole_ties_the_layers_soundly():
    class Whole(Net):
        def forward(self, x):
            y, (hn, _) = self.rnn(x)
            return self.head(y).mean(1) + self.final(hn.sum(0))

    torch.manual_seed(0)
    model = Whole(nn.LSTM(5, HIDDEN, num_layers=2, batch_first=True)).double()
    spec = _verified(model, X)
    assert len(_hidden_groups(spec)) == 1  # hn.sum(0) adds the layers' units: one permutation for both


def test_initial_state_from_the_caller_blocks_the_hidden_units():
    model = _model(nn.GRU, batch_first=True)
    h0 = torch.randn(1, 2, HIDDEN).double()
    spec = permgraph.infer(model, (X, h0))
    assert not _hidden_groups(spec)
    blocked = [g for g in spec.blocked_groups if any(m.param == "rnn.weight_hh_l0" and m.axis == 1 for m in g.members)]
    assert blocked and "model input" in blocked[0].blocked


def test_learned_initial_state_moves_with_the_hidden_units():
    class Learned(Net):
        def __init__(self):
            super().__init__(nn.GRU(5, HIDDEN, num_layers=2, batch_first=True))
            self.h0 = nn.Parameter(torch.randn(2, 1, HIDDEN))

        def forward(self, x):
            y, _ = self.rnn(x, self.h0.expand(-1, x.shape[0], -1).contiguous())
            return self.head(y).mean(1)

    torch.manual_seed(0)
    spec = _verified(Learned().double(), X)
    groups = _hidden_groups(spec)
    assert len(groups) == 1 and any(m.param == "h0" for m in groups[0].members)


def test_lstm_with_projections_is_blocked_with_its_reason():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.rnn = nn.LSTM(5, HIDDEN, proj_size=4, batch_first=True)
    spec = permgraph.infer(model, (X.float(),))
    reasons = [g.blocked for g in spec.groups if any(m.param == "rnn.weight_hh_l0" for m in g.members)]
    assert reasons and all("proj_size" in r for r in reasons)


@pytest.mark.parametrize("cell", [nn.LSTMCell, nn.GRUCell, nn.RNNCell])
def test_cells_unrolled_by_hand_share_their_hidden_units_over_steps(cell):
    class Unrolled(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell, self.head = cell(5, HIDDEN), nn.Linear(HIDDEN, 3)

        def forward(self, x):
            state = None
            for t in range(x.shape[1]):
                state = self.cell(x[:, t], state)
            h = state[0] if isinstance(state, tuple) else state
            return self.head(h)

    torch.manual_seed(0)
    model = Unrolled().double()
    spec = _verified(model, X)
    groups = _hidden_groups(spec)
    assert len(groups) == 1 and groups[0].size == HIDDEN
    gates = {nn.LSTMCell: 4, nn.GRUCell: 3, nn.RNNCell: 1}[cell]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = (torch.arange(gates)[:, None] * HIDDEN + PERM[None, :]).reshape(-1)
    for k in ("cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh"):
        state[k] = state[k][rows]
    state["cell.weight_hh"] = state["cell.weight_hh"][:, PERM]
    state["head.weight"] = state["head.weight"][:, PERM]
    with torch.no_grad():
        y0 = model(X)
        model.load_state_dict(state)
        assert float((model(X) - y0).abs().max() / y0.abs().max()) < 1e-12
