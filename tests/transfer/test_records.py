"""The typed records (:mod:`transfer.records`): ``to_json`` / ``from_json`` round trips, and a wrong field
named in one line."""

from __future__ import annotations

import json

import pytest

from transfer.lap import LapProofs
from transfer.records import FORMAT, MethodResult, ResultsFile, RunRecord, TransferError

SETTING = {"method": "fgmt", "model": "zoo:mlp2", "data": "synthetic", "T": 2}


def _result(**kw) -> MethodResult:
    fields = dict(t=[0, 1, 2], val_acc=[0.25, 0.5, 0.5], val_loss=[1.4, 1.2, 1.1], best_t=1, seconds=0.5,
                  eval_seconds=0.1, lsa_calls=4, lsa_seconds=0.01, lap_proofs=LapProofs(solves={"auction": 4}),
                  lambdas=[0.0, 0.5, 1.0], world_size=1, phases={"solves": 0.01}, wall_seconds=1.0,
                  trajectory=True)  # fmt: skip
    return MethodResult(**{**fields, **kw})


def test_records_round_trip_through_json():
    record = RunRecord(dict(SETTING))
    record.commit(0, 2, 1.4, 0.25, 2, 0.005, LapProofs(solves={"auction": 2}, max_gap=1e-9))
    again = RunRecord.from_json(json.loads(json.dumps(record.to_json())), T=2)
    assert again == record and again.lap_proofs.solves == {"auction": 2} and not again.complete
    results = ResultsFile({"model": "zoo:mlp2", "data": "synthetic"}, {"fgmt": _result(), "naive": _result(target="x")})
    text = json.dumps(results.to_json())
    assert json.loads(text)["format"] == FORMAT
    assert ResultsFile.from_json(json.loads(text)) == results
    assert results.best_method() == "fgmt"  # equal best accuracies: the first listed


def test_a_method_result_leaves_out_what_does_not_apply():
    entry = _result(lambdas=None, source_steps=[0, 3, 5], wall_seconds=None).to_json()
    assert "lambdas" not in entry and "target" not in entry and "wall_seconds" not in entry
    assert entry["source_steps"] == [0, 3, 5]
    assert MethodResult.best_of([0.3, 0.7, 0.7]) == 1


@pytest.mark.parametrize(
    "field,value,says",
    [
        ("val_acc", "x", "'val_acc' must be a list of numbers, not 'x'"),
        ("best_t", 7, "best_t 7 is not one of the steps 0..2"),
        ("best_t", True, "'best_t' must be an integer"),
        ("trajectory", None, "it has no 'trajectory'"),
        ("lap_proofs", {"solves": {"auction": 1.5}}, "'lap_proofs'.solves must be a table of counts"),
        ("t", [0, 1], "one entry per step"),
    ],
)
def test_a_damaged_method_result_is_named_in_one_line(field, value, says):
    entry = _result().to_json()
    if value is None:
        del entry[field]
    else:
        entry[field] = value
    data = {"format": FORMAT, "setting": {"model": "m", "data": "d"}, "methods": {"fgmt": entry}}
    with pytest.raises(TransferError) as e:
        ResultsFile.from_json(data, "OUT/results.json", "do this")
    message = str(e.value)
    assert message.startswith("OUT/results.json: the entry of 'fgmt' is damaged (") and says in message
    assert message.endswith("; do this") and "\n" not in message


def test_a_resume_record_is_checked_against_its_steps():
    data = RunRecord(dict(SETTING), done=1, val_acc=[0.1, 0.2], val_loss=[1.0, 0.9]).to_json()
    assert RunRecord.from_json(data, T=2).done == 1
    with pytest.raises(TransferError, match=r"damaged \('done' is 1, outside -1\.\.0\); start over"):
        RunRecord.from_json(data, T=0, fix="start over")
    with pytest.raises(TransferError, match="val_acc and val_loss must hold 2 numbers"):
        RunRecord.from_json({**data, "val_acc": [0.1]}, T=2)
    with pytest.raises(TransferError, match="no format field: format 1"):
        RunRecord.from_json({k: v for k, v in data.items() if k != "format"}, T=2)
