"""The bugs found in the field's hand-written specs, each caught by ``check_spec`` and localised:
the right kind, the right hand permutation and the right (tensor, axis). Every correct hand spec
is sound (and complete where it can be), and so is every model's own ``to_rebasin()``."""

from __future__ import annotations

import json

import pytest
import torch

import permgraph
from permgraph.check import FindingKind
from tests.permgraph import field_specs as fs


@pytest.fixture(scope="module")
def bench():
    """name -> (model, inputs, inferred spec), built once per model."""
    cache = {}

    def get(name):
        if name not in cache:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            torch.manual_seed(0)
            ctor, inputs, _, _ = fs.MODELS[name]
            model, args = ctor(), inputs()
            cache[name] = (model, args, permgraph.infer(model, args))
            torch.set_num_threads(before)
        return cache[name]

    return get


def check(bench, name, spec):
    model, args, inferred = bench(name)
    return permgraph.check_spec(model, spec, args, inferred=inferred)


def failing(bench, name, spec):
    """The report of a spec that must fail the check."""
    report = check(bench, name, spec)
    assert not report.ok, report
    return report


def finding(report, kind, perm, member):
    """The finding of ``kind`` for ``perm`` that names ``member``; fails showing the report."""
    for f in report.findings:
        if f.kind is kind and f.perm == perm and any(m.startswith(member) for m in f.members):
            return f
    raise AssertionError(f"no {kind.value!r} finding for {perm} naming {member}:\n{report}")


@pytest.mark.parametrize("name", list(fs.MODELS))
def test_the_correct_hand_spec_is_sound(bench, name):
    _, _, spec, complete = fs.MODELS[name]
    report = check(bench, name, fs.rebasin(spec()))
    assert report.ok, report
    assert report.complete == complete, report
    if not complete:  # a Re-Basin spec of an attention model cannot name the heads: notes say so
        missing = [f for f in report.findings if f.kind is FindingKind.MISSING_SYMMETRY]
        assert any("heads" in f.message and "structured" in f.message for f in missing), report
    assert all(p.holds for p in report.perms) and report.together < 1e-9


@pytest.mark.parametrize("name", list(fs.MODELS))
def test_every_models_own_to_rebasin_round_trips_exactly(bench, name, tmp_path):
    model, args, inferred = bench(name)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(inferred.to_rebasin()))  # tuples become lists, None null
    for spec in (inferred.to_rebasin(), path, inferred):
        report = permgraph.check_spec(model, spec, args, inferred=inferred, trials=1)
        assert report.ok and report.complete, report
        assert not report.findings


# a tensor left out of the spec: (model, its correct spec, the key left out, the hand group, the tensor it ties to)
LEFT_OUT = {
    "bias": ("mlp", fs.mlp_spec, "fc1.bias", "P0", "fc1.weight axis 0"),
    "running mean": ("resnet20", fs.resnet20_spec, "layer1.0.bn2.running_mean", "P_s1", "layer1.0.bn2.running_var axis 0"),
}  # fmt: skip


@pytest.mark.parametrize("what", list(LEFT_OUT))
def test_a_left_out_tensor_is_named_and_confirmed(bench, what):
    model, correct, key, group, tied_to = LEFT_OUT[what]
    spec = correct()
    del spec[key]
    f = finding(failing(bench, model, fs.rebasin(spec)), FindingKind.LEAVES_OUT_TIED, group, f"{key} axis 0")
    assert f.members == (f"{key} axis 0",) and f.change > 1e-6
    assert f"permutes {tied_to} but not {key} axis 0" in f.message and "changes the output by" in f.message


# bugs whose findings alone say everything: (model, the buggy spec, the findings it must produce)
LOCALISED = {
    "stage groups shifted by one": ("resnet20", lambda: fs.resnet20_spec(shift_stages=True), [
        (FindingKind.SIZE_MISMATCH, "P_s1", "layer2.0.conv2.weight axis 0"),
        (FindingKind.SIZE_MISMATCH, "P_s2", "layer3.0.shortcut.0.weight axis 0")]),
    "grouped-query attention with one q/k permutation": ("gqa", lambda: fs.gqa_spec(qk_as_one=True), [
        (FindingKind.MIXES_HEADS, "P_qk", "attn.q.weight axis 0"),
        (FindingKind.SIZE_MISMATCH, "P_qk", "attn.k.weight axis 0")]),
}  # fmt: skip


@pytest.mark.parametrize("bug", list(LOCALISED))
def test_a_bug_is_found_where_it_is(bench, bug):
    model, spec, expected = LOCALISED[bug]
    report = failing(bench, model, fs.rebasin(spec()))
    for kind, group, member in expected:
        finding(report, kind, group, member)


def test_conv2_and_norm2_listed_where_conv3_and_norm3_belong(bench):
    report = failing(bench, "bottleneck", fs.rebasin(fs.bottleneck_spec(conv2_for_conv3=True)))
    f = finding(report, FindingKind.SIZE_MISMATCH, "P_s1", "layer1.1.conv2.weight axis 0")
    assert "belong to layer1.1.conv2.out" in f.message
    finding(report, FindingKind.SIZE_MISMATCH, "P_s1", "layer1.1.bn2.running_mean axis 0")


def test_repeated_keys_in_a_json_spec_are_named_with_their_lines(bench, tmp_path):
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in fs.bottleneck_spec().items()]
    # stage 2's first conv written again further down with stage 1's stream: the last one wins
    lines.insert(-2, '  "layer2.0.conv1.weight": ["P_20_a", "P_s2", null, null],')
    text = "\n".join(['{"axes_to_perm": {', *lines[:-1], lines[-1].rstrip(","), "}}"])
    path = tmp_path / "bottleneck.json"
    path.write_text(text)
    where = [i + 1 for i, line in enumerate(text.splitlines()) if '"layer2.0.conv1.weight"' in line]
    report = check(bench, "bottleneck", path)
    assert not report.ok and len(where) == 2
    f = finding(report, FindingKind.DUPLICATE_KEY, "P_20_a", "layer2.0.conv1.weight")
    assert f"lines {where[0]}, {where[1]}" in f.message, f.message
    # the surviving entry ties stage 2's input to the wrong stream: caught on its own
    finding(report, FindingKind.LEAVES_OUT_TIED, "P_s1", "layer2.0.conv1.weight axis 1")


def test_logits_permuted_with_the_last_hidden_group(bench):
    spec = fs.vgg_spec() | {"classifier.2.weight": ("P_fc0", "P_fc0"), "classifier.2.bias": ("P_fc0",)}
    report = failing(bench, "vgg", fs.rebasin(spec))
    f = finding(report, FindingKind.PERMUTES_OUTPUT, "P_fc0", "classifier.2.weight axis 0")
    assert "model's output" in f.message and f.change > 1e-3  # confirmed by permuting that axis alone
    finding(report, FindingKind.PERMUTES_OUTPUT, "P_fc0", "classifier.2.bias axis 0")


def test_one_dimensional_batchnorm_tensors_given_two_axes(bench):
    spec = fs.vgg_spec() | {f"features.1.{k}": ("P_conv0", "P_conv0") for k in ("weight", "bias")}
    report = failing(bench, "vgg", fs.rebasin(spec))
    f = finding(report, FindingKind.WRONG_RANK, "P_conv0", "features.1.weight")
    assert "2 entries, but it is 1-D" in f.message


def test_query_and_key_rows_of_all_heads_under_one_permutation(bench):
    report = failing(bench, "vit", fs.rebasin(fs.vit_spec(qk_as_one=True)))
    f = finding(report, FindingKind.MIXES_HEADS, "P_qk", "attn.q.weight axis 0")
    assert "attn.q.out (2 units" in f.message and f.change > 1e-6
    finding(report, FindingKind.MIXES_HEADS, "P_qk", "attn.k.bias axis 0")


def test_incomplete_but_sound_spec_names_what_it_leaves_unused(bench):
    spec = fs.resnet20_spec() | fs.conv("layer3.2.conv1", "P_s3", None) | fs.norm("layer3.2.bn1", None)
    spec |= fs.conv("layer3.2.conv2", None, "P_s3")
    report = check(bench, "resnet20", fs.rebasin(spec))
    assert report.ok and not report.complete, report
    (f,) = [f for f in report.findings if f.kind is FindingKind.MISSING_SYMMETRY]
    assert "layer3.2.conv1.weight axis 0" in f.members and f.severity == "note"


def test_two_independent_groups_tied_together_are_sound_but_incomplete(bench):
    spec = fs.dense("fc1", None, "P0") | fs.dense("fc2", "P0", "P0") | fs.dense("fc3", "P0", None)
    report = check(bench, "mlp", fs.rebasin(spec))
    assert report.ok and not report.complete, report
    (f,) = report.findings
    assert f.kind is FindingKind.TIES_INDEPENDENT and f.perm == "P0"
