"""``check_spec(model, spec.to_rebasin())`` is sound and complete, with no finding at all: exact round
trips through Git Re-Basin's form and the ``structured`` key, so the checker raises no false alarm on a
correct spec. Every model of ``test_verify_models`` asserts the structural half there, on the spec it
has just verified (``rebasin_round_trip``); the zoo models here run the whole check, numerics included."""

from __future__ import annotations

import json

import pytest
import torch

import permgraph
from tests.permgraph.test_verify_models import ZOO_CONTRACTS
from zoo.models import build, example_inputs


@pytest.mark.parametrize("model_id", list(ZOO_CONTRACTS))
def test_zoo_models_round_trip_through_check_spec(model_id):
    torch.manual_seed(0)
    model, args = build(model_id), example_inputs(model_id)
    inferred = permgraph.infer(model, args)
    rebasin = json.loads(json.dumps(inferred.to_rebasin()))  # as a JSON file holds it
    report = permgraph.check_spec(model, rebasin, args, inferred=inferred, trials=1)
    assert report.ok and report.complete and not report.findings, report
    assert len(report.perms) == len(inferred.free_groups) and all(p.holds for p in report.perms)
