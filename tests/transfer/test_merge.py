"""transfer.merge: alignment recovers planted permutations, the path and its barriers, REPAIR, N models."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import permgraph
from transfer.merge import (
    MergeOptions,
    PathCurve,
    Repair,
    align_models,
    evaluate_path,
    interpolate,
    lerp,
    match_activations,
    merge,
    reset_batchnorm,
)


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 3))


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.b1(self.c1(x)))
        h = F.relu(h + self.b2(self.c2(h)))
        return self.fc(h.mean((2, 3)))


class TinyAttention(nn.Module):
    def __init__(self, vocab: int = 13, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.emb, self.heads = nn.Embedding(vocab, dim), heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.fc1, self.fc2, self.head = nn.Linear(dim, 16), nn.Linear(16, dim), nn.Linear(dim, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        b, t, d = x.shape
        q, k, v = (f(x).view(b, t, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        x = x + self.o(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        return self.head(x + self.fc2(F.relu(self.fc1(x))))


def _batches(n: int = 3, size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(size, 6, generator=g), torch.randint(0, 3, (size,), generator=g)) for _ in range(n)]


def _image_batches(n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(6)
    return [(torch.randn(8, 3, 6, 6, generator=g) * 2 + 1, torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def _planted(model: nn.Module, example: tuple, seed: int = 1):
    spec = permgraph.infer(model, example)
    a = {k: v.clone() for k, v in model.state_dict().items()}
    perm = permgraph.random_permutation(spec, torch.Generator().manual_seed(seed))
    return spec, a, dict(permgraph.apply(spec, perm, a)), perm


def test_the_naive_midpoint_of_a_model_with_itself_is_the_model() -> None:
    a = _mlp(0).state_dict()
    mid = interpolate([a, a])
    assert all(torch.equal(mid[k], a[k]) for k in a)
    curve = evaluate_path(_mlp(0), a, a, _batches(), lambdas=5)
    assert len(set(curve.loss)) == 1 and curve.loss_barrier == 0.0 and curve.acc_barrier == 0.0


def test_lerp_and_interpolate_weight_the_endpoints() -> None:
    a, b = _mlp(0).state_dict(), _mlp(1).state_dict()
    k = "0.weight"
    torch.testing.assert_close(lerp(a, b, 0.25)[k], 0.75 * a[k] + 0.25 * b[k])
    torch.testing.assert_close(interpolate([a, b, b], [0.5, 0.25, 0.25])[k], 0.5 * a[k] + 0.5 * b[k])
    with pytest.raises(ValueError, match="2 weights for 3"):
        interpolate([a, b, b], [0.5, 0.5])


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_matching_a_permuted_copy_recovers_it_and_the_matched_barrier_vanishes(method: str) -> None:
    model = _mlp(0)
    spec, a, b, planted = _planted(model, (torch.randn(2, 6),))
    assert any(not torch.equal(p, torch.arange(len(p))) for p in planted.values())
    al = align_models(model, spec, a, b, method=method, batches=_batches())
    assert all(torch.equal(al.state[k], a[k]) for k in a)
    assert set(al.how.values()) == {method}
    batches = _batches()
    matched = evaluate_path(model, a, al.state, batches, lambdas=5)
    naive = evaluate_path(model, a, b, batches, lambdas=5)
    assert abs(matched.loss_barrier) < 1e-6
    assert naive.loss_barrier > 0.01  # a permuted copy is far from the model along the straight line


def test_conv_bn_permuted_copy_is_recovered_by_activation_matching() -> None:
    model = ConvBN()
    spec, a, b, _ = _planted(model, (torch.randn(2, 3, 6, 6),))
    al = align_models(model, spec, a, b, method="activation", batches=_image_batches())
    assert all(torch.equal(al.state[k], a[k]) for k in a)


def test_heads_and_their_dims_are_activation_matched_in_rounds_and_the_copy_is_recovered() -> None:
    torch.manual_seed(0)
    model = TinyAttention()
    spec, a, b, planted = _planted(model, (torch.randint(0, 13, (2, 5)),))
    heads = [g.name for g in spec.free_groups if g.size == 2]
    assert heads and all(not s.clean for h in heads for s in spec.group(h).activations)
    assert any(not torch.equal(planted[h], torch.arange(2)) for h in heads)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 13, (4, 5), generator=g), torch.randint(0, 13, (4, 5), generator=g))]
    timings: dict = {}
    perm, how = match_activations(model, spec, a, b, batches, timings=timings)
    assert set(how.values()) == {"activation"} and timings["rounds"] >= 2  # clean groups, then heads and dims
    moved = permgraph.apply(spec, perm, b)
    assert all(torch.allclose(moved[k], a[k], atol=1e-6) for k in a)


def test_per_block_groups_are_weight_matched_with_the_others_fixed() -> None:
    torch.manual_seed(0)
    model = TinyAttention()
    x = torch.randint(0, 13, (2, 5))
    spec = permgraph.infer(model, (x,), per_block=True)
    a = {k: v.clone() for k, v in model.state_dict().items()}
    b = dict(permgraph.apply(spec, permgraph.random_permutation(spec, torch.Generator().manual_seed(1)), a))
    batches = [(torch.randint(0, 13, (4, 5)), torch.randint(0, 13, (4, 5)))]
    al = align_models(model, spec, a, b, method="activation", batches=batches)
    assert {"weight", "activation"} <= set(al.how.values())
    assert all(al.how[g.name] == "weight" for g in spec.free_groups if g.indexed_by)
    torch.testing.assert_close(_load(model, al.state)(x), model(x))


def _load(model: nn.Module, state: dict) -> nn.Module:
    import copy

    m = copy.deepcopy(model)
    m.load_state_dict(state)
    return m


def _site_stats(model: nn.Module, state: dict, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-unit mean and std of the two hidden linear layers' outputs (pre-ReLU)."""
    m = _load(model, state)
    h1 = m[0](x)
    h2 = m[2](F.relu(h1))
    return [(h.mean(0), h.std(0, unbiased=False)) for h in (h1, h2)]


def test_repair_moves_the_merged_statistics_to_the_interpolated_endpoints() -> None:
    model, other = _mlp(0), _mlp(1)
    spec = permgraph.infer(model, (torch.randn(2, 6),))
    a, b = model.state_dict(), align_models(model, spec, model.state_dict(), other.state_dict()).state
    batches = _batches(n=4, size=64)
    x = torch.cat([xb for xb, _ in batches])
    repair = Repair(model, spec, [a, b], batches)
    assert {s.weight for s in repair.sites} == {"0.weight", "2.weight"}  # the logits layer is not a group's
    mid = lerp(a, b, 0.5)
    fixed = repair.at(mid, 0.5)
    ends = [_site_stats(model, s, x) for s in (a, b)]
    for layer, ((m0, s0), (m1, s1)) in enumerate(zip(*[e for e in ends])):
        target_mean, target_std = 0.5 * (m0 + m1), 0.5 * (s0 + s1)
        before_mean, before_std = _site_stats(model, mid, x)[layer]
        after_mean, after_std = _site_stats(model, fixed, x)[layer]
        assert (after_std - target_std).abs().max() < 0.1 * (before_std - target_std).abs().max() + 1e-3
        assert (after_mean - target_mean).abs().max() < 1e-3 + 0.1 * (before_mean - target_mean).abs().max()
        assert (before_std < target_std).float().mean() > 0.5  # variance collapse: what REPAIR undoes
    torch.testing.assert_close(repair.at(a, 0.0)["0.weight"], a["0.weight"], atol=1e-4, rtol=1e-4)


def test_bn_reset_re_estimates_the_running_statistics_on_the_data() -> None:
    torch.manual_seed(0)
    model = ConvBN()
    batches = _image_batches(n=3)
    state = reset_batchnorm(model, model.state_dict(), batches)
    x = torch.cat([xb for xb, _ in batches])
    h = model.c1(x)
    torch.testing.assert_close(state["b1.running_mean"], h.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
    assert torch.equal(model.state_dict()["b1.running_mean"], torch.zeros(8))  # the model is left alone
    spec = permgraph.infer(model, (torch.randn(2, 3, 6, 6),))
    repair = Repair(model, spec, [model.state_dict(), model.state_dict()], batches)
    assert repair.batchnorm and not repair.sites  # its convs feed BatchNorm; the linear is the output
    torch.testing.assert_close(repair.at(model.state_dict(), 0.5)["b1.running_mean"], state["b1.running_mean"])


@pytest.mark.parametrize("mergemany", [False, True])
def test_three_permuted_copies_merge_into_the_model(mergemany: bool) -> None:
    model = _mlp(0)
    spec, a, b, _ = _planted(model, (torch.randn(2, 6),), seed=1)
    _, _, c, _ = _planted(model, (torch.randn(2, 6),), seed=2)
    res = merge(model, [a, b, c], spec=spec, options=MergeOptions(method="weight", mergemany=mergemany))
    assert all(torch.allclose(res.state[k], a[k], atol=1e-6) for k in a)
    naive = merge(model, [a, b, c], spec=spec, options=MergeOptions(method="none"))
    assert not torch.allclose(naive.state["0.weight"], a["0.weight"])
    if mergemany:
        assert res.sweeps >= 1 and "mergemany" in res.timings


def test_three_models_merge_with_activation_matching_and_repair() -> None:
    model = _mlp(0)
    spec = permgraph.infer(model, (torch.randn(2, 6),))
    states = [_mlp(s).state_dict() for s in (0, 1, 2)]
    res = merge(model, states, spec=spec, batches=_batches(), options=MergeOptions(method="activation", repair=True))
    assert len(res.aligned) == 3 and res.alignments[0] is None and "repair" in res.timings
    with pytest.raises(ValueError, match="need batches"):
        merge(model, states, spec=spec, options=MergeOptions(method="activation"))
    with pytest.raises(ValueError, match="at least 2 models"):
        merge(model, states[:1], spec=spec)


def test_the_barriers_are_git_rebasins() -> None:
    curve = PathCurve([0.0, 0.5, 1.0], [1.0, 2.5, 2.0], [0.9, 0.5, 0.7])
    assert curve.loss_barrier == pytest.approx(2.5 - 1.5)
    assert curve.interpolated_barrier == pytest.approx(2.5 - 1.5)
    assert curve.acc_barrier == pytest.approx(0.8 - 0.5)
    assert PathCurve.from_dict(curve.to_dict()) == curve


def test_a_resumed_path_evaluates_only_the_missing_points() -> None:
    model = _mlp(0)
    a, b = model.state_dict(), _mlp(1).state_dict()
    points = {0.0: (123.0, 0.5)}
    curve = evaluate_path(model, a, b, _batches(), lambdas=3, points=points)
    assert curve.loss[0] == 123.0 and set(points) == {0.0, 0.5, 1.0}


def test_the_guides_merge_example_runs(capsys) -> None:
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "guide.md").read_text()
    section = guide.split("## Merge models", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    exec(compile(code, "docs/guide.md", "exec"), {"__name__": "guide_merge"})
    printed = capsys.readouterr().out
    assert "matched+repair  loss barrier" in printed and "'0.out': 'activation'" in printed


def test_activation_matching_refuses_a_spec_without_activations() -> None:
    from permgraph.spec import PermSpec

    model = _mlp(0)
    spec, a, b, _ = _planted(model, (torch.randn(2, 6),))
    data = json.loads(spec.to_json())
    for g in data["groups"]:
        g.pop("activations", None)
    with pytest.raises(ValueError, match="infer it again"):
        align_models(model, PermSpec.from_dict(data), a, b, method="activation", batches=_batches())


class DictModel(nn.Module):
    """A Hugging Face-style model: called as model(**batch), targets under "labels"."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc1, self.fc2 = nn.Embedding(11, 8), nn.Linear(8, 16), nn.Linear(16, 11)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.emb(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        return self.fc2(F.relu(self.fc1(h)))


def test_dict_batches_are_matched_repaired_and_evaluated() -> None:
    torch.manual_seed(0)
    model = DictModel()
    g = torch.Generator().manual_seed(2)
    batches = [{"input_ids": torch.randint(0, 11, (4, 6), generator=g), "attention_mask": torch.ones(4, 6),
                "labels": torch.randint(0, 11, (4, 6), generator=g)} for _ in range(2)]  # fmt: skip
    spec = permgraph.infer(model, (), {"input_ids": batches[0]["input_ids"], "attention_mask": torch.ones(4, 6)})
    a = {k: v.clone() for k, v in model.state_dict().items()}
    b = dict(permgraph.apply(spec, permgraph.random_permutation(spec, torch.Generator().manual_seed(1)), a))
    al = align_models(model, spec, a, b, method="activation", batches=batches)
    assert all(torch.equal(al.state[k], a[k]) for k in a)
    repair = Repair(model, spec, [a, al.state], batches)
    assert [s.weight for s in repair.sites] == ["fc1.weight"]
    curve = evaluate_path(model, a, al.state, batches, lambdas=3, transform=repair.at)
    assert abs(curve.loss_barrier) < 1e-4
