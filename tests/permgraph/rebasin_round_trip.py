"""One assertion the model tests share: a spec's ``to_rebasin()`` reads back as exactly that spec."""

from __future__ import annotations

import json

import torch

import permgraph
from permgraph.handspec import read_hand_spec
from permgraph.handstructure import compare, resolve


def assert_rebasin_round_trip(model: torch.nn.Module, spec: permgraph.PermSpec) -> None:
    """The structural half of ``check_spec(model, spec.to_rebasin())``: through JSON (tuples become
    lists, None null) every hand permutation is one whole free group of ``spec``, with no finding at
    all. No forward: the numerical half permutes the very groups ``verify`` has just proved."""
    rebasin = json.loads(json.dumps(spec.to_rebasin()))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    resolved = resolve(read_hand_spec(rebasin), shapes)
    findings = list(resolved.findings) + compare(spec, resolved, shapes)
    assert not findings, "to_rebasin() does not round-trip:\n" + "\n".join(f.message for f in findings)
    assert set(resolved.members) == {g.name for g in spec.free_groups}
