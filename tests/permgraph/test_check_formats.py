"""Every spec format ``check_spec`` reads, what it refuses, and the report's own forms."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from torch import nn

import permgraph
from permgraph.check import FindingKind
from permgraph.handspec import SpecFormatError, read_hand_spec, read_spec_json
from tests.permgraph import field_specs as fs

X = (torch.randn(3, 8),)
AXES = fs.mlp_spec()
PERMS = {"P0": [("fc1.weight", 0), ("fc1.bias", 0), ("fc2.weight", 1)],
         "P1": [("fc2.weight", 0), ("fc2.bias", 0), ("fc3.weight", 1)]}  # fmt: skip


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    model = fs.MLP()
    return model, permgraph.infer(model, X)


def check(mlp, spec, **kw):
    model, inferred = mlp
    return permgraph.check_spec(model, spec, X, inferred=inferred, trials=1, **kw)


class RebasinSpec(NamedTuple):
    perm_to_axes: dict
    axes_to_perm: dict


@dataclass
class C2M3Spec:
    perm_to_layers_and_axes: dict
    layer_and_axes_to_perm: dict


@pytest.mark.parametrize("spec", [
    {"axes_to_perm": AXES},
    {"perm_to_axes": PERMS},
    {"axes_to_perm": AXES, "perm_to_axes": PERMS},
    RebasinSpec(PERMS, AXES),
    C2M3Spec(PERMS, AXES),
    {"layer_and_axes_to_perm": AXES},
    json.dumps({"perm_to_axes": PERMS}),
])  # fmt: skip
def test_every_format_of_the_same_correct_spec_is_sound_and_complete(mlp, spec):
    report = check(mlp, spec)
    assert report.ok and report.complete and not report.findings, report


def test_a_permspec_and_its_json_file_are_read(mlp, tmp_path):
    _, inferred = mlp
    path = tmp_path / "spec.json"
    path.write_text(inferred.to_json())
    for spec in (inferred, path, str(path)):
        assert check(mlp, spec).complete


def test_two_dicts_that_disagree_are_unsound(mlp):
    perms = {**PERMS, "P1": PERMS["P1"][:2]}  # perm_to_axes forgot fc3's input
    report = check(mlp, {"axes_to_perm": AXES, "perm_to_axes": perms})
    (f,) = [f for f in report.findings if f.kind is FindingKind.DICTS_DISAGREE]
    assert not report.ok and f.perm == "P1" and f.members == ("fc3.weight axis 1",)
    assert "axes_to_perm puts fc3.weight axis 1 under P1 but perm_to_axes does not" in f.message


def test_unknown_names_wrong_axes_and_conflicts_are_named(mlp):
    perms = {**PERMS, "P1": PERMS["P1"] + [("fc2.wieght", 0), ("fc3.weight", 0)],
             "P2": [("fc2.bias", 0), ("fc1.bias", 3)]}  # fmt: skip
    report = check(mlp, {"perm_to_axes": perms})
    kinds = {(f.kind, f.perm, f.members[0]) for f in report.errors}
    assert (FindingKind.UNKNOWN_NAME, "P1", "fc2.wieght axis 0") in kinds
    assert (FindingKind.WRONG_RANK, "P2", "fc1.bias axis 3") in kinds
    assert (FindingKind.CONFLICT, "P2", "fc2.bias axis 0") in kinds
    assert (FindingKind.PERMUTES_OUTPUT, "P1", "fc3.weight axis 0") in kinds
    (unknown,) = [f for f in report.errors if f.kind is FindingKind.UNKNOWN_NAME]
    assert "did you mean 'fc2.weight'?" in unknown.message


@pytest.mark.parametrize("spec,expected", [
    ({"axes_to_perm": AXES, "layer_and_axes_to_perm": AXES}, "mean the same"),
    ({"layers": {}}, "has none of axes_to_perm"),
    ({"axes_to_perm": {"fc1.weight": "P0"}}, "must be a tuple"),
    ({"axes_to_perm": {"fc1.weight": (0, None)}}, "must be a permutation name or None"),
    ({"perm_to_axes": {"P0": [("fc1.weight",)]}}, "(name, axis) pair"),
    ({"structured": {"P0": {"members": []}}}, "must hold size, members"),
    (42, "cannot read a permutation spec from a int"),
])  # fmt: skip
def test_what_is_not_a_spec_is_refused_with_the_forms_there_are(spec, expected):
    with pytest.raises(SpecFormatError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_hand_spec(spec)


def test_repeated_keys_are_found_at_any_depth_with_their_lines():
    text = '{\n "a": {\n  "k": 1,\n  "j": {"k": 2},\n  "k": 3\n },\n "a": 4\n}'
    data, duplicates = read_spec_json(text)
    assert data == {"a": 4}
    assert {(d.key, d.lines) for d in duplicates} == {("k", (3, 5)), ("a", (2, 7))}


def test_trials_must_be_positive(mlp):
    with pytest.raises(ValueError, match="trials must be a positive integer"):
        permgraph.check_spec(mlp[0], {"axes_to_perm": AXES}, X, trials=0)


def test_the_report_prints_a_table_and_writes_json(mlp):
    spec = dict(AXES)
    del spec["fc2.bias"]
    report = check(mlp, {"axes_to_perm": spec})
    text = str(report)
    assert text.startswith("check_spec: UNSOUND (1 error, 0 notes; 2 hand permutations, 2 inferred free groups")
    assert "severity  kind" in text and "permutation  units  tensors  alone: change" in text
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["complete"] is False
    (f,) = data["findings"]
    assert f["kind"] == "leaves_out_tied" and f["perm"] == "P1" and f["members"] == ["fc2.bias axis 0"]
    assert {p["name"]: p["holds"] for p in data["perms"]} == {"P0": True, "P1": False}


class Tied(nn.Module):
    """A language-model head that shares the token embedding's weight (two state-dict keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc, self.head = nn.Embedding(10, 8), nn.Linear(8, 8), nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(self.emb(ids))))


def test_tied_weights_need_both_names():
    torch.manual_seed(0)
    model, ids = Tied(), torch.randint(0, 10, (2, 5))
    inferred = permgraph.infer(model, (ids,))
    rebasin = inferred.to_rebasin()
    assert rebasin["axes_to_perm"]["emb.weight"] == rebasin["axes_to_perm"]["head.weight"] == [None, "fc.out"]
    assert permgraph.check_spec(model, rebasin, (ids,), inferred=inferred).complete
    del rebasin["axes_to_perm"]["emb.weight"]
    rebasin["perm_to_axes"]["fc.out"].remove(("emb.weight", 1))
    report = permgraph.check_spec(model, rebasin, (ids,), inferred=inferred)
    (f,) = report.errors
    assert f.kind is FindingKind.LEAVES_OUT_TIED and f.members == ("emb.weight axis 1",)


def test_per_head_permutations_round_trip_through_the_structured_form():
    torch.manual_seed(0)
    model, args = fs.ViT(), (torch.randn(2, 3, 8, 8),)
    inferred = permgraph.infer(model, args, per_block=True)
    rebasin = json.loads(json.dumps(inferred.to_rebasin()))
    assert any(entry["indexed_by"] for entry in rebasin["structured"].values())
    report = permgraph.check_spec(model, rebasin, args, trials=2)  # infers per block itself
    assert report.ok and report.complete and report.inferred_free_groups == len(inferred.free_groups), report
