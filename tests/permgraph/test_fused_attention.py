"""Fused q/k/v projections give the same groups as three separate Linears: heads (shared by
q, k, v and the output projection), query/key dims (q and k rows only) and value dims (v
rows and the output projection's columns).

Each form is checked three ways: the groups ``infer`` finds, ``verify``, and a hand check
that does not use permgraph at all: permute the dims within each head of the q and k rows
of the in-projection by plain indexing (the same permutation in every head) and compare the
outputs in float64, next to a control that permutes the q rows alone and must move them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import permgraph
from permgraph.axisgraph import AxisGraph
from zoo.cli.permgraph import main

E, H = 8, 2
D = E // H


class MHAEncoder(nn.Module):
    """A pre-norm encoder block with a CLS token around ``nn.MultiheadAttention``; with
    ``kdim`` the keys and values come from a memory of another width (separate q/k/v
    weights)."""

    def __init__(self, batch_first: bool = True, kdim: int | None = None):
        super().__init__()
        self.batch_first, self.kdim = batch_first, kdim
        self.embed, self.cls, self.ln = nn.Linear(5, E), nn.Parameter(torch.randn(1, 1, E)), nn.LayerNorm(E)
        self.attn = nn.MultiheadAttention(E, H, batch_first=batch_first, kdim=kdim, vdim=kdim)
        self.memory = nn.Linear(5, kdim) if kdim else None
        self.head = nn.Linear(E, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], 1)
        q = self.ln(h)
        kv = self.memory(x) if self.memory is not None else q
        if not self.batch_first:
            q, kv = q.transpose(0, 1), kv.transpose(0, 1)
        a, _ = self.attn(q, kv, kv)
        if not self.batch_first:
            a = a.transpose(0, 1)
        return self.head(h + a)[:, 0]


class FusedQKV(nn.Module):
    """One ``qkv`` Linear, its output cut into q, k, v by ``how``: ``split`` / ``chunk`` along
    the features (GPT-2), or reshaped to (B, N, 3, heads, dim) and ``unbind`` / indexed (timm)."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.embed, self.ln, self.qkv, self.proj = nn.Linear(5, E), nn.LayerNorm(E), nn.Linear(E, 3 * E), nn.Linear(E, E)
        self.head = nn.Linear(E, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        b, n, _ = h.shape
        qkv = self.qkv(self.ln(h))
        if self.how in ("split", "chunk"):
            q, k, v = qkv.split(E, -1) if self.how == "split" else qkv.chunk(3, -1)
            q, k, v = (t.view(b, n, H, D).transpose(1, 2) for t in (q, k, v))
        else:
            qkv = qkv.reshape(b, n, 3, H, D).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0) if self.how == "unbind" else (qkv[0], qkv[1], qkv[2])
        a = F.scaled_dot_product_attention(q, k, v)
        return self.head(h + self.proj(a.transpose(1, 2).reshape(b, n, E))).mean(1)


# model -> {q/k/v block: (state-dict key, row offset)}, its bias likewise, the output projection
FORMS = {
    "mha batch_first": (lambda: MHAEncoder(True), {"q": ("attn.in_proj_weight", 0), "k": ("attn.in_proj_weight", E),
                                                    "v": ("attn.in_proj_weight", 2 * E)}, "attn.in_proj_bias",
                        "attn.out_proj.weight"),
    "mha seq_first": (lambda: MHAEncoder(False), {"q": ("attn.in_proj_weight", 0), "k": ("attn.in_proj_weight", E),
                                                   "v": ("attn.in_proj_weight", 2 * E)}, "attn.in_proj_bias",
                      "attn.out_proj.weight"),
    "mha kdim": (lambda: MHAEncoder(True, kdim=6), {"q": ("attn.q_proj_weight", 0), "k": ("attn.k_proj_weight", 0),
                                                     "v": ("attn.v_proj_weight", 0)}, "attn.in_proj_bias",
                 "attn.out_proj.weight"),
    **{f"qkv {how}": ((lambda how=how: FusedQKV(how)), {"q": ("qkv.weight", 0), "k": ("qkv.weight", E),
                                                          "v": ("qkv.weight", 2 * E)}, "qkv.bias", "proj.weight")
       for how in ("split", "chunk", "unbind", "select")},
}
BIAS_OFFSET = {"q": 0, "k": E, "v": 2 * E}


def _members(group: permgraph.Group, key: str) -> set[int]:
    return {m.offset for m in group.members if m.param == key and m.axis == 0}


def _groups_on(spec: permgraph.PermSpec, key: str, offset: int) -> list[permgraph.Group]:
    return [g for g in spec.free_groups if offset in _members(g, key)]


def _permute_rows(state: dict, blocks: list[tuple[str, int]], perm: torch.Tensor) -> dict:
    """Permute the dims within every head of the given row blocks (each E rows, heads of D)."""
    out = {k: v.clone() for k, v in state.items()}
    rows = (torch.arange(H)[:, None] * D + perm[None, :]).reshape(-1)
    for key, offset in blocks:
        out[key][offset:offset + E] = state[key][offset + rows]
    return out


def _hand_check(model: nn.Module, x: torch.Tensor, blocks: dict, bias: str, which: tuple[str, ...]) -> float:
    """max |Δoutput| / max |output| after permuting the within-head dims of the ``which``
    blocks of the in-projection (weights and bias) by one permutation, in float64."""
    torch.manual_seed(1)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():  # away from default init, which can hide a wrong permutation
            p.add_(torch.randn_like(p) * 0.3)
    state = model.state_dict()
    perm = torch.tensor([2, 0, 3, 1])
    moved = [blocks[w] for w in which] + [(bias, BIAS_OFFSET[w]) for w in which]
    with torch.no_grad():
        y0 = model(x.double())
        model.load_state_dict(_permute_rows(state, moved, perm))
        y1 = model(x.double())
        model.load_state_dict(state)
    return float((y1 - y0).abs().max() / y0.abs().max())


@pytest.mark.parametrize("form", list(FORMS))
def test_fused_projections_give_separate_heads_query_key_and_value_groups(form):
    build, blocks, bias, out_proj = FORMS[form]
    torch.manual_seed(0)
    model, x = build(), torch.randn(2, 4, 5)
    spec = permgraph.infer(model, (x,))
    report = permgraph.verify(model, spec, (x,), control=True)
    assert report.ok and report.control_diff > 1e-6 * report.max_abs_output, report
    (qkey, qoff), (kkey, koff), (vkey, voff) = blocks["q"], blocks["k"], blocks["v"]
    qk = [g for g in _groups_on(spec, qkey, qoff) if g.size == D]
    v = [g for g in _groups_on(spec, vkey, voff) if g.size == D]
    heads = [g for g in _groups_on(spec, qkey, qoff) if g.size == H]
    assert len(qk) == len(v) == len(heads) == 1, spec
    qk, v, heads = qk[0], v[0], heads[0]
    assert qk is not v
    # q/k dims: the q and k rows (and their bias), nothing of v, nothing of the output projection
    assert koff in _members(qk, kkey) and not _members(qk, out_proj)
    assert voff not in _members(qk, vkey) if vkey == qkey else not _members(qk, vkey)
    assert _members(qk, bias) == {BIAS_OFFSET["q"], BIAS_OFFSET["k"]}
    # value dims: the v rows and the output projection's columns
    assert _members(v, bias) == {BIAS_OFFSET["v"]}
    assert any(m.param == out_proj and m.axis == 1 for m in v.members)
    # heads: shared by q, k, v and the output projection
    assert _members(heads, bias) == {0, E, 2 * E}
    assert any(m.param == out_proj and m.axis == 1 for m in heads.members)


@pytest.mark.parametrize("form", list(FORMS))
def test_permuting_query_key_dims_alone_is_exact_by_hand(form):
    build, blocks, bias, _ = FORMS[form]
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5)
    assert _hand_check(build(), x, blocks, bias, ("q", "k")) < 1e-12
    assert _hand_check(build(), x, blocks, bias, ("q",)) > 1e-4  # the control: q alone breaks it


class Wrapped(nn.Module):
    """``nn.TransformerEncoderLayer``, or ``nn.MultiheadAttention`` without weights and with a
    padding mask (its scaled-dot-product path)."""

    def __init__(self, layer: bool):
        super().__init__()
        self.embed, self.head = nn.Linear(5, E), nn.Linear(E, 3)
        self.layer = nn.TransformerEncoderLayer(E, H, 16, dropout=0.0, batch_first=True) if layer else None
        self.attn = None if layer else nn.MultiheadAttention(E, H, batch_first=True)

    def forward(self, x):
        h = self.embed(x)
        if self.layer is not None:
            return self.head(self.layer(h)).mean(1)
        mask = torch.zeros(x.shape[:2], dtype=torch.bool)
        return self.head(h + self.attn(h, h, h, need_weights=False, key_padding_mask=mask)[0]).mean(1)


@pytest.mark.parametrize("layer", [True, False])
def test_encoder_layer_and_the_no_weights_path_give_the_three_groups(layer):
    torch.manual_seed(0)
    model, x = Wrapped(layer), torch.randn(2, 4, 5)
    spec = permgraph.infer(model, (x,))
    assert permgraph.verify(model, spec, (x,)).ok
    labels = sorted(g.structure for g in spec.free_groups if g.size in (H, D))
    assert labels == ["heads", "query/key dims", "value dims"], spec


def test_a_stand_in_used_as_a_whole_ties_every_slice_it_stands_for():
    """The fallback should an op ever read a sliced value as a whole: soundly coarser."""
    g = AxisGraph()
    q, k, stand_in, other = g.atom(4, "q"), g.atom(4, "k"), g.atom(4, "stand-in"), g.atom(4, "reader")
    g.add_slices(g.atom(2, "position", blocked="position"), ({stand_in: q}, {stand_in: k}))
    assert g.root(q) != g.root(k)
    g.unify(stand_in, other, "an op reading both slices")
    assert g.root(q) == g.root(k) == g.root(other)
    g2 = AxisGraph()
    q, k, stand_in = g2.atom(4, "q"), g2.atom(4, "k"), g2.atom(4, "stand-in")
    g2.add_slices(g2.atom(2, "position", blocked="position"), ({stand_in: q}, {stand_in: k}))
    g2.block(stand_in, "model output")
    assert g2.blocked_reasons(q) and g2.blocked_reasons(k)


def test_inspect_shows_separate_groups_for_a_multihead_attention_encoder(user_module, capsys):
    user_module("fused_models", "from tests.permgraph.test_fused_attention import MHAEncoder\n"
                "def encoder():\n    return MHAEncoder(True)\n")  # fmt: skip
    assert main(["inspect", "fused_models:encoder", "--input", "2,4,5"]) == 0
    table = capsys.readouterr().out
    assert "4 free groups" in table  # stream, heads, query/key dims, value dims
    assert all(label in table for label in ("heads", "query/key dims", "value dims"))
    assert main(["verify", "fused_models:encoder", "--input", "2,4,5"]) == 0
    assert "verify OK" in capsys.readouterr().out


def test_timm_vit_query_key_and_value_dims_are_separate(tmp_path):
    timm = pytest.importorskip("timm")
    model_id = "timm:vit_tiny_patch16_224?img_size=32&patch_size=16&depth=1&num_classes=4"
    out = tmp_path / "vit.json"
    assert main(["inspect", model_id, "--input", "1,3,32,32", "--format", "json", "--out", str(out)]) == 0
    spec = permgraph.PermSpec.from_json(out.read_text())
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=16, depth=1,
                              num_classes=4)
    x = torch.randn(1, 3, 32, 32)
    assert permgraph.verify(model, spec, (x,)).ok
    labels = [g.structure for g in spec.free_groups]
    assert labels.count("query/key dims") == 1 and labels.count("value dims") == 1 and labels.count("heads") == 1
    qk = next(g for g in spec.free_groups if g.structure == "query/key dims")
    assert _members(qk, "blocks.0.attn.qkv.weight") == {0, 192}
    blocks = {"q": ("blocks.0.attn.qkv.weight", 0), "k": ("blocks.0.attn.qkv.weight", 192)}
    assert _vit_hand_check(model, x, blocks) < 1e-12


def _vit_hand_check(model: nn.Module, x: torch.Tensor, blocks: dict) -> float:
    """The q/k hand check on timm's ViT (3 heads of 64)."""
    model = model.double().eval()
    state = model.state_dict()
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    rows = (torch.arange(3)[:, None] * 64 + perm[None, :]).reshape(-1)
    new = {k: v.clone() for k, v in state.items()}
    for key, offset in blocks.values():
        for k in (key, key.replace("weight", "bias")):
            new[k][offset:offset + 192] = state[k][offset + rows]
    with torch.no_grad():
        y0 = model(x.double())
        model.load_state_dict(new)
        y1 = model(x.double())
    return float((y1 - y0).abs().max() / y0.abs().max())
