"""FGMT's options: refreshing the last R pairs (R >= T is GMT) and down-weighting old pairs."""

from __future__ import annotations

import json

import pytest
from test_methods import MLP, record, run, run_interrupted, tiny_data

from transfer.options import OptionsError, TransferOptions


@pytest.fixture
def pair(tmp_path):
    data = tiny_data((6,), 3, n=64)
    return data, record(tmp_path / "src", MLP, 0, data, steps=4), record(tmp_path / "tgt", MLP, 1, data).init()


def test_refreshing_every_pair_is_gmt(tmp_path, pair):
    data, src, init = pair
    gmt = run("gmt", src, init, data, tmp_path / "g", T=3, linear=False)
    refreshed = run("fgmt", src, init, data, tmp_path / "f", T=3, linear=False, fgmt_refresh=3)
    assert refreshed["val_acc"] == gmt["val_acc"]
    assert refreshed["val_loss"] == pytest.approx(gmt["val_loss"], rel=1e-6)


def test_a_refreshing_run_resumes_to_the_same_numbers(tmp_path, pair):
    data, src, init = pair
    whole = run("fgmt", src, init, data, tmp_path / "whole", T=3, fgmt_refresh=1)

    run_interrupted("fgmt", src, init, data, tmp_path / "cut", T=3, fgmt_refresh=1)
    resumed = run("fgmt", src, init, data, tmp_path / "cut", T=3, fgmt_refresh=1)
    assert resumed["val_acc"] == whole["val_acc"]


def test_decay_is_recorded_and_one_pair_is_unaffected(tmp_path, pair):
    data, src, init = pair
    plain = run("fgmt", src, init, data, tmp_path / "a", T=1)
    decayed = run("fgmt", src, init, data, tmp_path / "b", T=1, fgmt_decay=0.5)
    assert decayed["val_acc"] == plain["val_acc"]  # with one pair, a weight changes nothing
    setting = json.loads((tmp_path / "b" / "results.json").read_text())["setting"]
    assert setting["fgmt_decay"] == 0.5
    assert "fgmt_decay" not in json.loads((tmp_path / "a" / "results.json").read_text())["setting"]
    for bad in (dict(fgmt_decay=0.0), dict(fgmt_decay=1.5), dict(fgmt_refresh=-1)):
        with pytest.raises(OptionsError):
            TransferOptions(**bad)
