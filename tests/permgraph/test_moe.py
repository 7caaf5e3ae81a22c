"""Routed experts (mixture of experts): a router's top-k picks experts, whose weights are
stacked along an experts axis and read by the routing indices, or kept as separate modules
run in a loop. What may move, checked by hand as well as by ``verify``:

- each expert's hidden units (its FFN width), one permutation shared by all experts when the
  weights are stacked, one per expert module in the loop forms;
- the experts themselves, together with the router's output rows, when the indices only pick
  slices of the stacked weights (``w[idx]``, ``index_select``, ``gather``); blocked, with the
  reason, when a loop compares the indices with fixed expert numbers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import permgraph
from tests.permgraph.by_hand import output_with

D, H, E, T = 6, 5, 4, 7


class Stacked(nn.Module):
    """Top-``k`` routing; expert weights stacked as ``(E, H, D)`` and indexed by the routing result."""

    def __init__(self, k: int = 2, experts: int = E):
        super().__init__()
        self.k = k
        self.inp, self.router, self.out = nn.Linear(3, D), nn.Linear(D, experts), nn.Linear(D, 2)
        self.w1 = nn.Parameter(torch.randn(experts, H, D) / 2)
        self.b1 = nn.Parameter(torch.randn(experts, H) / 5)
        self.w2 = nn.Parameter(torch.randn(experts, D, H) / 2)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.router(x).softmax(-1).topk(self.k, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        weight, idx = self.route(x)
        hidden = (torch.einsum("tkhd,td->tkh", self.w1[idx], x) + self.b1[idx]).relu()
        y = torch.einsum("tkdh,tkh->tkd", self.w2[idx], hidden)
        return self.out((weight.unsqueeze(-1) * y).sum(1))


class StackedSelect(Stacked):
    """Top-1 routing through ``index_select`` on the flattened indices."""

    def __init__(self):
        super().__init__(k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        weight, idx = self.route(x)
        w1 = self.w1.index_select(0, idx.flatten())  # (T, H, D)
        w2 = self.w2.index_select(0, idx.reshape(-1))
        hidden = torch.einsum("thd,td->th", w1, x).relu()
        return self.out(weight * torch.einsum("tdh,th->td", w2, hidden))


class DenseGather(Stacked):
    """Every expert runs on every token; the routed outputs are gathered along the experts axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        weight, idx = self.route(x)
        hidden = (torch.einsum("ehd,td->teh", self.w1, x) + self.b1).relu()
        y = torch.einsum("edh,teh->ted", self.w2, hidden)  # (T, E, D)
        picked = y.gather(1, idx.unsqueeze(-1).expand(-1, -1, D))  # (T, k, D)
        return self.out((weight.unsqueeze(-1) * picked).sum(1))


class Expert(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(D, H), nn.Linear(H, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class Loop(nn.Module):
    """Experts as separate modules, each weighted by a mask ``idx == e``."""

    def __init__(self, experts: int = 3):
        super().__init__()
        self.inp, self.router, self.out = nn.Linear(3, D), nn.Linear(D, experts, bias=False), nn.Linear(D, 2)
        self.experts = nn.ModuleList(Expert() for _ in range(experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        weight, idx = self.router(x).softmax(-1).topk(2, -1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out = out + (weight * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return self.out(out)


class MixtralLoop(Loop):
    """Mixtral's form: one_hot expert mask, ``torch.where`` for each expert's tokens, and
    ``index_add`` of the weighted expert outputs (data-dependent token counts)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        weight, idx = self.router(x).softmax(-1).topk(2, -1)
        mask = F.one_hot(idx, len(self.experts)).permute(2, 1, 0)  # (E, k, T)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            slot, token = torch.where(mask[e])
            out = out.index_add(0, token, expert(x[token]) * weight[token, slot, None])
        return self.out(out)


def tokens() -> torch.Tensor:
    return torch.randn(T, 3, dtype=torch.float64)


def infer(model: nn.Module) -> permgraph.PermSpec:
    torch.manual_seed(0)
    return permgraph.infer(model.double(), (tokens(),))


def group_of(spec: permgraph.PermSpec, param: str, axis: int) -> permgraph.Group:
    (group,) = [g for g in spec.groups if any(m.param == param and m.axis == axis for m in g.members)]
    return group


@pytest.mark.parametrize("cls", [Stacked, StackedSelect, DenseGather])
def test_stacked_experts_move_with_the_router_rows(cls):
    model = cls()
    spec = infer(model)
    experts = group_of(spec, "w1", 0)
    assert experts.is_free and experts.size == E
    assert {(m.param, m.axis) for m in experts.members} >= {("router.weight", 0), ("router.bias", 0), ("w1", 0),
                                                             ("w2", 0)}
    hidden = group_of(spec, "w1", 1)
    assert hidden.is_free and {(m.param, m.axis) for m in hidden.members} >= {("w1", 1), ("w2", 2)}
    report = permgraph.verify(model, spec, (tokens(),))
    assert report.ok and {"w1", "w2", "router.weight"} <= set(report.permuted_params), report


def test_stacked_top1_and_top2_routing_both_verify():
    for k in (1, 2):
        model = Stacked(k=k)
        spec = infer(model)
        assert sorted(g.size for g in spec.free_groups) == sorted([E, H, D, D])  # experts, hidden, d in and d out
        assert permgraph.verify(model, spec, (tokens(),)).ok


def test_permuting_experts_and_router_rows_by_hand_keeps_the_function():
    torch.manual_seed(1)
    model, x = Stacked().double(), tokens()
    state = model.state_dict()
    y = output_with(model, state, x)
    sigma = torch.tensor([2, 0, 3, 1])
    moved = dict(state)
    for key in ("router.weight", "router.bias", "w1", "b1", "w2"):
        moved[key] = state[key][sigma]
    assert torch.allclose(output_with(model, moved, x), y, atol=1e-12)
    experts_only = {k: (v[sigma] if k in ("w1", "b1", "w2") else v) for k, v in state.items()}
    router_only = {k: (v[sigma] if k.startswith("router") else v) for k, v in state.items()}
    assert not torch.allclose(output_with(model, experts_only, x), y, atol=1e-6)  # the control: both must move
    assert not torch.allclose(output_with(model, router_only, x), y, atol=1e-6)


def test_expert_hidden_units_by_hand_shared_and_per_expert():
    torch.manual_seed(2)
    model, x = Stacked().double(), tokens()
    state = model.state_dict()
    y = output_with(model, state, x)
    p = torch.tensor([4, 2, 0, 1, 3])
    shared = dict(state, w1=state["w1"][:, p], b1=state["b1"][:, p], w2=state["w2"][:, :, p])
    assert torch.allclose(output_with(model, shared, x), y, atol=1e-12)  # what the spec claims
    perms = [torch.randperm(H) for _ in range(E)]  # one per expert: also a symmetry, not claimed
    each = dict(state)
    each["w1"] = torch.stack([state["w1"][e][q] for e, q in enumerate(perms)])
    each["b1"] = torch.stack([state["b1"][e][q] for e, q in enumerate(perms)])
    each["w2"] = torch.stack([state["w2"][e][:, q] for e, q in enumerate(perms)])
    assert torch.allclose(output_with(model, each, x), y, atol=1e-12)
    half = dict(state, w1=state["w1"][:, p], b1=state["b1"][:, p])  # the control: w2 must move too
    assert not torch.allclose(output_with(model, half, x), y, atol=1e-6)


@pytest.mark.parametrize("cls", [Loop, MixtralLoop])
def test_expert_loops_keep_hidden_units_and_block_the_experts(cls):
    model = cls()
    spec = infer(model)
    router = group_of(spec, "router.weight", 0)
    phrase = "aten.eq" if cls is Loop else "select picks a unit by position"
    assert not router.is_free and phrase in router.blocked, router.blocked
    for e in range(3):
        assert group_of(spec, f"experts.{e}.fc1.weight", 0).is_free
    assert permgraph.verify(model, spec, (tokens(),)).ok


class ReturnsChoice(Stacked):
    """The routing indices leave the model: their values are what the caller sees."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x), self.route(self.inp(x))[1]


class ShiftsIndices(Stacked):
    """Arithmetic on the indices (expert e reads expert e+1's weights): positions as numbers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        weight, idx = self.route(x)
        hidden = torch.einsum("tkhd,td->tkh", self.w1[(idx + 1) % E], x).relu()
        return self.out((weight.unsqueeze(-1) * torch.einsum("tkdh,tkh->tkd", self.w2[idx], hidden)).sum(1))


@pytest.mark.parametrize(("cls", "phrase"), [(ReturnsChoice, "the model's output"), (ShiftsIndices, "aten.add")])
def test_indices_read_as_numbers_block_the_experts(cls, phrase):
    model = cls()
    spec = infer(model)
    router = group_of(spec, "router.weight", 0)
    assert not router.is_free and phrase in router.blocked, router.blocked
    assert not group_of(spec, "w1", 0).is_free
    assert permgraph.verify(model, spec, (tokens(),)).ok


def test_the_routing_rules_pass_the_rule_check():
    scores = torch.randn(T, E, dtype=torch.float64)
    stacked = torch.randn(E, H, dtype=torch.float64)
    picked = permgraph.check_rule(lambda s, w: w[s.topk(2, -1).indices], (scores, stacked))
    assert picked.ok and picked.free_sizes == tuple(sorted((H, E, T)))
    assert permgraph.check_rule(lambda s, w: w.index_select(0, s.argmax(-1)), (scores, stacked)).ok
    dense = torch.randn(T, E, H, dtype=torch.float64)
    gathered = permgraph.check_rule(
        lambda s, y: y.gather(1, s.topk(2, -1).indices.unsqueeze(-1).expand(-1, -1, H)), (scores, dense))
    assert gathered.ok and gathered.free_sizes == tuple(sorted((H, E, T)))
    hot = permgraph.check_rule(lambda s: F.one_hot(s.topk(2, -1).indices, E).sum(1), (scores,))
    assert hot.ok and hot.free_sizes == tuple(sorted((E, T)))


class PickedRowsInOrder(nn.Module):
    """``index_select`` returns the picked rows in the order of the index entries: permuting
    what orders the entries (here ``a``'s and ``b``'s rows) reorders the result."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.randn(5, 4)), nn.Parameter(torch.randn(5))
        self.table = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = (self.a + self.b[:, None]).argmax(-1)  # (5,): one pick per row of a
        return (self.table.index_select(0, idx) * x).sum(-1)


def test_index_select_result_moves_with_its_index_entries():
    model, x = PickedRowsInOrder().double(), torch.randn(5, 3, dtype=torch.float64)
    spec = permgraph.infer(model, (x,))
    assert not group_of(spec, "a", 0).is_free  # the result's rows meet the model input x
    assert permgraph.verify(model, spec, (x,)).ok


def test_hugging_face_mixtral_keeps_its_experts_hidden_units():
    """transformers' Mixtral stacks the experts (``gate_up_proj`` (E, 2·I, D), ``down_proj``) and
    runs them through a grouped matmul over tokens sorted by expert: each expert's I hidden
    units move (gate and up halves together, with ``down_proj``'s in-axis); sorting the expert
    ids blocks the experts axis."""
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(vocab_size=50, hidden_size=16, intermediate_size=12, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                           num_experts_per_tok=2, max_position_embeddings=32)  # fmt: skip
    torch.manual_seed(0)
    model = MixtralForCausalLM(config).eval()
    ids = torch.randint(0, 50, (1, 6))
    spec = permgraph.infer(model, (ids,), {"use_cache": False})
    hidden = group_of(spec, "model.layers.0.mlp.experts.down_proj", 2)
    assert hidden.is_free and hidden.size == 12
    halves = [m.structure for m in hidden.members if m.param.endswith("gate_up_proj")]
    assert halves == ["slice [0:12]", "slice [12:24]"]
    router = group_of(spec, "model.layers.0.mlp.gate.weight", 0)
    assert not router.is_free and "sort" in router.blocked
    assert permgraph.verify(model, spec, (ids,), {"use_cache": False}).ok


def test_grouped_matmul_rules_pass_the_rule_check():
    import transformers.integrations.moe  # noqa: F401  (defines transformers::grouped_mm_fallback)

    offs = torch.tensor([2, 4, 6], dtype=torch.int32)
    bf16 = torch.bfloat16  # torch's own grouped_mm traces only in low precision
    report = permgraph.assert_rule_sound(torch._grouped_mm, (torch.randn(6, 16, dtype=bf16),
                                                             torch.randn(3, 16, 8, dtype=bf16), offs))
    assert report.free_sizes == (8, 16)
    fallback = torch.ops.transformers.grouped_mm_fallback
    report = permgraph.assert_rule_sound(fallback, (torch.randn(6, 4), torch.randn(3, 4, 5), offs))
    assert report.free_sizes == (4, 5) and any("rows between two offsets" in b for b in report.blocked)


class WinnersTakeAll(nn.Module):
    """k-winners-take-all: the top 3 of 8 hidden units kept, the others zeroed (topk, then scatter)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        values, idx = h.topk(3, -1)
        return self.fc2(torch.zeros_like(h).scatter(-1, idx, values))


def test_k_winners_take_all_keeps_its_hidden_units():
    model = WinnersTakeAll().double()
    spec = infer(model)
    assert [g.size for g in spec.free_groups] == [8] and group_of(spec, "fc1.weight", 0).is_free
    assert permgraph.verify(model, spec, (tokens(),)).ok


def test_scatter_rules_pass_the_rule_check():
    x, src = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    index = torch.tensor([[0, 2], [1, 1], [5, 3]])  # row 1 writes one unit twice
    assert permgraph.assert_rule_sound(lambda a, i, s: a.scatter(1, i, s), (x, index, src)).free_sizes == (3,)
    assert permgraph.assert_rule_sound(lambda a, i, s: a.scatter_add(1, i, s), (x, index, src)).free_sizes == (2, 3)
    assert permgraph.assert_rule_sound(lambda a, i: a.scatter(1, i, 2.0), (x, index)).free_sizes == (3,)


def test_index_add_into_the_chosen_experts_slots_passes_the_rule_check():
    scores, load = torch.randn(T, E, dtype=torch.float64), torch.randn(E, H, dtype=torch.float64)
    per_token = torch.randn(T, H, dtype=torch.float64)
    report = permgraph.assert_rule_sound(lambda s, acc, v: acc.index_add(0, s.argmax(-1), v), (scores, load, per_token))
    assert report.free_sizes == (H, T)  # argmax's indices are numbers: the experts axis is blocked; tokens add up
    routed = permgraph.assert_rule_sound(lambda s, acc, v: acc.index_add(0, s.topk(1, -1).indices.flatten(), v),
                                         (scores, load, per_token))
    assert routed.free_sizes == (E, H, T)  # topk's are positions: the slots move with the scores' axis
