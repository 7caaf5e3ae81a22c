"""The command line restates no default: a bare `transfer run` gives the options' own values, and the
experiments' pool records exactly the options that decide the numbers."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from transfer.options import TransferOptions
from transfer.schedules import SCHEDULES, Schedule
from zoo.cli import transfer as cli

# how a flag differs from the option on purpose: the device is resolved ("auto") by the command line, and
# progress bars are drawn only where stderr is a terminal (zoo.cli.common.show_progress; not under pytest)
RESOLVED_BY_THE_COMMAND_LINE = {"device", "progress"}


def test_a_bare_transfer_run_takes_every_default_from_the_options():
    args = cli.build_parser().parse_args(["run", "--method", "gmt", "--source", "s", "--target-init", "1"])
    built = cli._options(args)
    defaults = TransferOptions()
    differ = {f.name for f in dataclasses.fields(TransferOptions) if getattr(built, f.name) != getattr(defaults, f.name)}
    assert differ <= RESOLVED_BY_THE_COMMAND_LINE, differ


def test_a_changed_option_default_reaches_the_flags(monkeypatch):
    monkeypatch.setattr(cli, "DEFAULTS", TransferOptions(T=7, grad_batches=3, schedule="cosine"))
    args = cli.build_parser().parse_args(["run", "--method", "gmt", "--source", "s", "--target-init", "1"])
    assert (args.T, args.grad_batches, args.schedule) == (7, 3, "cosine")


def test_the_schedules_are_one_literal():
    assert SCHEDULES == typing.get_args(Schedule) == ("uniform", "cosine")
    hints = typing.get_type_hints(TransferOptions)
    assert hints["schedule"] == Schedule
    with pytest.raises(ValueError, match="uniform or cosine"):
        TransferOptions(schedule="linear")


def test_per_block_has_one_default():
    import inspect

    from permgraph.infer import infer, spec_from_analysis

    defaults = {inspect.signature(f).parameters["per_block"].default for f in (infer, spec_from_analysis)}
    assert defaults == {False}


def test_the_sorted_start_is_a_sentinel_not_a_string():
    import torch

    from permgraph.spec import Group, Member, PermSpec
    from transfer.matching import DEFAULT_INIT, SORTED, Matcher, SortedStart

    assert DEFAULT_INIT == [None, SORTED] and isinstance(SORTED, SortedStart)
    spec = PermSpec(groups=(Group("h", 4, (Member("w", 0, 4, (4,), (1,), 0),)),), param_shapes={"w": (4, 3)})
    w = torch.randn(4, 3)
    planted = torch.tensor([2, 0, 3, 1])
    m = Matcher(spec).add({"w": w}, {"w": w[planted]})
    assert torch.equal(m.solve(init=SORTED)["h"], m.solve(init="sorted")["h"])
    with pytest.raises(ValueError, match="SORTED"):
        m.solve(init="sortd")


def test_zoo_train_offers_the_recipes_learning_rate_schedules():
    from zoo.cli.zoo import build_parser
    from zoo.train import LR_SCHEDULES, TrainRecipe

    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                  if a.dest == "schedule")  # fmt: skip
    assert tuple(action.choices) == LR_SCHEDULES and action.default == TrainRecipe.schedule
